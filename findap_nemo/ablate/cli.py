"""`findap-nemo ablate`: the paper's recipe comparisons in one job, on a laptop or on SLURM.

    findap-nemo ablate configs/ablations/recipes_cpu.yaml                    # every variant, then the comparison
    findap-nemo ablate configs/ablations/recipes_cpu.yaml --only joint       # one variant (resumable), then compare
    findap-nemo ablate configs/ablations/recipes_llama3_8b.yaml --slurm configs/slurm/h100.yaml --dry-run
    findap-nemo ablate configs/ablations/recipes_cpu.yaml --list             # variants and what they share

Variants of one pipeline (recipe joint / sequential / cpt_only / it_only, data mix, preference data, learning rate,
...) share every stage whose inputs are identical, found from the stages' fingerprints (one data build per distinct
recipe, one base conversion, one FinEval of the base). A failing variant is recorded with its reason and the others
go on. The comparison (<run_dir>/compare/report.{md,html}, results.json, ablation.png) puts every variant against
the base on every FinEval category with 95% intervals, the gain (finance) beside the forgetting (general,
reasoning, instruction following) and each variant's training cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from findap_nemo.runtime import EXIT_REQUEUE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="ablation YAML (e.g. configs/ablations/recipes_cpu.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the ablation config, e.g. run_dir=runs/x")
    p.add_argument("--only", action="append", default=[], metavar="VARIANT",
                   help="run only this variant (repeatable); the comparison covers every finished variant")
    p.add_argument("--force", action="store_true", help="redo every stage of the selected variants (shared ones once)")
    p.add_argument("--compare-only", action="store_true",
                   help="run no variant: evaluate the finished ones against the base and write the comparison")
    p.add_argument("--list", action="store_true",
                   help="print the variants, their stages and what they share; run nothing")
    p.add_argument("--slurm", metavar="CLUSTER_YAML",
                   help="submit as SLURM jobs with this `findap-nemo slurm` config (cluster, resources, container)")
    p.add_argument("--slurm-override", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the SLURM config (repeatable), e.g. resources.account=myproj")
    p.add_argument("--dry-run", action="store_true", help="with --slurm: print the scripts; submit nothing")
    p.add_argument("--print-config", action="store_true", help="print the resolved ablation config and exit")


def run(args) -> int:
    from findap_nemo.ablate.config import load
    from findap_nemo.ablate.run import variants
    from findap_nemo.config import ConfigError, config_yaml

    cfg = load(args.config, args.overrides)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    vs = variants(cfg)
    unknown = set(args.only) - {v.name for v in vs}
    if unknown:
        raise ConfigError(f"--only {sorted(unknown)}: no such variant; variants: {[v.name for v in vs]}")
    if args.list:
        from findap_nemo.ablate.report import print_variants

        print_variants(vs)
        return 0
    if args.dry_run and not args.slurm:
        raise ConfigError("--dry-run renders SLURM jobs: give --slurm CLUSTER_YAML too (or use --list)")
    if args.slurm:
        from findap_nemo.ablate.slurm import submit_variants

        return submit_variants(cfg, vs, args)
    from findap_nemo.config import save_config

    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.run_dir) / "ablation.yaml")
    hint = "`findap-nemo ablate " + " ".join([args.config, *args.overrides]) + "`"
    from findap_nemo.ablate.run import compare_variants, run_variants

    code = 0
    if not args.compare_only:
        todo = [v for v in vs if not args.only or v.name in args.only]
        code = run_variants(cfg, todo, force=args.force, resume_hint=hint)
        if code == EXIT_REQUEUE:
            return code
    # a failed variant still leaves a comparison of the others (exit 1 says it failed)
    return compare_variants(cfg, vs, hint) or code
