"""The project side by side with what its users would otherwise run, measured in one run, interleaved.

Training step: findap-nemo's real ``Trainer.train_step`` (megatron-core GPTModel, local layer spec, megatron's
optimizer, the per-token masked loss, mock packed data) against a plain Hugging Face loop of the same shape and
parameter count: ``LlamaForCausalLM`` (SDPA attention) + ``torch.optim.AdamW`` with its defaults, the same
micro-batches, gradient accumulation, masked per-token loss and gradient clipping. One process is data-parallel
size 1, where megatron's default optimizer is the plain one (the distributed optimizer has nothing to shard there and
only adds buffers: its own row shows what). A last row runs findap-nemo as it was before its CPU fast paths
(megatron's unfused attention, torch's for-loop Adam, the distributed optimizer) to show what they bring.

Every measurement is its own child process (OMP_NUM_THREADS=1), started in turn (ABC, BCA, CAB, ...) so machine
load drifts over all of them alike, or with ``--concurrent`` a repetition's children all at once (same load). CPU seconds (``time.process_time`` in the child) are the headline: on a shared
machine they are far less sensitive to other load than wall time, which is reported too, with the load average.

    python benchmarks/compare.py                     # hidden 256, 4 layers, seq 512; writes results/compare.*
    python benchmarks/compare.py --shape smollm2-135m --reps 2 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# Llama shapes; vocab sizes are multiples of 128 so megatron's padded embedding has the HF model's size.
SHAPES = {
    "h256": dict(num_layers=4, hidden_size=256, ffn_hidden_size=704, num_attention_heads=4, num_query_groups=2,
                 vocab_size=2048, tied=False, seq_length=512, micro_batch_size=2, global_batch_size=8),
    # SmolLM2-135M, the main job's model (tied embeddings, 9 heads / 3 KV groups).
    "smollm2-135m": dict(num_layers=30, hidden_size=576, ffn_hidden_size=1536, num_attention_heads=9,
                         num_query_groups=3, vocab_size=49152, tied=True, seq_length=512, micro_batch_size=1,
                         global_batch_size=2),
}
IMPLS = {
    "findap-nemo": "findap-nemo train step (SDPA attention, fused Adam)",
    "findap-nemo-distopt": "findap-nemo train step, distributed optimizer at DP1",
    "hf": "HF LlamaForCausalLM + torch AdamW loop",
    "findap-nemo-before": "findap-nemo train step, unfused attention + for-loop Adam (before)",
}
LR, BETAS, EPS, CLIP = 1e-3, (0.9, 0.95), 1e-8, 1.0


def _mock_batches(shape: dict, step: int):
    """The micro-batches of one global batch: the trainer's own synthetic packs (2 documents, masked prompts)."""
    from torch.utils.data import default_collate

    from findap_nemo.train.gpt_step import MockGPTDataset

    ds = MockGPTDataset(10_000, shape["seq_length"], shape["vocab_size"], seed=1234)
    mbs, gbs = shape["micro_batch_size"], shape["global_batch_size"]
    start = step * gbs
    return [default_collate([ds[start + m * mbs + j] for j in range(mbs)]) for m in range(gbs // mbs)]


def _megatron_stepper(shape: dict, before: bool, distopt: bool):
    from findap_nemo.config import load_config
    from findap_nemo.train.config import TrainJobConfig
    from findap_nemo.parallel import init_distributed
    from findap_nemo.train.run import build_datasets
    from findap_nemo.train.fused_adam import torch_adams
    from findap_nemo.train.gpt_step import make_gpt_forward_step
    from findap_nemo.train.trainer import Trainer

    overrides = [f"model.{k}={shape[k]}" for k in ("num_layers", "hidden_size", "ffn_hidden_size",
                                                    "num_attention_heads", "num_query_groups", "vocab_size")]
    overrides += [f"model.untie_embeddings_and_output_weights={not shape['tied']}",
                  f"schedule.seq_length={shape['seq_length']}", f"schedule.micro_batch_size={shape['micro_batch_size']}",
                  f"schedule.global_batch_size={shape['global_batch_size']}", "schedule.train_iters=1000",
                  f"optim.lr={LR}", f"optim.min_lr={LR}", "optim.lr_decay_style=constant",
                  "optim.lr_warmup_fraction=null", "optim.lr_warmup_iters=0", f"optim.clip_grad={CLIP}",
                  "model.make_vocab_size_divisible_by=128", "data.mock=true", "checkpoint.save=null",
                  f"parallel.use_distributed_optimizer={distopt or before}"]
    if before:
        overrides.append("model.attention_backend=unfused")
    cfg = load_config(TrainJobConfig, str(REPO / "configs/train/tiny_cpu.yaml"), overrides)
    init_distributed(cfg.parallel, cfg.schedule.seed)
    trainer = Trainer(cfg, make_gpt_forward_step(False), build_datasets(cfg, seed=cfg.schedule.seed))
    if before:
        for adam in torch_adams(trainer.optimizer):
            for group in adam.param_groups:
                group["fused"] = False
    params = sum(p.numel() for c in trainer.model for p in c.parameters())
    return (lambda: trainer.train_step()["lm_loss"]), params


def _hf_stepper(shape: dict):
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1234)
    config = LlamaConfig(hidden_size=shape["hidden_size"], intermediate_size=shape["ffn_hidden_size"],
                         num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_attention_heads"],
                         num_key_value_heads=shape["num_query_groups"], vocab_size=shape["vocab_size"],
                         tie_word_embeddings=shape["tied"], rope_theta=500000.0, rms_norm_eps=1e-5,
                         max_position_embeddings=4096, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)
    state = {"step": 0}

    def step():
        batches = _mock_batches(shape, state["step"])
        state["step"] += 1
        total = sum(float(b["loss_mask"].sum()) for b in batches)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for b in batches:
            logits = model(input_ids=b["tokens"], position_ids=b["position_ids"]).logits
            losses = F.cross_entropy(logits.float().flatten(0, 1), b["labels"].flatten(), reduction="none")
            loss = (losses * b["loss_mask"].flatten()).sum()
            (loss / total).backward()
            loss_sum += float(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        return loss_sum / total

    return step, sum(p.numel() for p in model.parameters())


def child(impl: str, shape_name: str, warmup: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    if impl != "hf":  # as the findap-nemo CLI does before importing megatron-core
        from findap_nemo.deferred_compile import defer_torch_compile

        defer_torch_compile()
    shape = SHAPES[shape_name]
    t0 = time.process_time()
    if impl == "hf":
        step, params = _hf_stepper(shape)
    else:
        step, params = _megatron_stepper(shape, before=impl.endswith("before"), distopt=impl.endswith("distopt"))
    setup_cpu = time.process_time() - t0
    for _ in range(warmup):
        step()
    cpu, wall, losses = [], [], []
    for _ in range(steps):
        c, w = time.process_time(), time.perf_counter()
        losses.append(step())
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the profiler's own allocations
    return {"impl": impl, "params": params, "setup_cpu_s": setup_cpu, "cpu_s": cpu, "wall_s": wall,
            "losses": losses, "peak_rss_mib": peak, "kernels": _profile_step(step)}


def _profile_step(step) -> dict:
    """Self CPU seconds of one more step by kernel class (torch.profiler): the matrix multiplies and attention that
    any implementation of the same model must run, and everything else."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    out = {"matmul": 0.0, "attention": 0.0, "total": 0.0}
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total / 1e6
        out["total"] += t
        if ev.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
            out["matmul"] += t
        elif "scaled_dot_product" in ev.key:
            out["attention"] += t
    return out


def _run_children(impls: list[str], args) -> dict[str, dict]:
    """One child per implementation, in turn, or (``--concurrent``) all at once so they share the same load."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def start(impl):
        return subprocess.Popen([sys.executable, __file__, "--child", impl, "--shape", args.shape, "--warmup",
                                 str(args.warmup), "--steps", str(args.steps)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(impl, proc):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{impl} failed:\n{err[-4000:]}")
        return json.loads(out.strip().splitlines()[-1])

    if args.concurrent:
        procs = {impl: start(impl) for impl in impls}
        return {impl: finish(impl, p) for impl, p in procs.items()}
    return {impl: finish(impl, start(impl)) for impl in impls}


def _summary(runs: list[dict]) -> dict:
    cpu = [min(r["cpu_s"]) for r in runs]  # per child: its best step; then over repetitions
    wall = [min(r["wall_s"]) for r in runs]
    return {"params": runs[0]["params"], "cpu_s_min": min(cpu), "cpu_s_median": statistics.median(cpu),
            "wall_s_min": min(wall), "wall_s_median": statistics.median(wall),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in runs),
            "loss_last": runs[-1]["losses"][-1], "repetitions": len(runs),
            "kernels": {k: statistics.median(r["kernels"][k] for r in runs) for k in runs[0]["kernels"]}}


def write_tables(meta: dict, results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "compare" if meta["shape"] == "h256" else f"compare_{meta['shape']}"
    tmp = RESULTS / f".{name}.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    tmp.replace(RESULTS / f"{name}.json")
    ours, alt = results["findap-nemo"], results["hf"]
    s = SHAPES[meta["shape"]]
    shape = (f"hidden {s['hidden_size']}, {s['num_layers']} layers, {s['num_attention_heads']} heads / "
             f"{s['num_query_groups']} KV, seq {s['seq_length']}, batch {s['global_batch_size']} "
             f"(micro {s['micro_batch_size']}), TP1, fp32 CPU, {ours['params'] / 1e6:.2f}M / {alt['params'] / 1e6:.2f}M "
             "params")
    lines = [f"# {name}", "", f"`{meta['command']}` on {meta['machine']} ({meta['date']}); load average "
             f"{meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end.", "",
             f"Training step, {shape}. Per child process: its fastest of {meta['steps']} steps after "
             f"{meta['warmup']} warm-up; min / median over {meta['reps']} interleaved repetitions"
             f"{' (each repetition runs its children concurrently)' if meta['concurrent'] else ''}.", "",
             "| run | CPU s/step (min / median) | wall s/step (min / median) | peak RSS MiB | HF CPU s / this |",
             "|---|---|---|---|---|"]
    for impl, r in results.items():
        ratio = alt["cpu_s_median"] / r["cpu_s_median"]
        lines.append(f"| {IMPLS[impl]} | {r['cpu_s_min']:.3f} / {r['cpu_s_median']:.3f} | {r['wall_s_min']:.3f} / "
                     f"{r['wall_s_median']:.3f} | {r['peak_rss_mib_median']:.0f} | {ratio:.2f}x |")
    lines += ["", "The last column is throughput relative to the HF loop (> 1: faster than HF), from median CPU "
              "seconds. Wall times are inflated by other load on the shared machine.", "",
              "Where a step's CPU time goes (one more step per child under torch.profiler, medians; self CPU seconds):",
              "", "| run | profiled step | matmul | attention | rest | matmul + attention share |", "|---|---|---|---|---|---|"]
    for impl, r in results.items():
        k = r["kernels"]
        core = k["matmul"] + k["attention"]
        lines.append(f"| {IMPLS[impl]} | {k['total']:.3f} | {k['matmul']:.3f} | {k['attention']:.3f} | "
                     f"{k['total'] - core:.3f} | {core / k['total']:.0%} |")
    core = ours["kernels"]["matmul"] + ours["kernels"]["attention"]
    lines += ["", f"Bound: with nothing but its matmuls and attention left, findap-nemo's step would take {core:.3f} s, "
              f"{alt['cpu_s_median'] / core:.2f}x the HF loop's median step."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="h256")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (child processes per run)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per child")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    ap.add_argument("--concurrent", action="store_true",
                    help="run each repetition's children at the same time (a loaded machine: same load for all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shape, args.warmup, args.steps)))
        return 0
    impls = args.impls.split(",")
    unknown = [i for i in impls if i not in IMPLS]
    if unknown or "findap-nemo" not in impls or "hf" not in impls:
        ap.error(f"--impls: {unknown or impls}: use findap-nemo, hf and optionally findap-nemo-distopt, "
                 "findap-nemo-before")
    meta = {"command": "python benchmarks/compare.py " + " ".join(sys.argv[1:]), "shape": args.shape,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "reps": args.reps, "warmup": args.warmup,
            "steps": args.steps, "concurrent": args.concurrent, "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    runs: dict[str, list[dict]] = {i: [] for i in impls}
    for rep in range(args.reps):
        order = impls[rep % len(impls):] + impls[:rep % len(impls)]
        print(f"... rep {rep + 1}/{args.reps}: {', '.join(order)}", file=sys.stderr, flush=True)
        for impl, result in _run_children(order, args).items():
            runs[impl].append(result)
    meta["loadavg_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results = {i: _summary(runs[i]) for i in impls}
    for i in impls:
        results[i]["runs"] = [{k: r[k] for k in ("cpu_s", "wall_s", "peak_rss_mib", "losses")} for r in runs[i]]
    write_tables(meta, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
