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


def run(args) -> int:
    from findap_nemo.plan.config import load_plan_config
    from findap_nemo.plan.run import exit_code, measure_and_compare, plan_layouts

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
    from findap_nemo.plan.report import print_json, print_tables

    own, cands = plan_layouts(cfg, with_configured=bool(args.config))
    if args.json:
        print_json(cfg, own, cands)
    else:
        print_tables(cfg, own, cands, show_all=args.all)
    return exit_code([c for c in cands if c.fits], own)
