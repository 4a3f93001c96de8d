"""`findap-nemo eval`: FinEval on one or more HF checkpoints, compared side by side.

    findap-nemo eval --config configs/eval/demo.yaml models.base=/ckpt/base-hf models.dpo=/ckpt/dpo-hf \\
        output_dir=runs/eval
    findap-nemo eval --config configs/eval/fineval.yaml models.cpt_it=/ckpt/hf tasks='[unseen_similar,cfa_easy]'
    findap-nemo eval --list-tasks
    findap-nemo eval --compare runs/a/results.json runs/b/results.json --output-dir runs/ab

``--compare`` also joins a model's tasks that separate jobs evaluated (e.g. one SLURM job per task group).

Writes predictions/<model>/<task>.jsonl, results.{json,md} and, for two or more models,
comparison.{json,md,png} under output_dir.
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="eval YAML (see configs/eval/); keys can also be given as overrides")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. models.base=/ckpt/hf limit=20 tasks=[fomc]")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--list-tasks", action="store_true", help="list the registered tasks (registry=... applies)")
    p.add_argument("--compare", nargs="+", metavar="RESULTS_JSON",
                   help="merge existing results.json files instead of evaluating: a model's tasks from separate "
                        "jobs are combined, different models are compared side by side")
    p.add_argument("--output-dir", help="with --compare: where results.{json,md} and comparison.* go")


def _list_tasks(overrides: list[str]) -> int:
    import yaml

    from findap_nemo.eval.registry import load_registry, task_table

    paths = [o.split("=", 1)[1] for o in overrides if o.startswith("registry=")]
    chosen = yaml.safe_load(paths[-1]) if paths else ["configs/eval/tasks"]
    sys.stdout.write(task_table(load_registry([chosen] if isinstance(chosen, str) else chosen)))
    return 0


def _list_overrides(overrides: list[str]) -> list[str]:
    """Let `tasks=fomc` and `tasks=fomc,cfa_easy` mean lists (as `tasks=[fomc,cfa_easy]` does)."""
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key in ("tasks", "registry") and value and not value.lstrip().startswith("["):
            o = f"{key}=[{value}]"
        out.append(o)
    return out


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.list_tasks:
        return _list_tasks(_list_overrides(args.overrides))
    if args.compare:
        from pathlib import Path

        from findap_nemo.config import ConfigError
        from findap_nemo.eval.report import compare_results_files

        if not args.output_dir:
            raise ConfigError("--compare needs --output-dir for comparison.{json,md,png}")
        missing = [p for p in args.compare if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"--compare: results files {missing} do not exist")
        merged = compare_results_files(args.compare, Path(args.output_dir))
        shown = "comparison.md" if len(merged["models"]) >= 2 else "results.md"
        print(Path(args.output_dir, shown).read_text(encoding="utf-8"))
        return 0
    from findap_nemo.config import config_yaml, load_config
    from findap_nemo.eval.config import EvalConfig
    from findap_nemo.eval.run import run_eval

    cfg = load_config(EvalConfig, args.config, _list_overrides(args.overrides))
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    run_eval(cfg)
    from pathlib import Path

    out = Path(cfg.output_dir)
    print((out / ("comparison.md" if len(cfg.models) >= 2 else "results.md")).read_text(encoding="utf-8"))
    return 0
