"""Rendering sbatch scripts from a :class:`SlurmConfig` (Jinja2 template ``templates/job.sbatch.j2``).

The scripts are plain bash + srun: no pyxis needed (a container is optional), no MPI needed (each task maps
SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS to torch's RANK/LOCAL_RANK/WORLD_SIZE), and auto-resume is built in.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from findap_nemo.runtime import EXIT_REQUEUE
from findap_nemo.slurm.config import JobSpec, ResourcesConfig, SlurmConfig, job_env, resolve_resources


@dataclass
class RenderedJob:
    name: str
    script: str
    script_path: Path
    log_pattern: str  # with SLURM's %x/%j/%A/%a placeholders
    depends_on: list[str] = field(default_factory=list)
    dependency: str = "afterok"
    array_size: int | None = None
    resources: ResourcesConfig | None = None
    checkpoint_dirs: list[str] = field(default_factory=list)  # checkpoint.save of each task (status reads them)


@functools.cache
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["q"] = lambda s: shlex.quote(str(s))
    return env.get_template("job.sbatch.j2")


def paths(cfg: SlurmConfig) -> dict[str, Path]:
    """Absolute run/script/log/state folders (logs must not depend on where sbatch is called from)."""
    workdir = Path(cfg.environment.workdir or os.getcwd()).resolve()
    run = Path(cfg.run_dir)
    run = run if run.is_absolute() else workdir / run
    log = Path(cfg.log_dir) if cfg.log_dir else run / "logs"
    log = log if log.is_absolute() else workdir / log
    return {"workdir": workdir, "run": run, "scripts": run / "slurm", "logs": log, "state": run / "slurm" / "state"}


def job_python(cfg: SlurmConfig) -> str:
    """The interpreter a job runs stages with: environment.python, else `python` in a container, else this one."""
    if cfg.environment.python:
        return cfg.environment.python
    return "python" if cfg.container.image else sys.executable


def job_command(cfg: SlurmConfig, job: JobSpec, sweep_name: str | None = None,
                sweep_overrides: tuple[str, ...] = ()) -> list[str]:
    """argv of one task: ``python -m findap_nemo.cli <stage> [args] --config <yaml> <overrides>`` or ``bash -c``."""
    def sub(s: str) -> str:
        return s.replace("{sweep}", sweep_name) if sweep_name is not None else s

    if job.command is not None:  # the sweep entry's overrides become the command's "$@"
        return ["bash", "-c", sub(job.command), f"findap-{job.name}", *[sub(o) for o in sweep_overrides]]
    cmd = [job_python(cfg), "-m", "findap_nemo.cli", str(job.stage), *[sub(a) for a in job.args]]
    if job.config:
        cmd += ["--config", job.config]
    return cmd + [sub(o) for o in job.overrides] + [sub(o) for o in sweep_overrides]


def _srun_args(cfg: SlurmConfig, res: ResourcesConfig, job_name: str, workdir: Path) -> str:
    # Not --kill-on-bad-exit: ranks exiting 75 after a signal checkpoint would be killed by the first one's exit.
    # --wait ends the step that long after its first task exits (a crashed rank leaves the others hanging).
    args = [f"--wait={cfg.environment.step_exit_wait}", f"--nodes={res.nodes}",
            f"--ntasks-per-node={res.ntasks_per_node}"]
    if res.cpus_per_task:  # since SLURM 22.05 srun no longer inherits sbatch's --cpus-per-task
        args.append(f"--cpus-per-task={res.cpus_per_task}")
    if cfg.environment.mpi and cfg.environment.mpi != "auto":  # auto: chosen by the script (template)
        args.append(f"--mpi={cfg.environment.mpi}")
    if cfg.environment.label_output:
        args.append("--label")
    c = cfg.container
    if c.image:
        args.append(f"--container-image={c.image}")
        args.append(f"--container-name=findap-{job_name}")  # steps of a job reuse the imported image
        if c.mounts:
            args.append(f"--container-mounts={','.join(c.mounts)}")
        args.append(f"--container-workdir={c.workdir or workdir}")
        args.append("--container-mount-home" if c.mount_home else "--no-container-mount-home")
        if c.writable:
            args.append("--container-writable")
        args += list(c.extra_args)
    return " ".join(shlex.quote(a) for a in args)


def _env_value(v: str) -> str:
    """Inside double quotes: $VAR and ${VAR:-x} still expand; quotes, backslashes and backticks are escaped."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")


def render_job(cfg: SlurmConfig, job: JobSpec, *, source: str, default_depends: list[str] | None = None) -> RenderedJob:
    p = paths(cfg)
    res = resolve_resources(cfg, job)
    array = None
    if job.sweep:
        commands = [(e.name, job_command(cfg, job, e.name, tuple(e.overrides))) for e in job.sweep]
        array = f"0-{len(job.sweep) - 1}" + (f"%{job.max_parallel}" if job.max_parallel else "")
        log_pattern = str(p["logs"] / "%x-%A_%a.out")
    else:
        commands = [(job.name, job_command(cfg, job))]
        log_pattern = str(p["logs"] / "%x-%j.out")
    what = f"findap-nemo {job.stage}" if job.command is None else "shell command"
    if job.sweep:
        what += f", job array over {len(job.sweep)} sweep entries"
    port = str(cfg.environment.master_port) if cfg.environment.master_port else "$((20000 + SLURM_JOB_ID % 20000))"
    resume = cfg.resume.enabled and job.resume
    script = _template().render(
        job=job, job_name=job.name, description=what, source=source, res=res, array=array,
        log_pattern=log_pattern, resume=resume, rcfg=cfg.resume, workdir=p["workdir"],
        setup=cfg.environment.setup, task_setup=cfg.environment.task_setup, master_port=port,
        preset=cfg.environment.preset, env={k: _env_value(v) for k, v in job_env(cfg).items()},
        commands=[(n, " ".join(shlex.quote(a) for a in c)) for n, c in commands],
        srun_args=_srun_args(cfg, res, job.name, p["workdir"]), state_dir=p["state"], exit_requeue=EXIT_REQUEUE,
        mpi_auto=cfg.environment.mpi == "auto")
    deps = list(job.depends_on) if job.depends_on is not None else list(default_depends or [])
    ckpts = []
    for _, cmd in commands:
        saves = [a.split("=", 1)[1] for a in cmd if a.startswith("checkpoint.save=")]
        if saves:
            ckpts.append(str(Path(p["workdir"], saves[-1])))
    return RenderedJob(name=job.name, script=script, script_path=p["scripts"] / f"{job.name}.sbatch",
                       log_pattern=log_pattern, depends_on=deps, dependency=job.dependency,
                       array_size=len(job.sweep) or None, resources=res,
                       checkpoint_dirs=ckpts)


def dependency_args(job: RenderedJob, ids: dict[str, str]) -> list[str]:
    """sbatch options that hold ``job`` until the jobs it depends on (``ids``: name -> job id) have ended."""
    if not job.depends_on:
        return []
    return [f"--dependency={job.dependency}:{':'.join(ids[d] for d in job.depends_on)}", "--kill-on-invalid-dep=yes"]


def print_dry_run(jobs: list[RenderedJob], sbatch_args: list[str] = ()) -> None:
    """Each job's sbatch command line and script, as `--dry-run` shows them (job ids as <name>)."""
    for j in jobs:
        dep = "".join(f" {a}" for a in dependency_args(j, {d: f"<{d}>" for d in j.depends_on}))
        extra = "".join(f" {a}" for a in sbatch_args)
        print(f"# ===== {j.name}: sbatch --parsable{dep}{extra} {j.script_path}")
        print(j.script)
    print(f"# dry run: {len(jobs)} job(s) rendered, nothing submitted", file=sys.stderr)


def render_pipeline(cfg: SlurmConfig, *, source: str) -> list[RenderedJob]:
    """One job per stage; a stage without ``depends_on`` waits for the stage before it."""
    out: list[RenderedJob] = []
    for i, stage in enumerate(cfg.stages):
        out.append(render_job(cfg, stage, source=source, default_depends=[cfg.stages[i - 1].name] if i else []))
    return out
