"""`findap-nemo slurm status`: the state of every job of a run's latest submission, from squeue/scontrol (and sacct
where accounting exists), with each job's nodes, restarts, exit code, latest complete checkpoint, and the last logged
iteration and throughput of its log."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

from findap_nemo.slurm.submit import load_records


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def _scontrol(job_id: str) -> list[dict[str, str]]:
    """One dict per job (array tasks included) while slurmctld still remembers it (MinJobAge)."""
    rows = []
    for line in _run(["scontrol", "-o", "show", "job", job_id]).splitlines():
        info: dict[str, str] = {}
        for tok in line.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                info.setdefault(k, v)
        if info:
            rows.append(info)
    return rows


def _sacct(job_id: str) -> list[dict[str, str]]:
    out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode,Elapsed,NodeList"])
    rows = []
    for line in out.splitlines():
        f = line.split("|")
        if len(f) == 5:
            rows.append({"JobId": f[0], "JobState": f[1].split()[0], "ExitCode": f[2], "RunTime": f[3],
                         "NodeList": f[4], "Restarts": "?", "Reason": ""})
    return rows


def _tres_count(tres: str, key: str) -> int:
    """``cpu=16,mem=500G,node=2,billing=16,gres/gpu=16`` -> the count of ``key`` (0 when absent)."""
    for item in tres.split(","):
        k, _, v = item.partition("=")
        if k == key and v.isdigit():
            return int(v)
    return 0


def job_usage(job_id: str) -> dict[str, float] | None:
    """What a finished job used: the run seconds (of its last attempt, when it was requeued) and the GPUs and CPUs
    allocated to it, from slurmctld while it remembers the job, else from accounting (sacct); None when neither
    knows it."""
    from findap_nemo.slurm.config import parse_time

    rows = _scontrol(job_id)
    if rows:
        info = rows[0]
        tres = info.get("AllocTRES") or info.get("TRES") or ""
        seconds = parse_time(info.get("RunTime", "0:0:0"))
    else:
        out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "ElapsedRaw,AllocTRES"]).splitlines()
        if not out or "|" not in out[0]:
            return None
        elapsed, tres = out[0].split("|", 1)
        seconds = int(elapsed) if elapsed.isdigit() else 0
    return {"seconds": float(seconds), "gpus": _tres_count(tres, "gres/gpu"), "cpus": _tres_count(tres, "cpu")}


_PROGRESS = re.compile(r"(iter \d+/\d+[^\n]{0,80}|\[findap-slurm\][^\n]{0,160})")
# A training stage's log line: "[train] iter 12/30 lm_loss=... step_time_s=0.54 tokens_per_s=939.4 ..."
_ITER = re.compile(r"\biter (\d+)/(\d+)\b[^\n]*?\btokens_per_s=([0-9.eE+]+)")


def _log_tail(log_glob: str) -> str:
    files = sorted(glob.glob(log_glob), key=lambda f: Path(f).stat().st_mtime)
    if not files:
        return ""
    try:
        return Path(files[-1]).read_text(errors="replace")[-20000:]
    except OSError:
        return ""


def last_progress(log_glob: str) -> str:
    """The last training-progress or findap-slurm line of the newest matching log."""
    hits = _PROGRESS.findall(_log_tail(log_glob))
    return hits[-1].strip() if hits else ""


def last_iteration(log_glob: str) -> dict[str, str]:
    """The last logged training iteration (``12/30``) and its throughput (``939 tokens/s``), or empty strings."""
    hits = _ITER.findall(_log_tail(log_glob))
    if not hits:
        return {"iteration": "", "throughput": ""}
    it, total, tps = hits[-1]
    try:
        rate = f"{float(tps):,.0f} tokens/s"
    except ValueError:
        rate = ""
    return {"iteration": f"{it}/{total}", "throughput": rate}


def latest_checkpoint(ckpt_dir: str) -> str:
    """The checkpoint a requeued or resubmitted job resumes from (the trainer's own rule), as "iter N in DIR"."""
    from findap_nemo.checkpoint_layout import iteration_of, latest_checkpoint as latest

    ckpt = latest(ckpt_dir)
    return f"iter {iteration_of(ckpt)} in {ckpt_dir}" if ckpt is not None else ""


def job_rows(record: dict) -> list[dict[str, str]]:
    rows = []
    for job in record["jobs"]:
        infos = _scontrol(job["job_id"]) or _sacct(job["job_id"])
        log_glob = re.sub(r"_%a|%a", "_*", job["log"]) if job.get("array_size") else job["log"]
        if not infos:
            rows.append({"name": job["name"], "job_id": job["job_id"], "state": "UNKNOWN (no longer in slurmctld; "
                         "no accounting)", "exit": "", "restarts": "", "elapsed": "", "reason": "", "nodes": "",
                         "progress": last_progress(log_glob), "log": job["log"], **last_iteration(log_glob),
                         "checkpoint": "; ".join(filter(None, map(latest_checkpoint, job.get("checkpoints", []))))})
            continue
        ckpts = job.get("checkpoints") or []
        for n, info in enumerate(infos):
            task = info.get("ArrayTaskId")
            jid = f"{info.get('ArrayJobId', job['job_id'])}_{task}" if task and task != "N/A" else \
                info.get("JobId", job["job_id"])
            log = job["log"].replace("%a", task) if task and "%a" in job["log"] else job["log"]
            reason = info.get("Reason", "")
            nodelist = info.get("NodeList", "")
            nodes = "" if nodelist in ("", "(null)") else f"{info.get('NumNodes', '?')}: {nodelist}"
            rows.append({"name": job["name"], "job_id": jid, "state": info.get("JobState", "?"),
                         "exit": info.get("ExitCode", ""), "restarts": info.get("Restarts", ""),
                         "elapsed": info.get("RunTime", ""), "reason": "" if reason in ("None", "(null)") else reason,
                         "nodes": nodes, "progress": last_progress(log.replace("%a", "*")), "log": log,
                         **last_iteration(log.replace("%a", "*")), "checkpoint": _task_checkpoint(ckpts, task, n)})
    return rows


def _task_checkpoint(ckpts: list[str], task: str | None, n: int) -> str:
    if not ckpts:
        return ""
    if len(ckpts) == 1:
        return latest_checkpoint(ckpts[0])
    i = int(task) if task and task.isdigit() else n
    return latest_checkpoint(ckpts[i]) if i < len(ckpts) else ""


def format_table(rows: list[dict[str, str]]) -> str:
    cols = [("name", "JOB"), ("job_id", "ID"), ("state", "STATE"), ("nodes", "NODES"), ("restarts", "RESTARTS"),
            ("exit", "EXIT"), ("elapsed", "ELAPSED"), ("iteration", "ITER"), ("throughput", "THROUGHPUT"),
            ("reason", "REASON")]
    widths = {k: max(len(h), *(len(str(r[k])) for r in rows)) for k, h in cols} if rows else {}
    lines = ["  ".join(h.ljust(widths[k]) for k, h in cols)]
    for r in rows:
        lines.append("  ".join(str(r[k]).ljust(widths[k]) for k, _ in cols))
        if r["progress"]:
            lines.append(f"    last: {r['progress']}")
        if r.get("checkpoint"):
            lines.append(f"    ckpt: {r['checkpoint']}")
        lines.append(f"    log:  {r['log']}")
    return "\n".join(lines)


def status(run_dir: str, *, all_submissions: bool = False) -> list[dict[str, str]]:
    records = load_records(run_dir)
    chosen = records if all_submissions else records[-1:]
    rows = []
    for rec in chosen:
        rows += job_rows(rec)
    return rows
