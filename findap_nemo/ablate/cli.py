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
import sys
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
        _list(vs)
        return 0
    if args.dry_run and not args.slurm:
        raise ConfigError("--dry-run renders SLURM jobs: give --slurm CLUSTER_YAML too (or use --list)")
    if args.slurm:
        return _slurm(cfg, vs, args)
    from findap_nemo.config import save_config

    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(cfg.run_dir) / "ablation.yaml")
    hint = "`findap-nemo ablate " + " ".join([args.config, *args.overrides]) + "`"
    code = 0
    if not args.compare_only:
        from findap_nemo.ablate.run import run_variants

        todo = [v for v in vs if not args.only or v.name in args.only]
        code = run_variants(cfg, todo, force=args.force, resume_hint=hint)
        if code == EXIT_REQUEUE:
            return code
    # a failed variant still leaves a comparison of the others (exit 1 says it failed)
    return compare(cfg, vs, hint) or code


def compare(cfg, vs, hint: str) -> int:
    from findap_nemo.ablate.report import read_comparison, write_comparison
    from findap_nemo.ablate.run import compare_stage, read_results
    from findap_nemo.pipeline.runner import Runner, StageFailed

    results = read_results(cfg, vs)
    out = Path(cfg.run_dir) / "compare"
    stage = compare_stage(cfg, vs, results)
    models: dict[str, str] = {}
    if stage is not None:
        print("=== comparison: FinEval of the base and every finished variant ===", flush=True)
        try:
            Runner(Path(cfg.run_dir), resume_hint=hint).run([stage])
        except StageFailed as err:
            print(f"\nfindap-nemo ablate: {err}", file=sys.stderr)
            return err.code
        models = {m: v.name for v in vs if results[v.name].get("status") == "done" for m in v.models(cfg.evaluate)}
    md, html = write_comparison(cfg.title, out, results, read_comparison(out) if stage is not None else None, models,
                                reference=cfg.reference)
    failed = [f"{n} ({r.get('status')})" for n, r in results.items() if r.get("status") != "done"]
    print(f"comparison: {md} and {html}" + (f"; not compared: {', '.join(failed)}" if failed else ""), flush=True)
    return 0


def _list(vs) -> None:
    users: dict[str, list[str]] = {}
    for v in vs:
        for st in v.stages:
            users.setdefault(st.name, []).append(v.name)
    print(f"{len(vs)} variants, {len(users)} distinct stages "
          f"({sum(len(v.stages) for v in vs) - len(users)} stage runs saved by sharing)")
    for v in vs:
        print(f"\n{v.name} (recipe {v.pipeline.recipe}; DPO {'on' if v.pipeline.dpo.enabled else 'off'})")
        for st in v.stages:
            others = [n for n in users[st.name] if n != v.name]
            print(f"  {st.name:28s} {st.title}" + (f"  [shared with {', '.join(others)}]" if others else ""))


def _slurm(cfg, vs, args) -> int:
    from findap_nemo.ablate.slurm import slurm_config
    from findap_nemo.slurm.render import paths, print_dry_run, render_pipeline
    from findap_nemo.slurm.submit import SubmitError, submit

    compare_cmd = [sys.executable, "-m", "findap_nemo.cli", "ablate", args.config, *args.overrides, "--compare-only"]
    scfg = slurm_config(cfg, vs, args.slurm, args.slurm_override, compare_cmd)
    jobs = render_pipeline(scfg, source=args.config)
    if args.dry_run:
        print_dry_run(jobs)
        return 0
    try:
        submit(scfg, jobs, source=args.config)
    except SubmitError as err:
        print(f"findap-nemo ablate: {err}", file=sys.stderr)
        return 1
    print(f"status: findap-nemo slurm status {paths(scfg)['run']}")
    return 0
