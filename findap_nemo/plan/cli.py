"""`findap-nemo plan`: rank TP/PP/VPP/CP/DP layouts by estimated per-GPU memory and step time on a cluster.

    findap-nemo plan --config configs/train/llama3-70b-cpt-it-8node.yaml cluster.nodes=8
    findap-nemo plan model.preset=llama3-8b schedule.seq_length=8192 schedule.global_batch_size=128 cluster.nodes=2
    findap-nemo plan --config configs/dpo/llama3-8b-dpo-1node.yaml --json > plan.json
    findap-nemo plan --config configs/train/tiny_cpu.yaml --measure --nproc-per-node 2 parallel.tensor_model_parallel_size=2

Memory: weights, fp32 gradient buffers, Adam states (with/without the distributed optimizer), activations (with
SP/CP/selective or full recompute) and the largest transient buffer, for the worst pipeline stage; a layout fits if
that is below cluster.gpu_memory_gib - cluster.reserved_gib. Time: model FLOPs at a calibrated H100 efficiency plus
TP/CP/PP/DP communication and the pipeline bubble. See docs/planner.md for the model and its validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a train/dpo YAML (its model/parallel/precision/schedule sections are used) or a "
                                    "plan YAML with model/train/cluster/search sections")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. cluster.nodes=2 schedule.seq_length=8192 "
                                                "model.preset=llama3-70b search.recompute=[null,full]")
    p.add_argument("--json", action="store_true", help="print every candidate as JSON instead of tables")
    p.add_argument("--all", action="store_true", help="show every fitting layout, not only search.top")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--measure", action="store_true",
                   help="build the configured layout on this machine, run one training step and compare the measured "
                        "memory with the estimate (PP=1; use --nproc-per-node, torchrun or srun for TP/DP > 1)")
    from findap_nemo.launch import add_launch_arguments

    add_launch_arguments(p)


def load_plan_config(path: str | None, overrides: list[str]):
    """Read a plan config, or the relevant sections of a train/dpo config."""
    from findap_nemo.config import load_config
    from findap_nemo.config.loader import read_yaml
    from findap_nemo.plan.config import PlanJobConfig

    base = None
    if path:
        data = read_yaml(path)
        keep = {"model", "parallel", "precision", "schedule", "cluster", "search", "dtype", "calibration",
                "sequences_per_sample"}
        base = {k: v for k, v in data.items() if k in keep}
        if "dpo" in data:  # a DPO config: samples are (chosen, rejected) pairs, and DPO has no context parallelism
            base.setdefault("sequences_per_sample", 2)
            base.setdefault("search", {}).setdefault("context_parallel_sizes", [1])
    return load_config(PlanJobConfig, None, overrides, base=base)


def configured_layout(cfg):
    """The layout the given config asks for (evaluated and reported first)."""
    from findap_nemo.plan.layout import Layout

    par, n = cfg.parallel, cfg.cluster.world_size
    denom = par.tensor_model_parallel_size * par.pipeline_model_parallel_size * par.context_parallel_size
    if n % denom:
        dp = 0
    else:
        dp = n // denom
    sps = cfg.sequences_per_sample
    return Layout(tp=par.tensor_model_parallel_size, pp=par.pipeline_model_parallel_size,
                  vpp=par.virtual_pipeline_model_parallel_size, cp=par.context_parallel_size, dp=max(dp, 1),
                  sp=par.sequence_parallel, micro_batch_size=cfg.schedule.micro_batch_size * sps,
                  recompute=cfg.model.recompute_granularity, recompute_num_layers=cfg.model.recompute_num_layers or 1,
                  distributed_optimizer=par.use_distributed_optimizer, sequences_per_sample=sps), dp >= 1


def shape_kwargs(cfg) -> dict:
    """Sequence-level arguments of the estimators (a DPO global batch of N pairs is 2N sequences)."""
    return dict(seq_length=cfg.schedule.seq_length, global_batch_size=cfg.schedule.global_batch_size * cfg.sequences_per_sample,
                dtype=cfg.param_dtype, fp8=bool(cfg.precision.fp8), cal=cfg.calibration)


def _table(title: str, cands, cfg):
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in ("#", "layout", "weights", "grads", "optim", "activ", "transient", "total GiB", "step s",
                "tok/s/GPU", "MFU", "status"):
        t.add_column(col, justify="right" if col not in ("layout", "status") else "left")
    for i, c in enumerate(cands, 1):
        m = c.memory.as_gib() if c.memory else None
        cells = [f"{m[k]:.1f}" for k in ("weights", "grads", "optimizer", "activations", "transient", "total")] \
            if m else ["-"] * 6
        tm = [f"{c.time.step_s:.2f}", f"{c.time.tokens_per_s_per_gpu:,.0f}", f"{c.time.mfu:.1%}"] if c.time \
            else ["-"] * 3
        t.add_row(str(i), c.layout.describe(), *cells, *tm, "fits" if c.fits else "; ".join(c.reasons))
    return t


def reason_category(reason: str) -> str:
    """Group rejection reasons for the summary ("out of memory: activations dominate", divisibility, ...)."""
    if reason.startswith("needs"):
        worst = reason.split("(", 1)[1].split(" ")[0] if "(" in reason else "?"
        return f"out of memory, largest part: {worst}"
    return reason


def run(args) -> int:
    from rich.console import Console

    from findap_nemo.plan.search import evaluate, plan

    if args.measure:
        from findap_nemo.launch import maybe_relaunch

        code = maybe_relaunch(args, args.argv)
        if code is not None:
            return code
        return measure_and_compare(load_plan_config(args.config, list(args.overrides)))
    cfg = load_plan_config(args.config, list(args.overrides))
    if args.print_config:
        from findap_nemo.config import config_yaml

        print(config_yaml(cfg), end="")
        return 0
    common = shape_kwargs(cfg)
    own_layout, _ = configured_layout(cfg)
    # a layout whose TP x PP x CP does not divide the cluster is reported as "uses N GPUs, the cluster has M"
    own = evaluate(cfg.model, own_layout, cfg.cluster, impl=cfg.search.impl, **common) if args.config else None
    cands = plan(cfg.model, cfg.cluster, cfg.search, sequences_per_sample=cfg.sequences_per_sample, **common)
    fitting = [c for c in cands if c.fits]
    rejected = [c for c in cands if not c.fits]

    if args.json:
        out = {"model": cfg.model.preset, "seq_length": cfg.schedule.seq_length,
               "global_batch_size": cfg.schedule.global_batch_size, "sequences_per_sample": cfg.sequences_per_sample,
               "dtype": cfg.param_dtype,
               "fp8": cfg.precision.fp8, "cluster": dataclasses.asdict(cfg.cluster),
               "configured": own.to_dict() if own else None,
               "candidates": [c.to_dict() for c in cands]}
        json.dump(out, sys.stdout, indent=1, default=str)
        print()
        return exit_code(fitting, own)

    con = Console(width=200)
    c = cfg.cluster
    con.print(f"[bold]{cfg.model.preset or 'model'}[/]: {cfg.model.num_layers} layers, hidden {cfg.model.hidden_size}; "
              f"seq {cfg.schedule.seq_length}, global batch {cfg.schedule.global_batch_size}"
              f"{' pairs (DPO: 2 sequences each)' if cfg.sequences_per_sample == 2 else ''}, "
              f"{cfg.param_dtype}{' + FP8 ' + cfg.precision.fp8 if cfg.precision.fp8 else ''}; "
              f"{c.nodes} node(s) x {c.gpus_per_node} GPUs x {c.gpu_memory_gib:g} GiB "
              f"({c.gpu_memory_gib - c.reserved_gib:g} GiB usable)")
    if own is not None:
        rank = next((i for i, x in enumerate(fitting, 1) if x.layout == own.layout), None)
        verdict = f"fits, rank {rank} of {len(fitting)}" if own.fits and rank else \
            ("fits" if own.fits else "does NOT fit")
        con.print(_table(f"Configured layout ({verdict})", [own], cfg))
    shown = fitting if args.all else fitting[: cfg.search.top]
    con.print(_table(f"Layouts that fit: {len(fitting)} of {len(cands)} (fastest first)", shown, cfg))
    near = [x for x in rejected if x.memory is not None and all(r.startswith("needs") for r in x.reasons)]
    if near[: cfg.search.show_rejected]:
        con.print(_table("Closest layouts that do not fit in memory", near[: cfg.search.show_rejected], cfg))
    counts = Counter(reason_category(x.reasons[0]) for x in rejected)
    if counts:
        con.print("[bold]Why the other layouts were rejected[/] (first reason per layout):")
        for reason, n in counts.most_common(15):
            con.print(f"  {n:5d} x {reason}")
    if fitting:
        con.print("[bold]Best layout[/] as overrides: " + " ".join(fitting[0].layout.overrides()))
    else:
        con.print("[bold red]No layout fits[/]: add nodes, shorten schedule.seq_length, or allow recompute "
                  "(search.recompute) / larger parallel sizes.")
    return exit_code(fitting, own)


def exit_code(fitting, own) -> int:
    """0: some layout fits (and so does the configured one); 1: nothing fits; 3: the configured layout does not fit
    but others do (scripts can gate a submission on it)."""
    if not fitting:
        return 1
    return 3 if own is not None and not own.fits else 0


def measure_and_compare(cfg) -> int:
    """Measure the configured layout on this machine's ranks and print it next to the planner's estimate."""
    import os

    import torch

    from findap_nemo.config import ConfigError
    from findap_nemo.config.schema import use_te
    from findap_nemo.model.builder import params_dtype
    from findap_nemo.parallel import destroy_distributed, init_distributed, is_rank0
    from findap_nemo.plan.layout import Layout
    from findap_nemo.plan.measure import measure_training_memory
    from findap_nemo.plan.memory import estimate_memory

    par = cfg.parallel
    if cfg.sequences_per_sample != 1:
        raise ConfigError("--measure runs a language-model training step; give a train config (DPO memory is that of "
                          "a micro-batch twice as large)")
    if par.pipeline_model_parallel_size != 1:
        raise ConfigError("parallel.pipeline_model_parallel_size: --measure supports 1 (a middle pipeline stage needs "
                          "its neighbours' activations); measure the TP/CP/DP part of the layout")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    denom = par.tensor_model_parallel_size * par.context_parallel_size
    if world % denom:
        raise ConfigError(f"parallel: TP x CP = {denom} does not divide the {world} processes; start "
                          f"--nproc-per-node with a multiple of it")
    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[params_dtype(cfg.precision)]
    impl = "te" if use_te(cfg.model) else "local"
    init_distributed(par, cfg.schedule.seed)
    try:
        m = measure_training_memory(cfg.model, par, cfg.precision, seq_length=cfg.schedule.seq_length,
                                    micro_batch_size=cfg.schedule.micro_batch_size)
        rank0 = is_rank0()
    finally:
        destroy_distributed()
    layout = Layout(tp=par.tensor_model_parallel_size, cp=par.context_parallel_size, dp=world // denom,
                    sp=par.sequence_parallel, micro_batch_size=cfg.schedule.micro_batch_size,
                    recompute=cfg.model.recompute_granularity,
                    recompute_num_layers=cfg.model.recompute_num_layers or 1,
                    distributed_optimizer=par.use_distributed_optimizer)
    est = estimate_memory(cfg.model, layout, seq_length=cfg.schedule.seq_length, num_microbatches=1, dtype=dtype,
                          impl=impl, fp8=bool(cfg.precision.fp8))
    if rank0:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"Measured vs estimated memory per rank: {layout.describe()}, {dtype}, {impl} layers, "
                        f"seq {cfg.schedule.seq_length}")
        for col in ("part", "estimate MiB", "measured MiB", "difference"):
            t.add_column(col, justify="left" if col == "part" else "right")
        rows = [(k, getattr(est, k), getattr(m, k)) for k in ("weights", "grads", "optimizer", "activations")]
        rows.append(("total (without transient)", est.total - est.transient, m.total))
        if m.peak_allocated is not None:
            rows.append(("CUDA peak allocated vs total", est.total, m.peak_allocated))
        for name, e, x in rows:
            t.add_row(name, f"{e / 2**20:.3f}", f"{x / 2**20:.3f}", f"{(e - x) / max(x, 1):+.1%}")
        Console(width=160).print(t)
    return 0
