"""FP8 check on an H100: bf16 vs FP8 (delayed and current/tensorwise scaling) with the training stack itself.

For a tiny model and a Llama-3-8B-shaped model with fewer layers, train the same seeded synthetic batches with
``precision.params_dtype=bf16`` and with ``precision.fp8=hybrid`` under each scaling recipe, then report how closely
the FP8 loss curves follow bf16 and the step time / tokens per second of each. Every run is a separate process (a
fresh megatron/Transformer Engine state), launched through torchrun so multi-GPU layouts work the same way.

    python benchmarks/gpu_fp8_check.py                          # all shapes and recipes, 1 GPU
    python benchmarks/gpu_fp8_check.py --nproc 8 --tp 2         # one node, TP2 x DP4
    python benchmarks/gpu_fp8_check.py --shapes 8b --layers 4 --steps 50

Writes benchmarks/results/gpu_fp8_check.{json,md}. Exit codes: 0 all FP8 runs agree with bf16 within
``--tolerance``; 1 a run disagrees or failed; 77 skipped: no CUDA GPU, not a Hopper-or-newer GPU, or no
Transformer Engine (the message says which).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
EXIT_SKIP = 77

SHAPES = {
    # the CPU demo model, widened so every GEMM dimension is a multiple of 16 (an FP8 GEMM requirement)
    "tiny": ["model.preset=tiny", "model.hidden_size=256", "model.ffn_hidden_size=704", "model.num_attention_heads=4",
             "model.num_query_groups=2"],
    # Llama 3 8B widths with fewer layers: the GEMM shapes FP8 is used for in production
    "8b": ["model.preset=llama3-8b"],
}
PRECISIONS = {
    "bf16": [],
    "fp8-delayed": ["precision.fp8=hybrid", "precision.fp8_recipe=delayed", "precision.fp8_amax_history_len=1024",
                    "precision.fp8_amax_compute_algo=max"],
    "fp8-tensorwise": ["precision.fp8=hybrid", "precision.fp8_recipe=tensorwise"],
}


def preflight() -> str | None:
    """Why this machine cannot run the check, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False); run this on an H100 node"
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        return (f"{torch.cuda.get_device_name()} has compute capability {major}.{minor}; FP8 training needs Hopper "
                f"(9.0, H100/H200) or newer")
    from findap_nemo.runtime import has_transformer_engine

    if not has_transformer_engine():
        return ("Transformer Engine is not importable: install findap-nemo[gpu] or use an NVIDIA PyTorch/NeMo "
                "container")
    return None


def one_run(args) -> int:
    """Child process: train ``--steps`` steps with the given overrides, write the per-step history as JSON."""
    from findap_nemo.config import load_config
    from findap_nemo.train.config import TrainJobConfig
    from findap_nemo.parallel import destroy_distributed, init_distributed, is_rank0
    from findap_nemo.train.gpt_step import MockGPTDataset, make_gpt_forward_step
    from findap_nemo.train.trainer import Trainer

    cfg = load_config(TrainJobConfig, REPO / "configs/train/tiny_cpu.yaml", json.loads(args.overrides))
    init_distributed(cfg.parallel, cfg.schedule.seed)
    try:
        t = cfg.schedule
        datasets = {"train": MockGPTDataset(t.train_iters * t.global_batch_size, t.seq_length, cfg.model.vocab_size,
                                            t.seed)}
        history = Trainer(cfg, make_gpt_forward_step(False), datasets).fit()
        if is_rank0():
            Path(args.out).write_text(json.dumps(history))
    finally:
        destroy_distributed()
    return 0


def launch(shape: str, precision: str, args, workdir: Path) -> dict:
    overrides = SHAPES[shape] + PRECISIONS[precision] + [
        "precision.params_dtype=bf16", "model.transformer_impl=transformer_engine",
        f"parallel.tensor_model_parallel_size={args.tp}", f"parallel.sequence_parallel={str(args.tp > 1).lower()}",
        f"schedule.seq_length={args.seq_length if shape == '8b' else 256}", f"schedule.train_iters={args.steps}",
        f"schedule.micro_batch_size={args.micro_batch_size}", f"schedule.global_batch_size={args.global_batch_size}",
        "schedule.eval_interval=null", "checkpoint.save=null", "checkpoint.save_interval=null",
        "logging.progress_bar=false", "data.mock=true", "optim.lr=3e-4", "optim.min_lr=3e-5"]
    if shape == "8b":
        overrides.append(f"model.num_layers={args.layers}")
    out = workdir / f"{shape}-{precision}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc}", __file__, "--one",
           "--overrides", json.dumps(overrides), "--out", str(out)]
    print(f"[fp8-check] {shape} {precision}: {' '.join(overrides)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout[-1500:] + proc.stderr[-3000:]).strip()
        return {"shape": shape, "precision": precision, "error": f"exit {proc.returncode}: {tail}"}
    hist = json.loads(out.read_text())
    losses = [h["lm_loss"] for h in hist]
    times = [h["step_time_s"] for h in hist[3:]] or [h["step_time_s"] for h in hist]  # skip warm-up steps
    step = statistics.median(times)
    return {"shape": shape, "precision": precision, "losses": losses, "step_time_s": step,
            "tokens_per_s": hist[-1]["tokens_per_s"] * hist[-1]["step_time_s"] / step,
            "mfu": statistics.median(h.get("mfu", float("nan")) for h in hist[3:] or hist),
            "peak_mem_gib": max(h.get("peak_mem_gib", 0.0) for h in hist)}


def compare(results: list[dict], tolerance: float, window: int) -> list[dict]:
    """Loss agreement of each FP8 run with the bf16 run of the same shape over the last ``window`` steps."""
    rows = []
    base = {r["shape"]: r for r in results if r["precision"] == "bf16" and "losses" in r}
    for r in results:
        row = {k: v for k, v in r.items() if k != "losses"}
        b = base.get(r["shape"])
        if "losses" in r and b is not None:
            n = min(window, len(r["losses"]), len(b["losses"]))
            mine, ref = r["losses"][-n:], b["losses"][-n:]
            rel = statistics.fmean(abs(x - y) / abs(y) for x, y in zip(mine, ref))
            row.update(first_loss=r["losses"][0], last_loss=r["losses"][-1], rel_loss_diff=rel,
                       speedup=b["step_time_s"] / r["step_time_s"], ok=rel <= tolerance)
            row["loss_fell"] = r["losses"][-1] < r["losses"][0]
            row["ok"] = row["ok"] and row["loss_fell"]
        else:
            row["ok"] = False
        rows.append(row)
    return rows


def write_report(rows: list[dict], args) -> None:
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name(), "nproc": args.nproc, "tp": args.tp, "steps": args.steps,
            "layers_8b": args.layers, "seq_length_8b": args.seq_length, "tolerance": args.tolerance}
    tmp = RESULTS / "gpu_fp8_check.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    os.replace(tmp, RESULTS / "gpu_fp8_check.json")
    lines = [f"# FP8 check ({meta['device']}, {args.nproc} GPU(s), TP{args.tp}, {args.steps} steps)", "",
             "| shape | precision | first loss | last loss | rel. loss diff vs bf16 | step s | tokens/s | speed-up | "
             "peak GiB | ok |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['precision']} | failed: {r['error'][:200]} |||||||| no |")
            continue
        lines.append(f"| {r['shape']} | {r['precision']} | {r.get('first_loss', float('nan')):.4f} | "
                     f"{r.get('last_loss', float('nan')):.4f} | {r.get('rel_loss_diff', 0.0):.2%} | "
                     f"{r['step_time_s']:.3f} | {r['tokens_per_s']:,.0f} | {r.get('speedup', 1.0):.2f}x | "
                     f"{r['peak_mem_gib']:.1f} | {'yes' if r['ok'] else 'NO'} |")
    tmp = RESULTS / "gpu_fp8_check.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, RESULTS / "gpu_fp8_check.md")
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--layers", type=int, default=2, help="layers of the Llama-3-8B-shaped model")
    p.add_argument("--seq-length", type=int, default=2048)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--global-batch-size", type=int, default=8)
    p.add_argument("--nproc", type=int, default=1, help="GPUs (processes) per run")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="max mean relative |loss_fp8 - loss_bf16| over the last --window steps")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--overrides", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    if args.one:
        return one_run(args)
    why = preflight()
    if why:
        print(f"[fp8-check] SKIPPED: {why}", file=sys.stderr)
        return EXIT_SKIP
    if "bf16" not in args.precisions:
        args.precisions = ["bf16", *args.precisions]  # the reference every FP8 run is compared with
    with tempfile.TemporaryDirectory(prefix="fp8check-") as tmp:
        results = [launch(shape, prec, args, Path(tmp)) for shape in args.shapes for prec in args.precisions]
    rows = compare(results, args.tolerance, args.window)
    write_report(rows, args)
    bad = [f"{r['shape']}/{r['precision']}" for r in rows if not r["ok"]]
    if bad:
        print(f"[fp8-check] FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    print("[fp8-check] all FP8 runs follow bf16 within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
