"""`findap-nemo slurm` against a real SLURM (Debian slurm-wlm started by the `slurm_cluster` fixture).

Training runs as 2 CPU tasks (gloo, TP=2) launched by sbatch + srun exactly as on a GPU cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, metrics
from slurm_cluster import slurm_cluster  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slurm

TRAIN_ITERS = 24


def slurm_cli(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cluster.env()
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    proc = subprocess.run([sys.executable, "-m", "findap_nemo.cli", "slurm", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"findap-nemo slurm {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_config(path: Path, run_dir: Path, **sections) -> Path:
    cfg = {"run_dir": str(run_dir), "environment": {"preset": "cpu", "step_exit_wait": 30},
           "resources": {"gpus_per_node": 0, "tasks_per_node": 1, "time": "00:30:00"},
           "resume": {"signal_seconds": 60}}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def submitted(run_dir: Path) -> dict[str, str]:
    record = json.loads((run_dir / "slurm" / "jobs.json").read_text())[-1]
    return {j["name"]: j["job_id"] for j in record["jobs"]}


def log_text(run_dir: Path, pattern: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((run_dir / "logs").glob(pattern)))


def train_job(name: str, run_dir: Path) -> dict:
    return {"name": name, "stage": "train", "config": "configs/train/tiny_cpu.yaml",
            "resources": {"tasks_per_node": 2},
            "overrides": [f"schedule.train_iters={TRAIN_ITERS}", "schedule.eval_interval=null", "checkpoint.save_interval=4",
                          f"checkpoint.save={run_dir}/ckpt", "parallel.tensor_model_parallel_size=2",
                          "logging.progress_bar=false", "logging.tensorboard_dir=null"]}


@pytest.fixture(scope="module")
def training_runs(slurm_cluster, tmp_path_factory):  # noqa: F811
    """Two identical 2-task training jobs submitted together; the second gets the pre-timeout signal mid-run."""
    root = tmp_path_factory.mktemp("slurm_train")
    runs = {}
    # Alongside: a job that gets SLURM's own pre-timeout signal (--time=1 minute, --signal=B:USR1@50).
    limit_dir = root / "timelimit"
    marker = root / "timelimit.attempts"
    command = (f"echo attempt >> {marker}; if [ \"$SLURM_RESTART_COUNT\" = 1 ]; then echo resumed; exit 0; fi; "
               "trap 'echo task got USR1; exit 75' USR1; while :; do sleep 0.2; done")
    cfg = write_config(root / "timelimit.yaml", limit_dir, job={"name": "timelimit", "command": command},
                       resources={"time": "1"}, resume={"signal_seconds": 50})
    slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
    runs["timelimit"] = (limit_dir, submitted(limit_dir)["timelimit"], marker)
    for name in ("plain", "signalled"):
        run_dir = root / name
        cfg = write_config(root / f"{name}.yaml", run_dir, job=train_job(name, run_dir))
        out = slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
        runs[name] = (run_dir, submitted(run_dir)[name], out.stdout)
    run_dir, job_id, _ = runs["signalled"]
    mfile = run_dir / "ckpt" / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline:  # signal once training is under way, as SLURM would near the time limit
        # after the first periodic save: megatron's checkpoint writer processes exist and must survive the signal
        if mfile.is_file() and len(mfile.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"training never started:\n{log_text(run_dir, '*.out')[-4000:]}")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm_cluster.env(), check=True)
    states = slurm_cluster.wait([r[1] for r in runs.values()], timeout=300)
    return runs, states


def test_two_task_training_job_completes(training_runs):
    runs, states = training_runs
    run_dir, job_id, out = runs["plain"]
    assert f"submitted plain: job {job_id}" in out
    (info,) = states[job_id]
    log = log_text(run_dir, "*.out")
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert info["Restarts"] == "0"
    assert "1 node(s) x 2 task(s)" in log and "job step exited with 0" in log
    rows = metrics(run_dir / "ckpt" / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == list(range(1, TRAIN_ITERS + 1))
    assert (run_dir / "ckpt" / f"iter_{TRAIN_ITERS:07d}").is_dir()
    # the script is kept next to the run, and status reports the job
    assert (run_dir / "slurm" / "plain.sbatch").is_file()


def test_signal_checkpoints_requeues_and_resumes_to_same_loss(training_runs, slurm_cluster):  # noqa: F811
    runs, states = training_runs
    run_dir, job_id, _ = runs["signalled"]
    (info,) = states[job_id]
    log = log_text(run_dir, "*.out")
    ctx = "\n".join(line for line in log.splitlines() if "common state dict" not in line)[-6000:]
    assert info["JobState"] == "COMPLETED", ctx
    assert info["Restarts"] == "1", ctx
    assert "batch shell got SIGUSR1" in log, ctx
    assert "job step exited with 75" in log and "requeueing job" in log, ctx
    m = re.search(r"resumed from \S+iter_(\d+) at iteration (\d+)", log)
    assert m, ctx
    resumed_at = int(m.group(2))
    assert 1 <= resumed_at < TRAIN_ITERS
    interrupted = metrics(run_dir / "ckpt" / "metrics.jsonl")
    baseline = metrics(runs["plain"][0] / "ckpt" / "metrics.jsonl")
    # every iteration ran exactly once across the two attempts, and the losses match the uninterrupted run
    assert [r["iteration"] for r in interrupted] == list(range(1, TRAIN_ITERS + 1)), ctx
    for a, b in zip(interrupted, baseline):
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], rel=1e-5, abs=1e-6), (a["iteration"], a, b, resumed_at)
    assert interrupted[-1]["lm_loss"] == pytest.approx(baseline[-1]["lm_loss"], rel=1e-6)

    status = slurm_cli(slurm_cluster, "status", str(run_dir), "--json")
    (row,) = json.loads(status.stdout)
    assert row["state"] == "COMPLETED" and row["restarts"] == "1", row
    assert row["checkpoint"] == f"iter {TRAIN_ITERS} in {run_dir}/ckpt", row
    assert f"iter {TRAIN_ITERS}/{TRAIN_ITERS}" in row["progress"] or "exited with 0" in row["progress"], row


def test_time_limit_signal_requeues_the_job(training_runs):
    """SLURM itself sends USR1 50 s before the 1-minute limit; the task exits 75, the job requeues and completes."""
    runs, states = training_runs
    run_dir, job_id, marker = runs["timelimit"]
    (info,) = states[job_id]
    log = log_text(run_dir, "*.out")
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    assert "#SBATCH --signal=B:USR1@50" in (run_dir / "slurm" / "timelimit.sbatch").read_text()
    assert "batch shell got SIGUSR1" in log and "task got USR1" in log and "job step exited with 75" in log
    assert "resumed" in log and marker.read_text().count("attempt") == 2


def test_pipeline_dependency_chain_runs_in_order(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "chain"
    trace = tmp_path / "trace.txt"
    step = "echo \"$SLURM_JOB_NAME start $(date +%s.%N)\" >> {t}; sleep 1; echo \"$SLURM_JOB_NAME end $(date +%s.%N)\" >> {t}"
    stages = [{"name": n, "command": step.format(t=trace)} for n in ("data", "train", "convert")]
    stages.append({"name": "eval", "command": step.format(t=trace), "depends_on": ["train", "convert"]})
    cfg = write_config(tmp_path / "chain.yaml", run_dir, stages=stages)
    out = slurm_cli(slurm_cluster, "pipeline", "--config", str(cfg))
    ids = submitted(run_dir)
    assert f"submitted train: job {ids['train']} after data ({ids['data']})" in out.stdout
    states = slurm_cluster.wait(list(ids.values()), timeout=120)
    assert all(rows[0]["JobState"] == "COMPLETED" for rows in states.values()), states
    events = [line.split() for line in trace.read_text().splitlines()]
    order = [name for name, kind, _ in events if kind == "start"]
    assert order == ["data", "train", "convert", "eval"]
    t = {(name, kind): float(ts) for name, kind, ts in events}
    assert t[("train", "start")] >= t[("data", "end")]
    assert t[("convert", "start")] >= t[("train", "end")]
    assert t[("eval", "start")] >= t[("convert", "end")]
    status = slurm_cli(slurm_cluster, "status", str(run_dir)).stdout
    assert status.count("COMPLETED") == 4


def test_array_sweep_runs_each_override(slurm_cluster, tmp_path):  # noqa: F811
    """A sweep over a real stage: each array task prints the config it resolved with its own override."""
    run_dir = tmp_path / "sweep"
    lrs = {"lr_small": 5.0e-4, "lr_mid": 1.0e-3, "lr_big": 2.0e-3}  # tiny_cpu.yaml: min_lr 3e-4
    job = {"name": "lr_sweep", "stage": "train", "config": "configs/train/tiny_cpu.yaml", "args": ["--print-config"],
           "overrides": ["checkpoint.save=" + str(run_dir) + "/{sweep}"], "resume": False,
           "sweep": [{"name": k, "overrides": [f"optim.lr={v}"]} for k, v in lrs.items()]}
    cfg = write_config(tmp_path / "sweep.yaml", run_dir, job=job)
    slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
    (array_id,) = submitted(run_dir).values()
    rows = slurm_cluster.wait(array_id, timeout=180)[array_id]
    assert sorted(r["ArrayTaskId"] for r in rows) == ["0", "1", "2"]
    assert all(r["JobState"] == "COMPLETED" for r in rows), rows
    for i, (name, lr) in enumerate(lrs.items()):
        text = (run_dir / "logs" / f"lr_sweep-{array_id}_{i}.out").read_text()
        assert f"sweep entry {name}" in text
        resolved = yaml.safe_load(text[text.index("model:"):text.index("[findap-slurm]", text.index("model:"))])
        assert resolved["optim"]["lr"] == pytest.approx(lr)
        assert resolved["checkpoint"]["save"] == f"{run_dir}/{name}"


def test_failing_job_stops_requeueing_and_cancels_dependents(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "flaky"
    attempts = tmp_path / "attempts.txt"
    stages = [{"name": "broken", "command": f"echo attempt >> {attempts}; exit 3"},
              {"name": "after", "command": "echo should-not-run"}]
    cfg = write_config(tmp_path / "flaky.yaml", run_dir, stages=stages, resume={"max_retries": 2})
    slurm_cli(slurm_cluster, "pipeline", "--config", str(cfg))
    ids = submitted(run_dir)
    states = slurm_cluster.wait(list(ids.values()), timeout=120)
    (broken,) = states[ids["broken"]]
    log = log_text(run_dir, "broken-*.out")
    assert broken["JobState"] == "FAILED" and broken["ExitCode"].startswith("3:"), (broken, log)
    assert broken["Restarts"] == "2", (broken, log)
    assert attempts.read_text().count("attempt") == 3  # first try + max_retries
    assert "failed 3 time(s) in a row (exit 3); resume.max_retries=2 reached, not requeueing" in log
    (after,) = states[ids["after"]]
    assert after["JobState"] == "CANCELLED"  # --kill-on-invalid-dep: never left pending forever
    assert not list((run_dir / "logs").glob("after-*.out"))


def test_invalid_requests_rejected_before_submission(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "bad"
    job = {"name": "j", "command": "true"}
    cases = {
        "resources.partition=nope": "sinfo does not list this partition; available: ['batch', 'cpu', 'debug']",
        "resources.gpus_per_node=9": "at most 8 GPU(s)",
        "resources.nodes=5": "has 4 node(s)",
    }
    cfg = write_config(tmp_path / "bad.yaml", run_dir, job=job)
    for override, message in cases.items():
        proc = slurm_cli(slurm_cluster, "submit", "--config", str(cfg), override, check=False)
        assert proc.returncode == 2, (override, proc.stdout, proc.stderr)
        assert message in proc.stderr, (override, proc.stderr)
        assert override.split("=")[0].removeprefix("resources.") in proc.stderr
    assert not (run_dir / "slurm" / "jobs.json").exists()
    out = subprocess.run(["squeue", "-h", "-n", "j"], env=slurm_cluster.env(), capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_scancel_is_not_undone_by_requeue(slurm_cluster, tmp_path):  # noqa: F811
    """SIGTERM (scancel/preemption) never makes the script requeue a job the user cancelled."""
    run_dir = tmp_path / "cancel"
    job = {"name": "sleeper", "command": "echo started; sleep 60"}
    cfg = write_config(tmp_path / "cancel.yaml", run_dir, job=job)
    slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
    (job_id,) = submitted(run_dir).values()
    deadline = time.time() + 60
    while "started" not in log_text(run_dir, "*.out") and time.time() < deadline:
        time.sleep(0.2)
    again = slurm_cli(slurm_cluster, "submit", "--config", str(cfg), check=False)
    assert again.returncode == 1 and f"sleeper (job {job_id}, RUNNING) of run {run_dir} is still queued" in again.stderr
    subprocess.run(["scancel", job_id], env=slurm_cluster.env(), check=True)
    (info,) = slurm_cluster.wait(job_id, timeout=60)[job_id]
    time.sleep(2)  # a requeue would show up as PENDING again
    (info,) = slurm_cluster.jobs(job_id)
    assert info["JobState"] == "CANCELLED" and info["Restarts"] == "0", info


def test_preempted_training_exits_75_to_the_caller_without_traceback(slurm_cluster, tmp_path):  # noqa: F811
    """With requeues used up (max_restarts=0) the batch script itself ends with the training's exit 75, after one
    clear line and no traceback, so an outer requeue wrapper can key on it."""
    run_dir = tmp_path / "preempt"
    ckpt = run_dir / "ckpt"
    command = (f"{sys.executable} -m findap_nemo.cli train --config configs/train/tiny_cpu.yaml "
               f"schedule.train_iters=2000 schedule.eval_interval=null checkpoint.save_interval=null "
               f"checkpoint.save={ckpt} logging.progress_bar=false logging.tensorboard_dir=null")
    cfg = write_config(tmp_path / "preempt.yaml", run_dir, job={"name": "preempt", "command": command},
                       resume={"max_restarts": 0})
    slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
    (job_id,) = submitted(run_dir).values()
    deadline = time.time() + 180
    while not ((ckpt / "metrics.jsonl").is_file() and len(metrics(ckpt / "metrics.jsonl")) >= 3):
        assert time.time() < deadline, log_text(run_dir, "*.out")[-4000:]
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm_cluster.env(), check=True)
    (info,) = slurm_cluster.wait(job_id, timeout=180)[job_id]
    log = log_text(run_dir, "*.out") + log_text(run_dir, "*.err")
    assert info["ExitCode"].split(":")[0] == "75" and info["Restarts"] == "0", (info, log[-4000:])
    assert "job step exited with 75" in log and "Traceback" not in log, log[-4000:]
    assert "checkpointed at iteration" in log and "exiting with 75" in log
    assert int((ckpt / "latest_checkpointed_iteration.txt").read_text()) == len(metrics(ckpt / "metrics.jsonl"))
