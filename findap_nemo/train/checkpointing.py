"""megatron dist checkpoints (torch_dist): model, optimizer, scheduler, data position and RNG, written atomically.

Layout: :mod:`findap_nemo.checkpoint_layout` (Megatron-LM's ``iter_XXXXXXX/`` folders and tracker file).

A checkpoint is first written as ``iter_0000100.tmp-<stamp>`` and renamed only after every rank finished, so a crash
mid-save never leaves a directory that looks complete; the ``latest`` pointer moves last. Model tensors are stored by
global name and shape (megatron ShardedTensors) so a checkpoint written at one TP/PP layout loads at another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import time
from pathlib import Path

import torch

from findap_nemo.checkpoint_layout import TRACKER, iter_dir, latest_checkpoint, list_checkpoints, write_tracker
from findap_nemo.config import ConfigError
from findap_nemo.config.schema import CheckpointConfig


def _rng_state() -> dict:
    import random

    import numpy as np
    from megatron.core import tensor_parallel

    return {
        "random": random.getstate(),
        "np": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }


def _set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    from megatron.core import tensor_parallel

    random.setstate(state["random"])
    np.random.set_state(state["np"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _layout() -> list[int]:
    from megatron.core import parallel_state as ps

    return [ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size(),
            ps.get_data_parallel_world_size(with_context_parallel=True)]


def _rng_sharded_object(is_loading: bool):
    """Per-rank RNG state as a ShardedObject indexed by (PP, TP, DP) rank, like Megatron-LM."""
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    pp, tp, dp = ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank(), \
        ps.get_data_parallel_rank(with_context_parallel=True)
    shape = (ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size(),
             ps.get_data_parallel_world_size(with_context_parallel=True))
    return ShardedObject("rng_state", None if is_loading else _rng_state(), shape, (pp, tp, dp), replica_id=0)


def model_sharded_state_dict(model_chunks) -> dict:
    from findap_nemo.model.builder import unwrap

    if len(model_chunks) == 1:
        return {"model": unwrap(model_chunks[0]).sharded_state_dict()}
    out = {}
    for i, chunk in enumerate(model_chunks):
        out[f"model{i}"] = unwrap(chunk).sharded_state_dict()
    return out


OPTIMIZER_SHARDING = CheckpointConfig.optimizer_sharding
"""Default distributed-optimizer state format: gathered per DP group into per-parameter tensors, so the optimizer
(not only the weights) reshards to another TP/PP/DP layout on resume. 'dp_reshardable' (``checkpoint.
optimizer_sharding``) writes each rank's flat shards without a gather: faster, but it resumes at the same TP/PP only.
Each checkpoint records its format (common state ``optimizer_sharding``; None = no optimizer state saved)."""


def _sharded_state_dict(model_chunks, optimizer, *, is_loading: bool, with_rng: bool,
                        optimizer_sharding: str = OPTIMIZER_SHARDING) -> dict:
    sd = model_sharded_state_dict(model_chunks)
    if optimizer is not None:
        model_sd = {k: v for k, v in sd.items() if k.startswith("model")}
        sd["optimizer"] = optimizer.sharded_state_dict(
            model_sd, is_loading=is_loading, metadata={"distrib_optim_sharding_type": optimizer_sharding})
    if with_rng:
        sd["rng_state"] = _rng_sharded_object(is_loading)
    return sd


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _write_results_in_process() -> None:
    """Hand megatron's checkpoint writer an in-process queue for its results.

    Saves here are synchronous: the writer's worker processes report to the saving process itself. Left alone,
    megatron keeps those results in a ``multiprocessing.Manager`` started by *spawn*, a fresh interpreter that
    imports torch to unpickle them: ~3 s (wall and CPU) on each process's first save, and a helper that SLURM's
    preemption SIGTERM reaches too, after which every later save fails with BrokenPipe. A plain ``queue.Queue``
    has the ``put``/``get_nowait`` the writer uses (megatron-core 0.16-0.19: ``filesystem_async._results_queue``).
    """
    try:
        from megatron.core.dist_checkpointing.strategies import filesystem_async
    except ImportError:
        return
    if getattr(filesystem_async, "_results_queue", object()) is None:
        filesystem_async._results_queue = queue.Queue()


def save_checkpoint(root: str | os.PathLike, iteration: int, model_chunks, optimizer=None, scheduler=None,
                    extra: dict | None = None, keep_last: int | None = None,
                    optimizer_sharding: str = OPTIMIZER_SHARDING) -> Path:
    """Save on every rank; returns the final checkpoint folder. ``extra`` holds small common state (rank 0's)."""
    from megatron.core import dist_checkpointing

    _write_results_in_process()
    root = Path(root)
    final = iter_dir(root, iteration)
    rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    stamp = [f"{int(time.time() * 1000)}"]
    if torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(stamp, src=0)
    tmp = root / f"{final.name}.tmp-{stamp[0]}"
    held: list[logging.LogRecord] = []
    try:
        if rank0:
            tmp.mkdir(parents=True, exist_ok=True)
        _barrier()
        sd = _sharded_state_dict(model_chunks, optimizer, is_loading=False, with_rng=True,
                                 optimizer_sharding=optimizer_sharding)
        sd["iteration"] = iteration
        sd["optimizer_sharding"] = optimizer_sharding if optimizer is not None else None
        sd["layout"] = _layout()  # [PP, TP, DP]: per-rank RNG state is restored only into the same layout
        if scheduler is not None:
            sd["scheduler"] = scheduler.state_dict()
        sd["extra"] = extra or {}
        with _held_writer_errors(held):
            dist_checkpointing.save(sd, str(tmp))
        _barrier()
        if rank0:
            if final.exists():  # re-saving the same iteration (e.g. signal right after a periodic save)
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_tracker(root, iteration)
            if keep_last:
                for old in list_checkpoints(root)[:-keep_last]:
                    shutil.rmtree(iter_dir(root, old), ignore_errors=True)
            for stale in root.glob("iter_*.tmp-*"):  # leftovers of crashed saves
                shutil.rmtree(stale, ignore_errors=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # torch's CheckpointException derives from BaseException
        failure = _save_failed(err, root, tmp, _state_bytes(sd) if "sd" in locals() else 0)
        if failure is err:  # not a storage failure: what the writer logged helps
            for record in held:
                logging.getLogger(record.name).handle(record)
        raise failure from err
    _barrier()
    return final


_WRITER_LOGGER = "megatron.core.dist_checkpointing.strategies.filesystem_async"


@contextlib.contextmanager
def _held_writer_errors(held: list):
    """Hold back the checkpoint writer's own error log lines (a full disk reads ``unexpected pos 704 vs 598``)
    until we know whether the failure is one :mod:`findap_nemo.storage` explains in one line."""
    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            held.append(record)
            return False
        return True

    log = logging.getLogger(_WRITER_LOGGER)
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _state_bytes(sd: dict) -> int:
    """Bytes of the tensors this rank writes (to tell a full disk from other write failures)."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    return sum(v.data.nbytes for v in nested_values(sd)
               if isinstance(v, ShardedTensor) and v.data is not None and v.replica_id in (0, (0, 0, 0)))


def _save_failed(err: BaseException, root: Path, tmp: Path, needed: int) -> BaseException:
    """One line for a save that the file system refused; the partial folder goes, the tracker stays untouched.
    Measured before cleaning up, which frees the space the save lacked: torch's writer reports a full disk as
    ``unexpected pos`` without an OSError."""
    from findap_nemo.storage import describe

    failure = describe(err, root, "the checkpoint", needed_bytes=needed)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (root / (TRACKER + ".tmp")).unlink(missing_ok=True)
    except OSError:
        pass
    if failure is None:
        return err
    latest = latest_checkpoint(root)
    return type(failure)(f"{failure}; {'the latest checkpoint is still ' + str(latest) if latest else 'no checkpoint was saved'}",
                         failure.errno)


def _materialise_optimizer_states(optimizer) -> None:
    """A never-stepped optimizer has no Adam states to load into; create them first, as Megatron-LM does."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is None or len(inner.state) > 0:
            continue
        if getattr(opt, "init_state_fn", None) is not None:
            opt.init_state_fn(inner, getattr(opt, "config", None))
            # megatron's init for plain torch Adam creates exp_avg/exp_avg_sq but no 'step' (KeyError on load).
            for state in inner.state.values():
                state.setdefault("step", torch.tensor(0.0))
        elif hasattr(opt, "_init_optimizer_states_with_dummy_values"):
            opt._init_optimizer_states_with_dummy_values()


def _check_optimizer_layout(ckpt: Path, sharding: str, saved: list[int] | None) -> None:
    """'dp_reshardable' optimizer state is laid out in the saving run's TP/PP buffers: it loads only there."""
    if sharding != "dp_reshardable" or saved is None:
        return
    now = _layout()
    if list(saved[:2]) != now[:2]:
        raise ConfigError(
            f"{ckpt}: its optimizer state was saved dp_reshardable at PP{saved[0]} x TP{saved[1]} and resumes only "
            f"at that layout (any DP), not at PP{now[0]} x TP{now[1]}; resume at PP{saved[0]} x TP{saved[1]}, or start "
            f"from its weights with checkpoint.finetune=true (new optimizer), or save with "
            f"checkpoint.optimizer_sharding=fully_reshardable to change layouts on resume")


def load_checkpoint(path: str | os.PathLike, model_chunks, optimizer=None, scheduler=None, *,
                    load_rng: bool = True, strict: bool = True) -> tuple[int, dict]:
    """Load a checkpoint folder (or the latest under a root) into the given chunks; returns (iteration, extra).

    With ``optimizer=None`` only weights are loaded (fine-tuning start, export, reference policy). The RNG state is
    restored only when the layout matches the one that saved it (else the fresh seeds stay).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint under {path} (expected iter_XXXXXXX folders or {TRACKER})")
    common = dist_checkpointing.load_common_state_dict(str(ckpt))
    sharding = common.get("optimizer_sharding", OPTIMIZER_SHARDING)  # checkpoints before the key: the default
    if optimizer is not None and sharding is None:
        logging.getLogger(__name__).warning(
            "%s holds no optimizer state (saved with checkpoint.save_optimizer=false): weights, iteration and "
            "schedule resume, Adam's moments start from zero", ckpt)
        optimizer = None
    elif optimizer is not None:
        _check_optimizer_layout(ckpt, sharding, common.get("layout"))
        _materialise_optimizer_states(optimizer)
    has_rng = load_rng and optimizer is not None and common.get("layout") == _layout()
    sd = _sharded_state_dict(model_chunks, optimizer, is_loading=True, with_rng=has_rng,
                             optimizer_sharding=sharding or OPTIMIZER_SHARDING)
    # Checkpoint entries we do not ask for (optimizer, RNG when loading weights only) are fine; tensors the model
    # needs but the checkpoint lacks are an error (unless strict=False).
    strict_mode = StrictHandling.RAISE_UNEXPECTED if strict else StrictHandling.LOG_UNEXPECTED
    try:
        state = dist_checkpointing.load(sd, str(ckpt), strict=strict_mode)
    except Exception as err:  # most often: a different model shape than the checkpoint's
        raise RuntimeError(f"could not load checkpoint {ckpt}: {err}") from err
    if isinstance(state, tuple):
        state = state[0]
    from findap_nemo.model.builder import unwrap

    if len(model_chunks) == 1:
        unwrap(model_chunks[0]).load_state_dict(state["model"], strict=strict)
    else:
        for i, chunk in enumerate(model_chunks):
            unwrap(chunk).load_state_dict(state[f"model{i}"], strict=strict)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
        if "rng_state" in state and state["rng_state"] is not None:
            _set_rng_state(state["rng_state"])
    if scheduler is not None and "scheduler" in common:
        scheduler.load_state_dict(common["scheduler"])
    return int(common.get("iteration", 0)), dict(common.get("extra", {}))
