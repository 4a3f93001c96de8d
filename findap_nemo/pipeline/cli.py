"""`findap-nemo run`: the whole FinDAP pipeline in one command.

    findap-nemo run configs/demo.yaml                       # tiny model + shipped sample data, on CPU
    findap-nemo run configs/demo.yaml train.overrides='[schedule.train_iters=10]' --force-stage train
    findap-nemo run configs/demo.yaml --force               # redo every stage

Stages, each a `findap-nemo <stage>` subprocess writing into <run_dir>/<stage>/:
base model (HF) -> base model (megatron) -> data (CPT+IT blend) -> train (joint CPT+IT) -> export CPT+IT to HF ->
GenRM preference pairs -> DPO -> export DPO to HF -> FinEval of base, CPT+IT and DPO -> report (markdown + HTML).
Finished stages are recorded in <run_dir>/stages/ and skipped on a rerun only while their fingerprint holds: the
command, the contents of the stage's YAML and the files it names, and the runs of the earlier stages whose outputs it
reads. Each stage that runs says why. A failed stage says why and how to resume; SIGTERM/SIGUSR1 reach the running
stage, which checkpoints, and the pipeline exits 75.
On a cluster, `findap-nemo slurm pipeline` submits the same stages as chained SLURM jobs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline YAML (e.g. configs/demo.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. run_dir=runs/x train.nproc_per_node=1")
    p.add_argument("--force", action="store_true", help="redo every stage, even finished ones")
    p.add_argument("--force-stage", action="append", default=[], metavar="STAGE",
                   help="redo this stage (repeatable); later stages rerun when their inputs changed")
    p.add_argument("--print-config", action="store_true", help="print the resolved pipeline config and exit")


def run(args) -> int:
    from findap_nemo.config import config_yaml, load_config, save_config
    from findap_nemo.pipeline.config import PipelineConfig
    from findap_nemo.pipeline.runner import Runner, StageFailed
    from findap_nemo.pipeline.stages import build_stages, write_report

    cfg = load_config(PipelineConfig, args.config, args.overrides)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "pipeline.yaml")
    stages = build_stages(cfg)
    known = {s.name for s in stages}
    unknown = set(args.force_stage) - known
    if unknown:
        print(f"findap-nemo run: unknown --force-stage {sorted(unknown)}; stages are {[s.name for s in stages]}",
              file=sys.stderr)
        return 2
    hint = "`findap-nemo run " + " ".join([args.config, *args.overrides]) + "`"
    runner = Runner(run_dir, force=args.force, force_stages=set(args.force_stage), resume_hint=hint)
    print(f"FinDAP pipeline -> {run_dir} ({len(stages)} stages + report)", flush=True)
    try:
        records = runner.run(stages)
    except StageFailed as err:
        print(f"\nfindap-nemo run: {err}", file=sys.stderr)
        return err.code
    md, html = write_report(cfg, records)
    print(f"report: {md} and {html}", flush=True)
    return 0
