"""How a plan is shown: the configured layout, the fitting ones fastest first, the closest that do not fit and why
the rest were rejected (rich tables), or every candidate as JSON (`--json`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter


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


def print_json(cfg, own, cands) -> None:
    out = {"model": cfg.model.preset, "seq_length": cfg.schedule.seq_length,
           "global_batch_size": cfg.schedule.global_batch_size, "sequences_per_sample": cfg.sequences_per_sample,
           "dtype": cfg.param_dtype,
           "fp8": cfg.precision.fp8, "cluster": dataclasses.asdict(cfg.cluster),
           "configured": own.to_dict() if own else None,
           "candidates": [c.to_dict() for c in cands]}
    json.dump(out, sys.stdout, indent=1, default=str)
    print()


def print_tables(cfg, own, cands, *, show_all: bool) -> None:
    from rich.console import Console

    fitting = [c for c in cands if c.fits]
    rejected = [c for c in cands if not c.fits]
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
    shown = fitting if show_all else fitting[: cfg.search.top]
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
