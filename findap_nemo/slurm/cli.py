"""`findap-nemo slurm`: every stage as a SLURM batch job, with auto-resume, stage pipelines and sweeps.

    findap-nemo slurm submit --config configs/slurm/h100.yaml -- train --config configs/train/x.yaml optim.lr=1e-5
    findap-nemo slurm submit --config configs/slurm/ablation_lr_h100.yaml --dry-run   # a job array; print only
    findap-nemo slurm pipeline --config configs/slurm/findap_llama3_8b_h100.yaml resources.account=myproj
    findap-nemo slurm status runs/findap-llama3-8b

Scripts run one task per GPU through srun (no torchrun, no MPI needed), with or without a pyxis/enroot container.
Each job asks for a signal before its time limit (`--signal=B:USR1@N`); the batch shell passes it to the ranks,
training checkpoints and exits 75, and the job requeues itself and resumes from the latest checkpoint (a resubmitted
job resumes too). Failures are retried `resume.max_retries` times. Requests that do not fit the declared partitions
or the live cluster (sinfo) are rejected before anything is submitted.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="slurm_command", metavar="<command>", required=True)
    for name, help_text in (("submit", "one job (a job array when the config has a sweep)"),
                            ("pipeline", "the config's stages as jobs chained with --dependency=afterok")):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("--config", required=True, help="SLURM YAML (see configs/slurm/)")
        s.add_argument("overrides", nargs="*",
                       help="dotted overrides of the SLURM config, e.g. resources.nodes=4; for submit, `-- <stage> "
                            "--config <stage yaml> [args] [overrides]` after them sets the job's command")
        s.add_argument("--dry-run", action="store_true", help="print the scripts and sbatch commands; submit nothing")
        s.add_argument("--allow-duplicate", action="store_true",
                       help="submit even if a job of the same name from this run_dir is still queued or running")
        s.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                       help="extra sbatch command-line option for every job (repeatable), e.g. --sbatch-arg=--hold")
    st = sub.add_parser("status", help="summarise the jobs of a run", description="summarise the jobs of a run")
    st.add_argument("run_dir", nargs="?", help="the run_dir of the submission (or give --config)")
    st.add_argument("--config", help="SLURM YAML whose run_dir to report on")
    st.add_argument("overrides", nargs="*", help="dotted overrides of that config (e.g. run_dir=...)")
    st.add_argument("--all", action="store_true", help="every submission to this run_dir, not only the latest")
    st.add_argument("--json", action="store_true", help="machine-readable output")


def split_stage_command(argv: list[str]) -> tuple[list[str], dict | None]:
    """``... -- train --config x.yaml a=1 --flag`` -> (argv before ``--``, job fields for the stage command)."""
    if "--" not in argv:
        return argv, None
    i = argv.index("--")
    head, tail = argv[:i], argv[i + 1:]
    if not tail:
        return head, None
    job: dict = {"name": tail[0], "stage": tail[0], "config": None, "args": [], "overrides": []}
    it = iter(tail[1:])
    for tok in it:
        if tok == "--config":
            job["config"] = next(it, None)
        elif tok.startswith("--config="):
            job["config"] = tok.split("=", 1)[1]
        elif "=" in tok and not tok.startswith("-"):
            job["overrides"].append(tok)
        else:
            job["args"].append(tok)
    return head, job


def _load(args, stage_job: dict | None):
    """The SLURM config; a stage command given after ``--`` replaces the file's job command (not its resources)."""
    from findap_nemo.config import load_config
    from findap_nemo.config.loader import read_yaml
    from findap_nemo.slurm.config import SlurmConfig

    if stage_job is None:
        return load_config(SlurmConfig, args.config, args.overrides)
    data = read_yaml(args.config)
    file_job = dict(data.get("job") or {})
    for key in ("stage", "config", "args", "overrides", "command", "sweep"):
        file_job.pop(key, None)
    data["job"] = {**stage_job, **file_job}
    return load_config(SlurmConfig, None, args.overrides, base=data)


def run(args) -> int:
    from findap_nemo.config import ConfigError

    if args.slurm_command == "status":
        return _status(args)
    from findap_nemo.slurm.render import print_dry_run, render_job, render_pipeline
    from findap_nemo.slurm.submit import SubmitError, submit

    argv = list(getattr(args, "argv", []) or [])
    stage_job = None
    if args.slurm_command == "submit":
        head, stage_job = split_stage_command(argv)
        if stage_job is not None:
            args.overrides = [t for t in head if "=" in t and not t.startswith("-")]
    cfg = _load(args, stage_job)
    source = args.config
    if args.slurm_command == "submit":
        if cfg.job is None:
            raise ConfigError("job: the config has no `job:` section; add one or give the stage after `--`, e.g. "
                              "`findap-nemo slurm submit --config configs/slurm/x.yaml -- train --config "
                              "configs/train/x.yaml`")
        jobs = [render_job(cfg, cfg.job, source=source)]
    else:
        if not cfg.stages:
            raise ConfigError(f"stages: {args.config} lists no stages; a pipeline needs `stages:` (see "
                              f"configs/slurm/findap_llama3_8b_h100.yaml)")
        jobs = render_pipeline(cfg, source=source)
    if args.dry_run:
        print_dry_run(jobs, args.sbatch_arg)
        return 0
    try:
        submit(cfg, jobs, source=source, extra_args=tuple(args.sbatch_arg), allow_duplicate=args.allow_duplicate)
    except SubmitError as err:
        print(f"findap-nemo slurm: {err}", file=sys.stderr)
        return 1
    from findap_nemo.slurm.render import paths

    print(f"status: findap-nemo slurm status {paths(cfg)['run']}")
    return 0


def _status(args) -> int:
    from findap_nemo.config import ConfigError
    from findap_nemo.slurm.status import format_table, status

    run_dir = args.run_dir
    if args.config:
        from findap_nemo.config import load_config
        from findap_nemo.slurm.config import SlurmConfig
        from findap_nemo.slurm.render import paths

        run_dir = str(paths(load_config(SlurmConfig, args.config, args.overrides))["run"])
    if not run_dir:
        raise ConfigError("status: give the run directory (or --config of the submission)")
    rows = status(run_dir, all_submissions=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
