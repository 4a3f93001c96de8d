"""Killed, preempted and resumed jobs: real processes, real signals, the tiny model.

No rank outlives its launcher, a preemption checkpoint ends the command with exit 75 and one line (no traceback), and
a resumed run's metrics.jsonl and TensorBoard scalars equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, cli, env, metrics

CONFIG = ["--config", "configs/train/tiny_cpu.yaml", "logging.progress_bar=false", "schedule.eval_interval=null"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "findap_nemo.cli", *args], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(metrics(path)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} early:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} rows")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (whatever session it runs in)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    live = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(p)
    return live


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and _alive(pids):
        time.sleep(0.1)
    return _alive(pids)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9 process group", "SIGKILL launcher pid"])
def test_ranks_die_with_their_launcher(tmp_path, how):
    save = tmp_path / "run"
    proc = _start("train", "--nproc-per-node", "2", *CONFIG, "schedule.train_iters=2000", f"checkpoint.save={save}",
                  "checkpoint.save_interval=null")
    _wait_rows(save / "metrics.jsonl", 2, proc)
    ranks = descendants(proc.pid)
    assert len(ranks) >= 2, ranks
    if how.startswith("kill -9 process group"):
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not _gone_within(ranks, 5.0), f"ranks outlived the launcher: {_alive(ranks)}"
    rows = len(metrics(save / "metrics.jsonl"))
    time.sleep(1.0)
    assert len(metrics(save / "metrics.jsonl")) == rows  # nothing is still training into the directory


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_launcher_checkpoints_and_exits_75(tmp_path, sig):
    """A plain signal to the launcher's pid reaches both ranks; they checkpoint; the command exits 75 with one line
    and no traceback, and every rank is gone."""
    from findap_nemo.runtime import EXIT_REQUEUE

    save = tmp_path / "run"
    proc = _start("train", "--nproc-per-node", "2", *CONFIG, "schedule.train_iters=2000", f"checkpoint.save={save}",
                  "checkpoint.save_interval=null")
    _wait_rows(save / "metrics.jsonl", 3, proc)
    ranks = descendants(proc.pid)
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, out[-3000:]
    assert "Traceback" not in out and "SignalException" not in out, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("findap-nemo: the ranks checkpointed after a signal; exit 75")
    last = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert last == len(metrics(save / "metrics.jsonl")) >= 3
    assert not _alive(ranks)


@pytest.mark.slow
def test_signal_during_startup_still_checkpoints(tmp_path):
    """SIGTERM while the ranks are still importing megatron is remembered: checkpoint at the first step, exit 75."""
    from findap_nemo.runtime import EXIT_REQUEUE

    save = tmp_path / "run"
    proc = _start("train", "--nproc-per-node", "2", *CONFIG, "schedule.train_iters=2000", f"checkpoint.save={save}")
    deadline = time.time() + 60
    while len(descendants(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # the ranks are past interpreter start, still importing torch/megatron
    assert not (save / "metrics.jsonl").exists()
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == EXIT_REQUEUE, out[-3000:]
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == "1"


@pytest.mark.slow
def test_failed_rank_stops_the_others_with_one_line(tmp_path):
    """One rank killed by the OOM killer (SIGKILL): the launcher stops the other rank and says which one died."""
    save = tmp_path / "run"
    proc = _start("train", "--nproc-per-node", "2", *CONFIG, "schedule.train_iters=2000", f"checkpoint.save={save}",
                  "checkpoint.save_interval=null")
    _wait_rows(save / "metrics.jsonl", 2, proc)
    ranks = sorted(descendants(proc.pid))
    victim = next(p for p in ranks if b"\0RANK=1\0" in b"\0" + Path(f"/proc/{p}/environ").read_bytes())
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, out[-3000:]
    assert out.strip().splitlines()[-1] == "findap-nemo: rank 1 was killed by SIGKILL; the other ranks were stopped"
    assert not _alive(set(ranks))


@pytest.mark.slow
def test_metrics_and_tensorboard_after_kill_equal_uninterrupted(tmp_path):
    """kill -9 after rows past the last checkpoint were written; the resumed run drops them (and the TensorBoard
    events past the checkpoint), so both equal an uninterrupted run's."""
    base = [*CONFIG, "schedule.train_iters=16", "checkpoint.save_interval=4"]
    save = tmp_path / "killed"
    proc = _start("train", *base, f"checkpoint.save={save}")
    _wait_rows(save / "metrics.jsonl", 6, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [r["iteration"] for r in metrics(save / "metrics.jsonl")]
    ckpt = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert max(before) > ckpt, (before, ckpt)  # the killed run logged rows it never checkpointed
    out = cli("train", *base, f"checkpoint.save={save}")
    assert f"after iteration {ckpt}" in out.stdout
    cli("train", *base, f"checkpoint.save={tmp_path / 'full'}")
    resumed, full = metrics(save / "metrics.jsonl"), metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["iteration"] for r in resumed] == list(range(1, 17))
    keys = ("iteration", "lm_loss", "grad_norm", "lr", "consumed_samples")
    assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in full]
    assert _tb_scalars(save / "tensorboard") == _tb_scalars(tmp_path / "full" / "tensorboard")


def _tb_scalars(logdir: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, round(e.value, 6)) for e in acc.Scalars("train/lm_loss")]


def _pipeline(tmp_path: Path) -> list[str]:
    """`findap-nemo run` with only the megatron stages (base model, convert, a long 2-rank training)."""
    return ["run", "configs/demo_tiny.yaml", f"run_dir={tmp_path / 'run'}", "data.enabled=false", "genrm.enabled=false",
            "dpo.enabled=false", "eval.enabled=false",
            "train.overrides=[data.mock=true,parallel.tensor_model_parallel_size=2,schedule.train_iters=2000,"
            "schedule.eval_interval=null,checkpoint.save_interval=null,logging.progress_bar=false]"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "kill -9 process group"])
def test_pipeline_run_passes_signals_and_takes_its_stages_along(tmp_path, how):
    """Under `findap-nemo run` (run -> stage launcher -> ranks): SIGTERM to the run's pid checkpoints the training
    stage and the run exits 75 with one line; kill -9 of the run's process group leaves no process behind."""
    from findap_nemo.runtime import EXIT_REQUEUE

    proc = _start(*_pipeline(tmp_path))
    _wait_rows(tmp_path / "run" / "train" / "metrics.jsonl", 2, proc, timeout=400)
    tree = descendants(proc.pid)
    assert len(tree) >= 3, tree  # the stage's launcher and its two ranks
    if how == "SIGTERM":
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == EXIT_REQUEUE, out[-3000:]
        assert "Traceback" not in out
        assert "stage 'train' stopped after a signal (exit 75)" in out.strip().splitlines()[-1]
        train = tmp_path / "run" / "train"
        assert int((train / "latest_checkpointed_iteration.txt").read_text()) == len(metrics(train / "metrics.jsonl"))
        assert not (tmp_path / "run" / "stages" / "train.json").exists()  # not recorded as finished
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not _gone_within(tree, 5.0), f"outlived `findap-nemo run`: {_alive(tree)}"


def test_thread_counts_per_stage(monkeypatch, tmp_path):
    """Single-process stages keep every core; only multi-rank launches share the cores out per rank."""
    from findap_nemo.launch import rank_env, threads_per_rank
    from findap_nemo.pipeline.runner import Runner, Stage

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "omp.txt"
    code = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))"
    Runner(tmp_path / "run").run([Stage("s", "s", lambda: [sys.executable, "-c", code], lambda: [out])])
    assert out.read_text() == "unset"
    cores = len(os.sched_getaffinity(0))
    assert rank_env(0, 2, 1234)["OMP_NUM_THREADS"] == str(max(1, cores // 2)) == str(threads_per_rank(2))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert rank_env(1, 2, 1234)["OMP_NUM_THREADS"] == "3"  # the user's choice wins


@pytest.mark.slow
def test_full_disk_during_checkpoint_save_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """A 12 MiB tmpfs holds one tiny checkpoint (7 MiB), not two: the second save fails with one line naming the
    path and ENOSPC, the first checkpoint stays the latest and no partial folder is left."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root and a sandbox that allows it")
    try:
        save = mnt / "ckpt"
        proc = cli("train", *CONFIG, "schedule.train_iters=20", "checkpoint.save_interval=2", f"checkpoint.save={save}",
                   check=False)
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and "unexpected pos" not in proc.stderr, proc.stderr[-3000:]
        assert err[-1].startswith(f"findap-nemo train: cannot write the checkpoint to {save}"), err[-1]
        assert "no space left on the device" in err[-1] and "(ENOSPC)" in err[-1]
        assert err[-1].endswith(f"the latest checkpoint is still {save / 'iter_0000002'}"), err[-1]
        assert (save / "latest_checkpointed_iteration.txt").read_text() == "2"
        assert (save / "iter_0000002" / "metadata.json").is_file()
        assert not list(save.glob("iter_*.tmp-*")) and not list(save.glob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
