"""DPO step time with and without precomputed reference log-probs.

Precomputed: the frozen reference runs once over the data before training (a one-off cost, reported separately) and
each step is one policy forward + backward. On the fly: every step adds a forward-only reference pass through the
same pipeline schedule. Inputs (tokenizer, synthetic pairs, initial checkpoint) are generated in a temp folder.

    python benchmarks/dpo_step.py                 # CPU: tiny model, TP1 and TP2 (gloo) -> benchmarks/results/dpo_step.{json,md}
    python benchmarks/dpo_step.py --gpu --layers 4 --seq-length 2048   # GPU: Llama-3-8B shape with fewer layers, bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORDS = ("revenue income margin ratio bond yield duration equity asset liability cash flow interest rate inflation "
         "earnings guidance dividend credit spread default risk hedge option futures capital debt").split()
CORPUS = [" ".join(random.Random(i).choices(WORDS, k=40)) + "." for i in range(200)]

LLAMA3_8B = ["model.num_layers={layers}", "model.hidden_size=4096", "model.ffn_hidden_size=14336",
             "model.num_attention_heads=32", "model.num_query_groups=8", "model.vocab_size=128256",
             "model.max_position_embeddings=8192"]


def write_pairs(path: Path, n: int, words: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            prompt = [{"role": "user", "content": " ".join(rng.choices(WORDS, k=words // 2))}]
            f.write(json.dumps({"prompt": prompt, "chosen_response": " ".join(rng.choices(WORDS, k=words)),
                                "rejected_response": " ".join(rng.choices(WORDS, k=words))}) + "\n")


def write_init(out: str, overrides: list[str]) -> None:
    """A randomly initialised checkpoint of the benchmark model (run as a subprocess: dist checkpointing spawns)."""
    from findap_nemo.config import load_config
    from findap_nemo.train.config import TrainJobConfig
    from findap_nemo.model.builder import build_model
    from findap_nemo.parallel import destroy_distributed, init_distributed
    from findap_nemo.train.checkpointing import save_checkpoint

    cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", overrides)
    init_distributed(cfg.parallel, cfg.schedule.seed)
    save_checkpoint(out, 0, build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False))
    destroy_distributed()


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore",
                TOKENIZERS_PARALLELISM="false")


def run_dpo(nproc: int, base: list[str], overrides: list[str], tmp: Path, name: str) -> tuple[list[dict], str]:
    save = tmp / name
    args = [sys.executable, "-m", "findap_nemo.cli", "dpo", *base, f"checkpoint.save={save}", *overrides]
    if nproc > 1:
        args[4:4] = ["--nproc-per-node", str(nproc)]
    proc = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    rows = [json.loads(x) for x in (save / "metrics.jsonl").read_text().splitlines()]
    return rows, proc.stdout


def summarise(rows: list[dict], stdout: str, warmup: int) -> dict:
    steady = rows[warmup:] or rows
    pre = re.findall(r"reference log-probs for (\d+) \w+ pairs in ([\d.]+)s", stdout)
    out = {"iterations": len(rows), "step_time_s_median": statistics.median(r["step_time_s"] for r in steady),
           "step_time_s_p90": sorted(r["step_time_s"] for r in steady)[int(0.9 * (len(steady) - 1))],
           "precompute_s": sum(float(s) for _, s in pre) if pre else 0.0,
           "precompute_pairs": sum(int(n) for n, _ in pre) if pre else 0,
           "final_loss": rows[-1]["loss"], "final_reward_accuracy": rows[-1]["reward_accuracy"]}
    for key in ("peak_rss_mib", "peak_mem_gib", "tflops_per_gpu"):
        if key in rows[-1]:
            out[key] = max(r[key] for r in steady)
    return out


def write(meta: dict, results: dict, columns: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dpo_step.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["# dpo_step", "", f"`{meta['command']}` on {meta['machine']} ({meta['date']}, load average "
             f"{meta['load_average_at_start']:.1f} at start)", "",
             "| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
                                                  for c in columns) + " |")
    lines += ["", meta["note"]]
    (RESULTS / "dpo_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="Llama-3-8B-shaped model in bf16 on the visible GPUs")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--layers", type=int, default=4, help="--gpu: decoder layers")
    ap.add_argument("--seq-length", type=int, default=None)
    ap.add_argument("--write-init", nargs="+", metavar=("OUT", "OVERRIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_init:
        write_init(args.write_init[0], args.write_init[1:])
        return 0
    from findap_nemo.tokenizer import train_tokenizer

    meta = {"command": "python benchmarks/dpo_step.py" + (" --gpu" if args.gpu else ""),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train_tokenizer(CORPUS, tmp / "tok", vocab_size=512)
        if args.gpu:
            import torch

            if not torch.cuda.is_available():
                print("--gpu needs a CUDA GPU; none is visible here", file=sys.stderr)
                return 2
            gpus = torch.cuda.device_count()
            seq = args.seq_length or 2048
            model = [o.format(layers=args.layers) for o in LLAMA3_8B] + ["precision.params_dtype=bf16"]
            layouts = {"TP1": (1, [])} if gpus == 1 else {f"TP{gpus}": (gpus, [f"parallel.tensor_model_parallel_size={gpus}"])}
            iters, words, n_pairs, mbs, gbs = args.iters or 12, int(seq * 0.3), 256, 1, 8 * gpus
        else:
            seq = args.seq_length or 256
            model = []
            layouts = {"TP1": (1, []), "TP2": (2, ["parallel.tensor_model_parallel_size=2"])}
            iters, words, n_pairs, mbs, gbs = args.iters or 30, int(seq * 0.3), 64, 2, 8
        write_pairs(tmp / "pairs.jsonl", n_pairs, words)
        subprocess.run([sys.executable, __file__, "--write-init", str(tmp / "init"), *model], cwd=REPO, env=_env(),
                       check=True, capture_output=True)
        base = ["--config", "configs/dpo/tiny_cpu.yaml", f"model.tokenizer={tmp / 'tok'}",
                f"checkpoint.pretrained={tmp / 'init'}", f"data.train_file={tmp / 'pairs.jsonl'}",
                f"schedule.seq_length={seq}", f"schedule.train_iters={iters}", f"schedule.micro_batch_size={mbs}",
                f"schedule.global_batch_size={gbs}", "schedule.eval_interval=null", "checkpoint.save_interval=null",
                "checkpoint.keep_last=1", "logging.progress_bar=false", "data.validation_fraction=0", *model]
        results = {}
        for lname, (nproc, overrides) in layouts.items():
            for mode, flag in (("precomputed", "true"), ("on the fly", "false")):
                name = f"{lname} {mode}"
                print(f"... {name}", flush=True)
                rows, out = run_dpo(nproc, base, [*overrides, f"dpo.precompute_reference_logps={flag}"], tmp,
                                    name.replace(" ", "_"))
                results[name] = {"processes": nproc, **summarise(rows, out, warmup=3)}
            pre, fly = results[f"{lname} precomputed"], results[f"{lname} on the fly"]
            fly["speedup_of_precomputed"] = fly["step_time_s_median"] / pre["step_time_s_median"]
            saving = fly["step_time_s_median"] - pre["step_time_s_median"]
            fly["break_even_steps"] = pre["precompute_s"] / saving if saving > 0 else "never (no saving measured)"
    shape = (f"Llama-3-8B shape, {args.layers} layers, bf16" if args.gpu else "tiny model (4 layers, hidden 64), fp32, gloo")
    meta["note"] = (f"{shape}; seq {seq}, {mbs} pair(s) per micro-batch, {gbs} pairs per step, {n_pairs} synthetic "
                    f"pairs (~{words} words per response). step_time excludes the one-off reference pass "
                    "(precompute_s over precompute_pairs); break_even_steps = precompute_s / per-step saving.")
    write(meta, results, ["processes", "step_time_s_median", "step_time_s_p90", "precompute_s", "precompute_pairs",
                          "speedup_of_precomputed", "break_even_steps", "peak_rss_mib", "peak_mem_gib"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
