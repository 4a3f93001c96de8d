"""The frozen reference policy: built at the policy's layout, loaded from the same initial checkpoint.

Two ways to use it:
- on the fly: :class:`findap_nemo.dpo.trainer.DPOTrainer` runs it forward-only through the same pipeline schedule
  as the policy for each global batch;
- precomputed: :func:`precompute` runs it once over the whole dataset and writes per-pair log-prob sums to a
  sidecar ``.npz`` keyed by the pair's line number in the source file (atomically, with a fingerprint of the data,
  checkpoint and tokenization so a stale file is never reused); the reference weights are then freed.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from findap_nemo.fingerprint import digest, file_sha256, tokenizer_identity, weights_identity
from findap_nemo.parallel import print_rank0

SIDECAR_VERSION = 2  # 2: padded vocabulary rows masked out of the softmax


def build_reference(cfg):
    """Frozen copy of the initial policy (no grads, eval mode, no DDP wrapper)."""
    from findap_nemo.model.builder import build_model
    from findap_nemo.train.checkpointing import load_checkpoint

    chunks = build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False, for_training=False)
    load_checkpoint(cfg.checkpoint.pretrained, chunks, optimizer=None, strict=True)
    return chunks


def fingerprint(cfg, data_file: str, data_sha: str) -> dict:
    """What the stored log-probs depend on; any change means they must be recomputed: the data, the weights
    (files' sizes/mtimes and the checkpoint's metadata), every tokenizer file (chat template included), the
    sequence length and vocabulary (padded rows are masked, so only the real vocab size matters)."""
    from findap_nemo.checkpoint_layout import latest_checkpoint

    ckpt = latest_checkpoint(cfg.checkpoint.pretrained)
    return {"version": SIDECAR_VERSION, "data_file": os.path.abspath(data_file), "data_sha256": data_sha,
            "checkpoint": os.path.abspath(str(ckpt)), "weights": digest(weights_identity(ckpt)),
            "tokenizer_sha256": tokenizer_identity(cfg.model.tokenizer),
            "seq_length": cfg.schedule.seq_length, "vocab_size": cfg.model.vocab_size}


def sidecar_path(cfg, data_file: str) -> Path:
    root = cfg.dpo.reference_logps_dir or (Path(cfg.checkpoint.save) / "reference_logps" if cfg.checkpoint.save
                                           else Path(data_file).parent / "reference_logps")
    return Path(root) / f"{Path(data_file).stem}.ref_logps.npz"


def read_sidecar(path: Path, expected: dict) -> dict[int, tuple[float, float]] | None:
    """Index -> (chosen, rejected) sums, or None when absent or computed for other data/weights."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta != expected:
            changed = sorted(k for k in set(meta) | set(expected) if meta.get(k) != expected.get(k))
            print_rank0(f"[dpo] {path} was computed for different {', '.join(changed)}: recomputing")
            return None
        idx, ch, rj = z["index"], z["chosen"], z["rejected"]
    return {int(i): (float(c), float(r)) for i, c, r in zip(idx, ch, rj)}


def write_sidecar(path: Path, meta: dict, values: dict[int, tuple[float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(values)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
    np.savez(tmp, index=np.asarray(keys, dtype=np.int64),
             chosen=np.asarray([values[k][0] for k in keys], dtype=np.float64),
             rejected=np.asarray([values[k][1] for k in keys], dtype=np.float64),
             meta=np.asarray(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)


def compute_logps(reference, dataset, collate, *, micro_batch_size: int, seq_length: int,
                  chunk_microbatches: int = 64, progress: bool = True,
                  vocab_size: int | None = None) -> dict[int, tuple[float, float]]:
    """Reference log-prob sums for every pair of ``dataset`` (all ranks call this; every rank gets the result).

    Pairs are split round-robin over data-parallel ranks and run forward-only through megatron's schedule (so
    pipeline stages pass activations as in training); results are gathered from the last stage over DP.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from tqdm.auto import tqdm

    from findap_nemo.dpo.step import make_reference_forward_step
    from findap_nemo.train.trainer import _device

    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    n = len(dataset)
    mine = list(range(dp_rank, n, dp))
    per_rank = math.ceil(n / dp)
    # The same count on every rank (pipelines must agree), a multiple of PP (the interleaved schedule needs it).
    pp = ps.get_pipeline_model_parallel_world_size()
    num_mb = math.ceil(math.ceil(per_rank / micro_batch_size) / pp) * pp
    chunk_microbatches = max(pp, chunk_microbatches // pp * pp)
    padded = [mine[i] if i < len(mine) else (mine[-1] if mine else 0) for i in range(num_mb * micro_batch_size)]
    fbf = get_forward_backward_func()
    values: dict[int, tuple[float, float]] = {}
    t0 = time.time()
    bar = tqdm(total=num_mb, desc=f"reference log-probs ({dataset.name})",
               disable=not (progress and torch.distributed.get_rank() == 0), mininterval=2.0)
    for start in range(0, num_mb, chunk_microbatches):
        count = min(chunk_microbatches, num_mb - start)

        def batches(start=start, count=count):
            for m in range(start, start + count):
                ids = padded[m * micro_batch_size:(m + 1) * micro_batch_size]
                b = collate([dataset[i] for i in ids])
                yield {k: (v.to(_device()) if torch.is_tensor(v) else v) for k, v in b.items()}

        with torch.no_grad():
            outs = fbf(forward_step_func=make_reference_forward_step(vocab_size),
                       data_iterator=[batches() for _ in reference] if len(reference) > 1 else batches(),
                       model=reference,
                       num_microbatches=count, seq_length=seq_length, micro_batch_size=2 * micro_batch_size,
                       decoder_seq_length=seq_length, forward_only=True)
        for j, out in enumerate(outs or []):
            m = start + j
            ids = padded[m * micro_batch_size:(m + 1) * micro_batch_size]
            lp = out["ref_logps"].view(-1, 2).cpu().tolist()
            for i, (c, r) in zip(ids, lp):
                values[dataset.records[i].index] = (c, r)
        bar.update(count)
    bar.close()
    # Gather from every DP rank of the last pipeline stage, then share with all ranks.
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, values)
    merged: dict[int, tuple[float, float]] = {}
    for part in gathered:
        merged.update(part or {})
    missing = [r.index for r in dataset.records if r.index not in merged]
    if missing:
        raise RuntimeError(f"reference log-probs missing for {len(missing)} pairs (e.g. line {missing[0] + 1})")
    seconds = time.time() - t0
    print_rank0(f"[dpo] reference log-probs for {n} {dataset.name} pairs in {seconds:.2f}s "
                f"({n / max(seconds, 1e-9):.1f} pairs/s)")
    return merged


def precompute(cfg, datasets: dict, sources: dict[str, str], collate) -> dict[str, Path]:
    """Attach stored reference log-probs to each dataset, computing and writing them when absent or stale.

    ``sources`` maps split -> the JSONL the split's records were read from (one sidecar per source file). The
    reference weights are loaded only when something must be computed (not on a resume) and freed afterwards.
    """
    from findap_nemo.parallel import is_rank0
    from findap_nemo.train.trainer import _device

    written = {}
    reference = None
    by_file: dict[str, list[str]] = {}
    for split, path in sources.items():
        if datasets.get(split) is not None and len(datasets[split]):
            by_file.setdefault(path, []).append(split)
    for path, splits in by_file.items():
        sha = file_sha256(path)
        meta = fingerprint(cfg, path, sha)
        out = sidecar_path(cfg, path)
        values = read_sidecar(out, meta)
        usable = values is not None and all(r.index in values for s in splits for r in datasets[s].records)
        # Every rank must take the same branch (the computation is collective).
        flag = torch.tensor([0.0 if usable else 1.0], device=_device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() == 0.0:
            print_rank0(f"[dpo] reference log-probs from {out}")
        else:
            if reference is None:
                reference = build_reference(cfg)
            values = {}
            for s in splits:
                values.update(compute_logps(reference, datasets[s], collate,
                                            micro_batch_size=cfg.schedule.micro_batch_size,
                                            seq_length=cfg.schedule.seq_length,
                                            progress=cfg.logging.progress_bar,
                                            vocab_size=cfg.model.vocab_size))
            if is_rank0():
                write_sidecar(out, meta, values)
                print(f"[dpo] wrote {out} ({len(values)} pairs)", flush=True)
            torch.distributed.barrier()
        for s in splits:
            datasets[s].reference = values
        written[path] = out
    del reference
    return written
