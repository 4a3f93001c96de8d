"""An ablation as SLURM jobs: one job per distinct placed stage (shared stages once), chained with afterok along
each variant, and a comparison job (``findap-nemo ablate --compare-only``) that waits with afterany for every
variant's last stage, so a failed variant does not stop the others or the comparison.

The cluster YAML is a `findap-nemo slurm` config (cluster, resources, container, environment, resume; its job and
stages are ignored). Its ``resources`` are the megatron stages' (train, train_cpt, DPO: one task per GPU, any number
of nodes, TP/PP checked against the world size); every other stage runs as one task on one node with the same GPUs
per node. ``slurm_resources`` in the ablation config overrides either per stage.
"""

from __future__ import annotations

import shlex

from findap_nemo.ablate.config import AblationConfig
from findap_nemo.ablate.run import Variant
from findap_nemo.config import load_config
from findap_nemo.config.loader import read_yaml
from findap_nemo.pipeline.runner import reads_from
from findap_nemo.slurm.cli import split_stage_command
from findap_nemo.slurm.config import SlurmConfig
from findap_nemo.slurm.render import job_python

MULTI_RANK_KINDS = {"train_cpt", "train", "dpo"}  # one rank per GPU; the others run one process per job


def _job(name: str, kind: str, cmd: list[str], python: str) -> dict:
    if cmd[1:3] == ["-m", "findap_nemo.cli"]:
        _, job = split_stage_command(["--", *cmd[3:]])
        assert job is not None
        args = list(job["args"])
        if "--nproc-per-node" in args:  # srun starts the ranks on the cluster
            i = args.index("--nproc-per-node")
            del args[i:i + 2]
        job.update(name=name, args=args)
    else:  # a module run directly (the random base model's bootstrap)
        job = {"name": name, "command": shlex.join([python, *cmd[1:]])}
    job["resume"] = kind in MULTI_RANK_KINDS  # the stages that checkpoint on the pre-timeout signal and requeue
    return job


def slurm_config(cfg: AblationConfig, vs: list[Variant], cluster_yaml: str, overrides: list[str],
                 compare_command: list[str]) -> SlurmConfig:
    data = read_yaml(cluster_yaml)
    for key in ("job", "stages"):
        data.pop(key, None)
    data["run_dir"] = cfg.run_dir
    base = load_config(SlurmConfig, None, overrides, base=data)
    python = job_python(base)
    one_task = {"nodes": 1, "tasks_per_node": 1}
    jobs: dict[str, dict] = {}
    last: list[str] = []
    for v in vs:
        for i, st in enumerate(v.stages):
            if st.name in jobs:
                continue
            kind = v.kinds[st.name]
            cmd = st.command()
            job = _job(st.name, kind, cmd, python)
            job["depends_on"] = [up.name for up in reads_from(cmd, v.stages[:i])]
            res = {} if kind in MULTI_RANK_KINDS else dict(one_task)
            res.update(cfg.slurm_resources.get(kind) or cfg.slurm_resources.get(kind.removesuffix("_cpt")) or {})
            if res:
                job["resources"] = res
            jobs[st.name] = job
        last.append(v.stages[-1].name)
    compare = {"name": "compare", "command": shlex.join([python, *compare_command[1:]]), "resume": False,
               "depends_on": list(dict.fromkeys(last)), "dependency": "afterany",
               "resources": {**one_task, **cfg.slurm_resources.get("eval", {})}}
    data["stages"] = [*jobs.values(), compare]
    return load_config(SlurmConfig, None, overrides, base=data)


def submit_variants(cfg, vs, args) -> int:
    """`--slurm`: render every variant's stages and the comparison as chained jobs; print them (--dry-run) or
    submit them."""
    import sys

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
