"""Training step throughput and peak memory per parallel layout.

CPU (default): the tiny model on gloo, TP1 / TP2 / PP2 / TP2+SP / DP2 (2 processes), tokens/s and peak RSS per rank.
GPU (--gpu, on an H100): a Llama-3-8B-shaped model with fewer layers in bf16 and FP8 (Transformer Engine, delayed and
tensorwise recipes), tokens/s, TFLOP/s per GPU and MFU against the H100 dense peak.

    python benchmarks/train_step.py                  # writes benchmarks/results/train_step_cpu.{json,md}
    python benchmarks/train_step.py --gpu            # writes benchmarks/results/train_step_gpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

CPU_LAYOUTS = {
    "TP1": (1, []),
    "TP2": (2, ["parallel.tensor_model_parallel_size=2"]),
    "PP2": (2, ["parallel.pipeline_model_parallel_size=2", "schedule.global_batch_size=16"]),
    "TP2+SP": (2, ["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true"]),
    "DP2 (dist. optimizer)": (2, []),
}

GPU_RUNS = {
    "bf16": [],
    "fp8 delayed": ["precision.fp8=hybrid", "precision.fp8_recipe=delayed"],
    "fp8 tensorwise": ["precision.fp8=hybrid", "precision.fp8_recipe=tensorwise"],
}


def run(nproc: int, config: str, overrides: list[str], iters: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "findap_nemo.cli", "train", "--config", config,
                f"schedule.train_iters={iters}", "schedule.eval_interval=null", "checkpoint.save_interval=null",
                f"logging.metrics_file={tmp}/metrics.jsonl", "checkpoint.save=null", "logging.progress_bar=false",
                *overrides]
        if nproc > 1:
            args[4:4] = ["--nproc-per-node", str(nproc)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
        proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run failed ({' '.join(overrides)}):\n{proc.stderr[-4000:]}")
        return [json.loads(x) for x in Path(tmp, "metrics.jsonl").read_text().splitlines()]


def summarise(rows: list[dict], warmup: int) -> dict:
    steady = rows[warmup:] or rows
    out = {
        "iterations": len(rows),
        "step_time_s_median": statistics.median(r["step_time_s"] for r in steady),
        "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
        "final_lm_loss": rows[-1]["lm_loss"],
    }
    for key in ("peak_rss_mib", "tflops_per_gpu", "mfu", "peak_mem_gib"):
        if key in rows[-1]:
            out[key] = max(r[key] for r in steady) if key.startswith("peak") else statistics.median(
                r[key] for r in steady)
    return out


def write(name: str, meta: dict, results: dict, columns: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [f"# {name}", "", f"`{meta['command']}` on {meta['machine']} ({meta['date']})", "",
             "| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for run_name, r in results.items():
        cells = []
        for c in columns:
            v = r.get(c)
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v if v is not None else "-"))
        lines.append(f"| {run_name} | " + " | ".join(cells) + " |")
    lines += ["", meta.get("note", "")]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="the H100 benchmark (Llama-3-8B shape, bf16 vs FP8)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--layers", type=int, default=4, help="--gpu: decoder layers of the 8B-shaped model")
    ap.add_argument("--seq-length", type=int, default=8192, help="--gpu: sequence length")
    args = ap.parse_args()
    meta = {"command": "python benchmarks/train_step.py" + (" --gpu" if args.gpu else ""),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not args.gpu:
        iters = args.iters or 25
        results = {}
        for name, (nproc, overrides) in CPU_LAYOUTS.items():
            print(f"... {name}", flush=True)
            results[name] = summarise(run(nproc, "configs/train/tiny_cpu.yaml", ["data.mock=true", *overrides],
                                          iters), warmup=5)
            results[name]["processes"] = nproc
        meta["note"] = ("Tiny model (4 layers, hidden 64, seq 64, global batch 8 [16 for PP2]), fp32, gloo; "
                        "OMP_NUM_THREADS=1 per rank. Peak RSS is rank 0's. CPU numbers measure overheads "
                        "(communication, schedules), not model math.")
        write("train_step_cpu", meta, results, ["processes", "tokens_per_s_median", "step_time_s_median",
                                                 "peak_rss_mib", "final_lm_loss"])
        return 0
    import torch

    from findap_nemo.runtime import has_transformer_engine

    if not torch.cuda.is_available():
        print("--gpu needs a CUDA GPU (an H100 for FP8); none is visible here", file=sys.stderr)
        return 2
    iters = args.iters or 20
    gpus = torch.cuda.device_count()
    results = {}
    for name, overrides in GPU_RUNS.items():
        if overrides and not has_transformer_engine():
            results[name] = {"skipped": "Transformer Engine not importable"}
            continue
        print(f"... {name}", flush=True)
        results[name] = summarise(run(gpus, "configs/train/tiny_cpu.yaml", [
            "model.preset=llama3-8b", f"model.num_layers={args.layers}", "precision.params_dtype=bf16",
            f"schedule.seq_length={args.seq_length}", "schedule.micro_batch_size=1", f"schedule.global_batch_size={gpus * 4}",
            "data.mock=true", "optim.lr=1e-5", *overrides], iters), warmup=5)
    meta["note"] = (f"Llama-3-8B shape with {args.layers} layers, seq {args.seq_length}, {gpus} GPU(s), "
                    "MFU against 989 TFLOP/s (bf16) / 1979 (FP8) dense H100 SXM peak.")
    write("train_step_gpu", meta, results, ["tokens_per_s_median", "tflops_per_gpu", "mfu", "peak_mem_gib",
                                             "final_lm_loss"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
