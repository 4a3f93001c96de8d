"""Submitting rendered jobs with sbatch (afterok chains), after checking the request against the live cluster.

Every submission is recorded in ``<run_dir>/slurm/jobs.json`` (job ids, scripts, logs) for `findap-nemo slurm status`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from findap_nemo.files import read_json, write_text_atomic
from findap_nemo.config import ConfigError, Problems
from findap_nemo.slurm.config import ResourcesConfig, SlurmConfig, parse_time
from findap_nemo.slurm.render import RenderedJob, dependency_args, paths


class SubmitError(RuntimeError):
    pass


@dataclass
class PartitionInfo:
    name: str
    default: bool
    nodes: int
    cpus: int  # per node (largest node)
    gpus: int  # per node (largest node)
    max_time_s: int | None


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def query_partitions(gres_name: str = "gpu") -> dict[str, PartitionInfo]:
    """Partitions as sinfo reports them (one row per node configuration; nodes summed, per-node maxima kept)."""
    proc = _run(["sinfo", "-h", "-a", "-o", "%P|%D|%c|%G|%l"])
    if proc.returncode != 0:
        raise SubmitError(f"sinfo failed ({proc.returncode}): {proc.stderr.strip()}")
    parts: dict[str, PartitionInfo] = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        name, nodes, cpus, gres, limit = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = 0
        for item in gres.split(","):  # gpu:h100:8(S:0-1) or gpu:8
            bits = re.sub(r"\(.*?\)", "", item).split(":")
            if bits[0] == gres_name and bits[-1].isdigit():
                gpus = max(gpus, int(bits[-1]))
        try:
            max_s = None if limit in ("infinite", "UNLIMITED", "n/a") else parse_time(limit)
        except ValueError:
            max_s = None
        cur = parts.get(name)
        if cur is None:
            parts[name] = PartitionInfo(name, default, int(nodes), int(cpus.rstrip("+") or 0), gpus, max_s)
        else:
            cur.nodes += int(nodes)
            cur.cpus = max(cur.cpus, int(cpus.rstrip("+") or 0))
            cur.gpus = max(cur.gpus, gpus)
            cur.default = cur.default or default
    return parts


def check_live(p: Problems, res: ResourcesConfig, key: str, parts: dict[str, PartitionInfo], gres_name: str) -> None:
    """Reject what SLURM would reject (or leave pending forever) before anything is submitted."""
    if res.partition is None:
        default = [x for x in parts.values() if x.default]
        if not default:
            p.add(f"{key}.partition", None, f"the cluster has no default partition; choose one of {sorted(parts)}")
            return
        part = default[0]
    else:
        part = parts.get(res.partition)
        if part is None:
            p.add(f"{key}.partition", res.partition, f"sinfo does not list this partition; available: {sorted(parts)}")
            return
    p.check(res.nodes <= part.nodes, f"{key}.nodes", res.nodes, f"partition {part.name!r} has {part.nodes} node(s)")
    p.check(res.gpus_per_node <= part.gpus, f"{key}.gpus_per_node", res.gpus_per_node,
            f"nodes of partition {part.name!r} have at most {part.gpus} GPU(s) (GRES {gres_name!r} in sinfo)")
    if part.cpus:
        need = res.ntasks_per_node * (res.cpus_per_task or 1)
        p.check(need <= part.cpus, f"{key}.cpus_per_task", res.cpus_per_task,
                f"{res.ntasks_per_node} task(s) x {res.cpus_per_task or 1} CPU(s) exceed the {part.cpus} CPUs of a "
                f"{part.name!r} node")
    if part.max_time_s is not None:
        p.check(parse_time(res.time) <= part.max_time_s, f"{key}.time", res.time,
                f"partition {part.name!r} allows at most {part.max_time_s}s")


def preflight(cfg: SlurmConfig, jobs: list[RenderedJob]) -> None:
    """Live checks against sinfo (cluster.check_live); raises ConfigError listing every problem."""
    if not cfg.cluster.check_live:
        return
    missing = [b for b in ("sbatch", "sinfo") if shutil.which(b) is None]
    if missing:
        raise SubmitError(f"{missing} not found: run on a SLURM login node, or use --dry-run to only print scripts")
    parts = query_partitions(cfg.cluster.gres_name)
    p = Problems()
    for j in jobs:
        check_live(p, j.resources, f"{j.name}.resources", parts, cfg.cluster.gres_name)
    mpi = cfg.environment.mpi
    if mpi not in (None, "auto", "none") and shutil.which("srun") is not None:
        offered = mpi_plugins()
        p.check(not offered or mpi in offered, "environment.mpi", mpi,
                f"`srun --mpi=list` offers {offered}; use one of them, auto, or null (the cluster's MpiDefault)")
    p.raise_if_any()


def mpi_plugins() -> list[str]:
    """The PMI plugins this cluster's srun lists (`srun --mpi=list`), e.g. ['pmix', 'none', 'pmi2']."""
    proc = _run(["srun", "--mpi=list"])
    out = proc.stdout + proc.stderr
    return [line.strip() for line in out.splitlines() if line[:1].isspace() and line.strip().isidentifier()]


ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                 "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


def still_active(run_dir: Path, names: list[str]) -> dict[str, tuple[str, str]]:
    """Jobs of earlier submissions to this run_dir with one of ``names`` that SLURM still runs or queues.

    A second copy of a training job would write the same checkpoint directory as the first."""
    path = run_dir / "slurm" / "jobs.json"
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    latest: dict[str, str] = {}
    for rec in records:
        for job in rec.get("jobs", []):
            if job.get("name") in names:
                latest[job["name"]] = str(job["job_id"])
    if not latest:
        return {}
    proc = _run(["squeue", "-h", "-o", "%F|%T", "-j", ",".join(latest.values())])
    states = {}
    for line in proc.stdout.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states.setdefault(jid, state)
    return {n: (j, states[j]) for n, j in latest.items() if states.get(j) in ACTIVE_STATES}


def submit(cfg: SlurmConfig, jobs: list[RenderedJob], *, source: str, extra_args: tuple[str, ...] = (),
           allow_duplicate: bool = False) -> dict:
    """Write the scripts, sbatch them in order (``--dependency=afterok``), record the ids; returns the record."""
    preflight(cfg, jobs)
    p = paths(cfg)
    if not allow_duplicate:
        active = still_active(p["run"], [j.name for j in jobs])
        if active:
            listed = ", ".join(f"{n} (job {j}, {st})" for n, (j, st) in active.items())
            ids = " ".join(j for j, _ in active.values())
            raise SubmitError(f"{listed} of run {p['run']} is still queued or running; a second copy would write the "
                              f"same outputs. Wait for it, cancel it (scancel {ids}), or pass --allow-duplicate")
    p["logs"].mkdir(parents=True, exist_ok=True)  # sbatch fails the job (JobLaunchFailure) if the log dir is missing
    p["state"].mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    record = {"submitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "source": source, "jobs": []}
    for j in jobs:
        write_text_atomic(j.script_path, j.script, mode=0o755)
        cmd = ["sbatch", "--parsable"]
        cmd += dependency_args(j, ids)
        cmd += [*extra_args, str(j.script_path)]
        proc = _run(cmd)
        if proc.returncode != 0:
            done = ", ".join(f"{k}={v}" for k, v in ids.items()) or "none"
            _save_record(p["scripts"], record)
            raise SubmitError(f"sbatch failed for job {j.name!r} ({proc.returncode}): {proc.stderr.strip()}\n"
                              f"  command: {' '.join(cmd)}\n  already submitted: {done} (cancel them with scancel "
                              f"or let them run)")
        job_id = proc.stdout.strip().split(";")[0]
        ids[j.name] = job_id
        log = j.log_pattern.replace("%x", j.name).replace("%j", job_id).replace("%A", job_id)
        record["jobs"].append({"name": j.name, "job_id": job_id, "array_size": j.array_size,
                               "depends_on": {d: ids[d] for d in j.depends_on}, "script": str(j.script_path),
                               "log": log, "checkpoints": j.checkpoint_dirs})
        dep = f" after {', '.join(f'{d} ({ids[d]})' for d in j.depends_on)}" if j.depends_on else ""
        arr = f" [array of {j.array_size}]" if j.array_size else ""
        print(f"submitted {j.name}: job {job_id}{arr}{dep}\n  script {j.script_path}\n  log    {log}", flush=True)
    _save_record(p["scripts"], record)
    return record


def _save_record(scripts_dir: Path, record: dict) -> None:
    path = scripts_dir / "jobs.json"
    history = load_records(path.parent.parent) if path.is_file() else []
    history.append(record)
    write_text_atomic(path, json.dumps(history, indent=2) + "\n")


def load_records(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / "slurm" / "jobs.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no submissions recorded for run directory {str(run_dir)!r}")
    return read_json(path)
