"""The generic megatron-core training loop shared by joint CPT+IT training and DPO.

A stage supplies a ``forward_step(data_iterator, model) -> (output_tensor, loss_func)`` in megatron's schedule
convention, where ``loss_func(output_tensor)`` returns ``(loss_sum, num_target_tokens, metrics)`` and every metric
is a 2-element tensor ``[sum, count]`` (summed over micro-batches and data-parallel ranks, reported as sum/count).
The trainer owns everything else: model chunks (DDP-wrapped), the megatron optimizer (distributed optimizer
optional), the LR schedule, pipeline schedules, sampling of the global batch per data-parallel rank, logging
(stdout, progress bar, TensorBoard, metrics JSONL), checkpoints, exact resume and signal-triggered save-and-exit.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from findap_nemo.checkpoint_layout import latest_checkpoint
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.parallel import is_rank0, print_rank0
from findap_nemo.runtime import EXIT_REQUEUE, has_cuda
from findap_nemo.train import checkpointing

ForwardStep = Callable[[Iterator, torch.nn.Module], tuple]


class Interrupted(SystemExit):
    """Raised after a signal-triggered checkpoint; carries :data:`EXIT_REQUEUE` as exit code."""

    def __init__(self) -> None:
        super().__init__(EXIT_REQUEUE)


def default_collate(items: list[dict]) -> dict:
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def truncate_metrics(path: Path, iteration: int) -> int:
    """Keep the rows of ``path`` up to ``iteration`` (atomically: temp file, then rename); returns rows dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row_iter = json.loads(line).get("iteration", 0)
            except json.JSONDecodeError:  # a row cut short by a kill
                dropped += 1
                continue
            if row_iter <= iteration:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
        print(f"[metrics] {path}: dropped {dropped} row(s) after iteration {iteration} (written by a run that "
              f"stopped before checkpointing them)", flush=True)
    return dropped


class _SignalFlag:
    """SIGUSR1/SIGTERM set a flag; the loop checks it at step boundaries (all ranks agree via all-reduce)."""

    def __init__(self, enabled: bool):
        from findap_nemo.supervise import preemption_requested

        self.hit = enabled and preemption_requested()  # a signal that arrived while the job was starting
        self._previous = {}
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle if enabled else signal.SIG_DFL)
            except ValueError:  # not the main thread
                pass
        if not enabled and preemption_requested():  # no checkpoint wanted: the noted signal ends the process
            os.kill(os.getpid(), signal.SIGTERM)

    def _handle(self, signum, _frame) -> None:
        self.hit = True
        print(f"[rank {os.environ.get('RANK', 0)}] received signal {signum}: will checkpoint and exit", flush=True)

    def any_rank(self) -> bool:
        flag = torch.tensor([1.0 if self.hit else 0.0], device=_device())
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if has_cuda() else torch.device("cpu")


class Trainer:
    """Train ``model_chunks`` with megatron-core; see the module docstring for the ``forward_step`` contract."""

    def __init__(self, cfg: TrainJobConfig, forward_step: ForwardStep, datasets: dict[str, Any], *,
                 collate_fn: Callable[[list], dict] = default_collate, name: str = "train",
                 tokens_per_sample: int | None = None):
        from megatron.core import parallel_state as ps
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        from findap_nemo.model.builder import build_model, params_dtype
        from findap_nemo.train.fused_adam import use_fused_adam

        self.cfg = cfg
        self.name = name
        self.forward_step = forward_step
        self.datasets = datasets
        self.collate_fn = collate_fn
        self.tokens_per_sample = tokens_per_sample or cfg.schedule.seq_length
        self.model = build_model(cfg.model, cfg.parallel, cfg.precision)
        if cfg.parallel.use_distributed_optimizer and ps.get_data_parallel_world_size() == 1:
            # legal (megatron runs it), but one data-parallel rank holds the whole optimizer state either way
            print_rank0(f"[{name}] note: parallel.use_distributed_optimizer=true at data-parallel size 1 shards "
                        "nothing and adds buffers (its own row in benchmarks/compare.py); "
                        "parallel.use_distributed_optimizer=false is megatron's default there")
        dtype = params_dtype(cfg.precision)
        o = cfg.optim
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(optimizer=o.optimizer, lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
                            adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps,
                            clip_grad=o.clip_grad, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
                            params_dtype=dtype, use_distributed_optimizer=cfg.parallel.use_distributed_optimizer),
            self.model)
        use_fused_adam(self.optimizer)
        iters = cfg.schedule.train_iters
        warmup = int(round(o.lr_warmup_fraction * iters)) if o.lr_warmup_fraction is not None else o.lr_warmup_iters
        decay = o.lr_decay_iters or iters
        self.scheduler = OptimizerParamScheduler(
            self.optimizer, init_lr=0.0 if warmup else o.lr, max_lr=o.lr, min_lr=o.min_lr,
            lr_warmup_steps=warmup, lr_decay_steps=max(decay, warmup + 1), lr_decay_style=o.lr_decay_style,
            start_wd=o.weight_decay, end_wd=o.weight_decay, wd_incr_steps=iters, wd_incr_style="constant")
        self._wire_megatron_config()

        self.dp_rank = ps.get_data_parallel_rank()
        self.dp_size = ps.get_data_parallel_world_size()
        self.mbs = cfg.schedule.micro_batch_size
        self.num_microbatches = cfg.schedule.global_batch_size // (self.mbs * self.dp_size)
        self.iteration = 0
        self.consumed = {"train": 0, "valid": 0}
        self.history: list[dict] = []
        self._writer = None
        self._metrics_fp = None

    # ------------------------------------------------------------------ setup
    def _wire_megatron_config(self) -> None:
        """What Megatron-LM's training.py sets on the model config for the schedules and grad finalisation."""
        from megatron.core.distributed import finalize_model_grads

        from findap_nemo.model.builder import unwrap

        config = unwrap(self.model[0]).config
        config.grad_scale_func = self.optimizer.scale_loss
        config.finalize_model_grads_func = finalize_model_grads
        if len(self.model) == 1:
            config.no_sync_func = self.model[0].no_sync if hasattr(self.model[0], "no_sync") else None
        else:
            config.no_sync_func = [m.no_sync for m in self.model]
        if self.cfg.parallel.overlap_grad_reduce:
            config.grad_sync_func = [m.start_grad_sync for m in self.model]
            if len(self.model) == 1:
                config.grad_sync_func = config.grad_sync_func[0]
        if self.cfg.parallel.overlap_param_gather and self.cfg.parallel.use_distributed_optimizer:
            config.param_sync_func = [m.start_param_sync for m in self.model]
            if len(self.model) == 1:
                config.param_sync_func = config.param_sync_func[0]

    def resume_or_init(self) -> None:
        """Resume from checkpoint.load / checkpoint.save (latest) if one exists, else start from
        checkpoint.pretrained weights (if given) or the random init."""
        ck = self.cfg.checkpoint
        source = latest_checkpoint(ck.load) or latest_checkpoint(ck.save)
        if source is not None and not ck.finetune:
            self.iteration, extra = checkpointing.load_checkpoint(source, self.model, self.optimizer, self.scheduler)
            self.consumed = dict(extra.get("consumed", self.consumed))
            print_rank0(f"[{self.name}] resumed from {source} at iteration {self.iteration}")
        elif ck.pretrained or (source is not None and ck.finetune):
            path = ck.pretrained or source
            checkpointing.load_checkpoint(path, self.model, optimizer=None, strict=True)
            # The distributed optimizer keeps fp32 main params: refresh them from the loaded weights.
            self.optimizer.reload_model_params()
            print_rank0(f"[{self.name}] initial weights from {path}")

    # ------------------------------------------------------------------ data
    def _microbatches(self, split: str, start: int, num_microbatches: int) -> Iterator[dict]:
        """This DP rank's micro-batches of the global batch starting at sample ``start`` (Megatron's order)."""
        ds = self.datasets[split]
        n = len(ds)
        stride = self.mbs * self.dp_size
        for m in range(num_microbatches):
            base = start + m * stride + self.dp_rank * self.mbs
            items = [ds[(base + j) % n] for j in range(self.mbs)]
            batch = self.collate_fn(items)
            yield {k: (v.to(_device(), non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}

    # ------------------------------------------------------------------ steps
    def _run_schedule(self, split: str, forward_only: bool) -> dict[str, float]:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        nmb = self.num_microbatches
        start = self.consumed[split]
        # With virtual pipeline stages every model chunk consumes the micro-batches through its own iterator.
        its = [self._microbatches(split, start, nmb) for _ in self.model]
        data_iter = its if len(its) > 1 else its[0]
        fbf = get_forward_backward_func()
        outputs = fbf(forward_step_func=self.forward_step, data_iterator=data_iter, model=self.model,
                      num_microbatches=nmb, seq_length=self.cfg.schedule.seq_length, micro_batch_size=self.mbs,
                      decoder_seq_length=self.cfg.schedule.seq_length, forward_only=forward_only)
        self.consumed[split] = start + self.cfg.schedule.global_batch_size
        return self._reduce_metrics(outputs)

    def _reduce_metrics(self, outputs: list[dict]) -> dict[str, float]:
        """Sum [sum, count] pairs over micro-batches and DP ranks; share them with every rank (last PP stage has them)."""
        from megatron.core import parallel_state as ps

        names = sorted({k for o in outputs for k in o}) if outputs else []
        # Agree on metric names across the pipeline (only the last stage produced outputs).
        holder = [names]
        if ps.get_pipeline_model_parallel_world_size() > 1:
            src = ps.get_pipeline_model_parallel_last_rank()
            torch.distributed.broadcast_object_list(holder, src=src, group=ps.get_pipeline_model_parallel_group())
        names = holder[0]
        if not names:
            return {}
        acc = torch.zeros(len(names), 2, dtype=torch.float64, device=_device())
        for o in outputs:
            for i, k in enumerate(names):
                if k in o:
                    acc[i] += o[k].detach().to(acc.device, torch.float64).view(-1)[:2]
        torch.distributed.all_reduce(acc, group=ps.get_data_parallel_group())
        if ps.get_pipeline_model_parallel_world_size() > 1:
            torch.distributed.all_reduce(acc, group=ps.get_pipeline_model_parallel_group())
        return {k: (acc[i, 0] / acc[i, 1].clamp_min(1)).item() for i, k in enumerate(names)}

    def train_step(self) -> dict[str, float]:
        for chunk in self.model:
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        metrics = self._run_schedule("train", forward_only=False)
        ok, grad_norm, _ = self.optimizer.step()
        self.scheduler.step(increment=1)
        if not ok:
            print_rank0(f"[{self.name}] iteration {self.iteration + 1}: optimizer step skipped (inf/nan grads)")
        metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if "valid" not in self.datasets or self.datasets["valid"] is None or len(self.datasets["valid"]) == 0:
            return {}
        for chunk in self.model:
            chunk.eval()
        totals: dict[str, list[float]] = {}
        saved = self.consumed["valid"]
        self.consumed["valid"] = 0  # the same held-out batches every evaluation, comparable over time
        for _ in range(self.cfg.schedule.eval_iters):
            for k, v in self._run_schedule("valid", forward_only=True).items():
                totals.setdefault(k, []).append(v)
        self.consumed["valid"] = saved
        for chunk in self.model:
            chunk.train()
        return {f"valid/{k}": sum(v) / len(v) for k, v in totals.items()}

    # ------------------------------------------------------------------ logging
    def _metrics_path(self) -> Path | None:
        path = self.cfg.logging.metrics_file or (Path(self.cfg.checkpoint.save) / "metrics.jsonl"
                                                 if self.cfg.checkpoint.save else None)
        return Path(path) if path else None

    def _open_logs(self) -> None:
        """Open metrics.jsonl and TensorBoard at the current iteration: rows and scalars a killed run wrote after
        the checkpoint we resumed from are dropped, so the logs equal an uninterrupted run's (rank 0 only)."""
        path = self._metrics_path()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            truncate_metrics(path, self.iteration)
            self._metrics_fp = open(path, "a", encoding="utf-8")
        tb_dir = self.cfg.logging.tensorboard_dir or (str(Path(self.cfg.checkpoint.save) / "tensorboard")
                                                      if self.cfg.checkpoint.save else None)
        if tb_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step hides events at or after it that an earlier (killed) writer left behind
                self._writer = SummaryWriter(tb_dir, purge_step=self.iteration + 1 if self.iteration else None)
            except ImportError:  # tensorboard is a dependency; tolerate minimal environments
                self._writer = None

    def _log(self, metrics: dict[str, float]) -> None:
        if not is_rank0():
            return
        if self._metrics_fp:
            self._metrics_fp.write(json.dumps({"iteration": self.iteration, **metrics}) + "\n")
            self._metrics_fp.flush()
        if self._writer:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._writer.add_scalar(f"{self.name}/{k}", v, self.iteration)

    def _throughput(self, seconds: float) -> dict[str, float]:
        from findap_nemo.train.flops import H100_PEAK_TFLOPS, flops_per_token

        tokens = self.cfg.schedule.global_batch_size * self.tokens_per_sample
        out = {"step_time_s": seconds, "tokens_per_s": tokens / max(seconds, 1e-9)}
        if has_cuda():
            world = torch.distributed.get_world_size()
            tflops = flops_per_token(self.cfg.model, self.cfg.schedule.seq_length) * tokens / seconds / 1e12 / world
            peak = H100_PEAK_TFLOPS["fp8" if self.cfg.precision.fp8 else "bf16"]
            out.update(tflops_per_gpu=tflops, mfu=tflops / peak,
                       peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
        else:
            import resource

            out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if not self.cfg.checkpoint.save:
            return
        t = time.time()
        extra = {"consumed": self.consumed}  # identical on every rank (megatron checks the common state)
        path = checkpointing.save_checkpoint(self.cfg.checkpoint.save, self.iteration, self.model,
                                             self.optimizer if self.cfg.checkpoint.save_optimizer else None,
                                             self.scheduler, extra=extra, keep_last=self.cfg.checkpoint.keep_last,
                                             optimizer_sharding=self.cfg.checkpoint.optimizer_sharding)
        print_rank0(f"[{self.name}] saved {path} in {time.time() - t:.1f}s")

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict]:
        """Train to ``schedule.train_iters`` (or ``exit_interval``); returns the per-iteration metrics history."""
        cfg = self.cfg
        self.resume_or_init()
        if is_rank0():
            self._open_logs()
        for chunk in self.model:
            chunk.train()
        flag = _SignalFlag(cfg.checkpoint.save_on_signal)
        stop_at = min(cfg.schedule.train_iters, cfg.schedule.exit_interval or cfg.schedule.train_iters)
        bar = None
        if is_rank0() and cfg.logging.progress_bar and self.iteration < stop_at:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop_at, initial=self.iteration, desc=self.name, dynamic_ncols=True)
        try:
            while self.iteration < stop_at:
                t0 = time.time()
                metrics = self.train_step()
                self.iteration += 1
                metrics.update(self._throughput(time.time() - t0))
                metrics["consumed_samples"] = self.consumed["train"]
                if cfg.schedule.eval_interval and self.iteration % cfg.schedule.eval_interval == 0:
                    metrics.update(self.evaluate())
                self.history.append({"iteration": self.iteration, **metrics})
                self._log(metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics.get('lm_loss', metrics.get('loss', float('nan'))):.4f}",
                                    tok_s=f"{metrics['tokens_per_s']:.0f}")
                if bar is None and is_rank0() and self.iteration % cfg.schedule.log_interval == 0:
                    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
                    print(f"[{self.name}] iter {self.iteration}/{stop_at} {shown}", flush=True)
                interrupted = flag.any_rank() if cfg.checkpoint.save_on_signal else False
                periodic = cfg.checkpoint.save_interval and self.iteration % cfg.checkpoint.save_interval == 0
                if interrupted or periodic or self.iteration == stop_at:
                    self.save()
                if interrupted:
                    print_rank0(f"[{self.name}] checkpointed at iteration {self.iteration} after a signal; "
                                f"exiting with {EXIT_REQUEUE} so the job can be requeued")
                    raise Interrupted()
        finally:
            if bar is not None:
                bar.close()
            flag.restore()
            if self._metrics_fp:
                self._metrics_fp.close()
                self._metrics_fp = None
            if self._writer:
                self._writer.close()
                self._writer = None
        return self.history
