"""Joint CPT+IT training on megatron-core: layouts agree with TP1, loss falls, resume is exact, checkpoints reshard."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO, cli, env, metrics, torchrun

CONFIG = ["--config", "configs/train/tiny_cpu.yaml"]
COMMON = ["logging.progress_bar=false", "schedule.eval_interval=null", "checkpoint.save_interval=null"]
ITERS = 6


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory):
    """One set of initial weights for every layout (megatron seeds PP stages differently, so layouts must share
    a checkpoint rather than a seed to be comparable)."""
    out = tmp_path_factory.mktemp("init") / "ckpt"
    subprocess.run([sys.executable, "tests/dist/init_checkpoint.py", str(out)], cwd=REPO, env=env(), check=True,
                   capture_output=True)
    return out


def _train(tmp_path, name, init, *overrides, nproc=None):
    save = tmp_path / name
    args = [*CONFIG, *COMMON, f"schedule.train_iters={ITERS}", f"checkpoint.save={save}",
            f"checkpoint.pretrained={init}", *overrides]
    if nproc:
        args = ["--nproc-per-node", str(nproc), *args]
    cli("train", *args)
    return save, [m["lm_loss"] for m in metrics(save / "metrics.jsonl")]


@pytest.fixture(scope="module")
def reference(init_ckpt, tmp_path_factory):
    return _train(tmp_path_factory.mktemp("ref"), "tp1", init_ckpt)[1]


LAYOUTS = {
    "tp2": ["parallel.tensor_model_parallel_size=2"],
    "pp2": ["parallel.pipeline_model_parallel_size=2"],
    "tp2_sp": ["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true"],
    "dp2_distopt": ["parallel.use_distributed_optimizer=true"],
    "pp2_vpp2": ["parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_matches_tp1(layout, init_ckpt, reference, tmp_path):
    _, losses = _train(tmp_path, layout, init_ckpt, *LAYOUTS[layout], nproc=2)
    assert len(losses) == ITERS
    assert losses == pytest.approx(reference, rel=2e-5, abs=2e-5), (layout, losses, reference)


# SDPA at TP2 equals SDPA at TP1 (test_layout_matches_tp1, SDPA being the default), so TP1 (causal) and TP2 with
# the packed-document mask cover the rest: heads split over ranks and the mask, against megatron's own attention
ATTENTION_CASES = {
    "tp1": ([], None),
    "tp2_documents": (["parallel.tensor_model_parallel_size=2", "data.reset_attention_mask=true"], 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_sdpa_attention_trains_like_unfused(case, init_ckpt, reference, tmp_path):
    """SDPA (the local spec's default) and megatron's unfused attention: the same losses over several steps, with
    heads split over TP and with the packed-document mask."""
    overrides, nproc = ATTENTION_CASES[case]
    sdpa = reference if case == "tp1" else _train(tmp_path, "sdpa", init_ckpt, *overrides, nproc=nproc)[1]
    _, unfused = _train(tmp_path, "unfused", init_ckpt, *overrides, "model.attention_backend=unfused", nproc=nproc)
    assert len(sdpa) == ITERS
    assert sdpa == pytest.approx(unfused, rel=2e-5, abs=2e-5), (case, sdpa, unfused)
    if "data.reset_attention_mask=true" in overrides:  # the mask is applied: documents no longer see each other
        assert sdpa != pytest.approx(reference, rel=1e-4, abs=1e-4)


@pytest.mark.slow
def test_loss_decreases(tmp_path):
    out = cli("train", *CONFIG, "logging.progress_bar=false", "schedule.train_iters=40", "schedule.eval_interval=10",
              "checkpoint.save_interval=null", f"checkpoint.save={tmp_path}")
    # one process with the tiny config's distributed optimizer: said, and how to drop it
    assert "use_distributed_optimizer=true at data-parallel size 1 shards nothing" in out.stdout, out.stdout[-2000:]
    rows = metrics(tmp_path / "metrics.jsonl")
    train = [r["lm_loss"] for r in rows]
    valid = [r["valid/lm_loss"] for r in rows if "valid/lm_loss" in r]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.3
    assert len(valid) == 4 and valid[-1] < valid[0] - 0.2
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in rows)
    assert (tmp_path / "tensorboard").is_dir() and (tmp_path / "config.yaml").is_file()


@pytest.mark.slow
def test_exit_and_resume_equals_uninterrupted(tmp_path):
    base = [*CONFIG, *COMMON, "schedule.train_iters=8"]
    cli("train", *base, f"checkpoint.save={tmp_path / 'full'}")
    cli("train", *base, "schedule.exit_interval=5", f"checkpoint.save={tmp_path / 'split'}")
    assert len(metrics(tmp_path / "split" / "metrics.jsonl")) == 5
    out = cli("train", *base, f"checkpoint.save={tmp_path / 'split'}")
    assert "resumed from" in out.stdout + out.stderr
    full = metrics(tmp_path / "full" / "metrics.jsonl")
    split = metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["iteration"] for r in split] == list(range(1, 9))
    for a, b in zip(full, split):
        assert a["lm_loss"] == b["lm_loss"] and a["grad_norm"] == b["grad_norm"] and a["lr"] == b["lr"], (a, b)


@pytest.mark.slow
def test_signal_checkpoints_and_exits_for_requeue(tmp_path):
    """SIGUSR1 (SLURM's pre-timeout signal) -> checkpoint at the step boundary, exit 75; resuming finishes the run
    with the same losses as an uninterrupted one."""
    from findap_nemo.runtime import EXIT_REQUEUE

    base = [*CONFIG, *COMMON, "schedule.train_iters=40"]
    save = tmp_path / "sig"
    proc = subprocess.Popen([sys.executable, "-m", "findap_nemo.cli", "train", *base, f"checkpoint.save={save}"],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (save / "metrics.jsonl").exists() and len(metrics(save / "metrics.jsonl")) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, out[-3000:]
    stopped = len(metrics(save / "metrics.jsonl"))
    assert 3 <= stopped < 40
    assert (save / f"iter_{stopped:07d}").is_dir()
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)
    cli("train", *base, f"checkpoint.save={save}")
    cli("train", *base, f"checkpoint.save={tmp_path / 'full'}")
    resumed = [r["lm_loss"] for r in metrics(save / "metrics.jsonl")]
    full = [r["lm_loss"] for r in metrics(tmp_path / "full" / "metrics.jsonl")]
    assert resumed == full


def test_incomplete_checkpoint_is_ignored(tmp_path):
    """A crash mid-save leaves only a ``.tmp-*`` folder: it is never taken for a checkpoint."""
    from findap_nemo.train.checkpointing import latest_checkpoint

    (tmp_path / "iter_0000004").mkdir()
    (tmp_path / "iter_0000004" / "metadata.json").write_text("{}")
    (tmp_path / "iter_0000008.tmp-123").mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("4")
    assert latest_checkpoint(tmp_path).name == "iter_0000004"
    (tmp_path / "latest_checkpointed_iteration.txt").unlink()
    assert latest_checkpoint(tmp_path).name == "iter_0000004"
    assert latest_checkpoint(tmp_path / "missing") is None


def _load_tp1(ckpt):
    """Weights of a checkpoint loaded into a single-process TP1 model, by name."""
    code = f"""
import torch, sys
from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.model.builder import build_model
from findap_nemo.parallel import init_distributed
from findap_nemo.train.checkpointing import load_checkpoint
cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml")
init_distributed(cfg.parallel, 99)
m = build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False)
load_checkpoint({str(ckpt)!r}, m)
torch.save({{k: v for k, v in m[0].state_dict().items() if torch.is_tensor(v) and '_extra_state' not in k}}, sys.argv[1])
"""
    out = ckpt.parent / (ckpt.name + ".pt")
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, env=env(), check=True, capture_output=True)
    return torch.load(out)


@pytest.mark.slow
def test_reshard_tp2_to_pp2_loads_identical_weights(tmp_path):
    tp2 = tmp_path / "tp2"
    torchrun("tests/dist/init_checkpoint.py", str(tp2), "parallel.tensor_model_parallel_size=2")
    pp2 = tmp_path / "pp2"
    torchrun("tests/dist/reshard.py", str(tp2), str(pp2), "parallel.pipeline_model_parallel_size=2")
    a, b = _load_tp1(tp2), _load_tp1(pp2)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_resume_in_another_layout(init_ckpt, reference, tmp_path):
    """Weights AND optimizer state reshard: stop a DP2 run half way, finish it as TP2; the curve stays on TP1's."""
    save = tmp_path / "run"
    base = [*CONFIG, *COMMON, f"schedule.train_iters={ITERS}", f"checkpoint.save={save}",
            f"checkpoint.pretrained={init_ckpt}"]
    cli("train", "--nproc-per-node", "2", *base, f"schedule.exit_interval={ITERS // 2}")
    cli("train", "--nproc-per-node", "2", *base, "parallel.tensor_model_parallel_size=2")
    losses = [m["lm_loss"] for m in metrics(save / "metrics.jsonl")]
    assert losses == pytest.approx(reference, rel=2e-5, abs=2e-5)


@pytest.mark.slow
def test_dp_reshardable_optimizer_resumes_at_its_layout_only(init_ckpt, reference, tmp_path):
    """The faster optimizer format (no gather on save) resumes a DP2 run on TP1's curve, and a resume at another
    TP/PP is refused up front with the ways out, not with a shape error deep in megatron."""
    save = tmp_path / "run"
    base = [*CONFIG, *COMMON, f"schedule.train_iters={ITERS}", f"checkpoint.save={save}",
            f"checkpoint.pretrained={init_ckpt}", "parallel.use_distributed_optimizer=true",
            "checkpoint.optimizer_sharding=dp_reshardable"]
    first = cli("train", "--nproc-per-node", "2", *base, f"schedule.exit_interval={ITERS // 2}")
    assert "shards nothing" not in first.stdout + first.stderr  # DP2: the distributed optimizer shards
    refused = cli("train", "--nproc-per-node", "2", *base, "parallel.tensor_model_parallel_size=2", check=False)
    assert refused.returncode != 0
    assert "saved dp_reshardable at PP1 x TP1 and resumes only at that layout" in refused.stderr, refused.stderr[-3000:]
    assert "checkpoint.optimizer_sharding=fully_reshardable" in refused.stderr
    assert "Traceback" not in refused.stderr and "invalid configuration" in refused.stderr  # one message, no trace
    cli("train", "--nproc-per-node", "2", *base)
    losses = [m["lm_loss"] for m in metrics(save / "metrics.jsonl")]
    assert losses == pytest.approx(reference, rel=2e-5, abs=2e-5)


@pytest.mark.slow
def test_weights_only_checkpoint_resumes_with_fresh_adam(tmp_path):
    """checkpoint.save_optimizer=false (Megatron-LM's --no-save-optim): a resume takes weights, iteration and
    schedule, says that Adam restarts, and finishes the run."""
    save = tmp_path / "run"
    base = [*CONFIG, *COMMON, "schedule.train_iters=4", f"checkpoint.save={save}", "checkpoint.save_optimizer=false"]
    cli("train", *base, "schedule.exit_interval=2")
    out = cli("train", *base)
    assert "resumed from" in out.stdout + out.stderr and "Adam's moments start from zero" in out.stdout + out.stderr
    rows = metrics(save / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]


def test_optimizer_sharding_is_validated():
    proc = cli("train", *CONFIG, *COMMON, "checkpoint.optimizer_sharding=dp_zero", check=False)
    assert proc.returncode != 0 and "checkpoint.optimizer_sharding" in proc.stderr
    assert "fully_reshardable" in proc.stderr and "dp_reshardable" in proc.stderr


@pytest.mark.slow
def test_tied_embeddings_across_pipeline_match_tp1(tmp_path):
    """Tied input/output embeddings with PP2: megatron keeps a copy on the last stage and syncs it and its grads."""
    tied = "model.untie_embeddings_and_output_weights=false"
    init = tmp_path / "init"
    subprocess.run([sys.executable, "tests/dist/init_checkpoint.py", str(init), tied], cwd=REPO, env=env(),
                   check=True, capture_output=True)
    _, ref = _train(tmp_path, "tp1", init, tied)
    _, pp2 = _train(tmp_path, "pp2", init, tied, "parallel.pipeline_model_parallel_size=2", nproc=2)
    assert pp2 == pytest.approx(ref, rel=2e-5, abs=2e-5)


@pytest.mark.slow
def test_sigterm_to_every_process_still_checkpoints(tmp_path):
    """Preemption (scancel, time limit) signals every process of the job, megatron's checkpoint helper processes
    included: the save after the signal must still complete."""
    import os

    from findap_nemo.runtime import EXIT_REQUEUE

    save = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "findap_nemo.cli", "train", *CONFIG, *COMMON[:2],
                             "schedule.train_iters=200", "checkpoint.save_interval=2", f"checkpoint.save={save}"],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (save / "latest_checkpointed_iteration.txt").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_REQUEUE, out[-3000:]
    last = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert last == len(metrics(save / "metrics.jsonl")) > 2, out[-2000:]
    assert (save / f"iter_{last:07d}" / "metadata.json").exists()
    assert not list(save.glob("iter_*.tmp-*"))
    kept = sorted(p.name for p in save.glob("iter_*"))  # checkpoint.keep_last: 2 in the tiny config
    assert len(kept) == 2 and kept[-1] == f"iter_{last:07d}", kept
