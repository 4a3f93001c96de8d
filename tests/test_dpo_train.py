"""`findap-nemo dpo` end to end on a tiny megatron GPT: learns a learnable preference, layouts agree with TP1,
precomputed reference log-probs equal on-the-fly ones, small files and micro-batch > 1 work, resume is exact."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from helpers import REPO, cli, env, metrics

ITERS = 8
QUESTIONS = ["Is the net income up this quarter?", "Classify the sentiment of the headline.",
             "What does the bond's duration measure?", "Compute the current ratio.", "Did the Fed cut rates?"]
REJECTED = ["Photosynthesis converts light energy.", "The company reported quarterly revenue of $4.2 billion.",
            "Step 1: Compute the ratio of current assets.", "Net income fell to $310 million."]


def write_pairs(path, n, seed=0):
    """Synthetic pairs where the chosen response is always the same short answer: learnable from the policy side."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            prompt = [{"role": "user", "content": f"{rng.choice(QUESTIONS)} Case {i}."}]
            f.write(json.dumps({"prompt": prompt, "chosen_response": "Answer: A. Yes.",
                                "rejected_response": rng.choice(REJECTED), "meta": {"id": i}}) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("dpo_inputs")
    init = root / "init"
    subprocess.run([sys.executable, "tests/dist/init_checkpoint.py", str(init)], cwd=REPO, env=env(), check=True,
                   capture_output=True)
    return {"tok": tiny_tokenizer_dir, "init": init, "pairs": write_pairs(root / "pairs.jsonl", 40)}


def _dpo(inputs, save, *overrides, nproc=None, pairs=None, check=True):
    args = ["--config", "configs/dpo/tiny_cpu.yaml", f"model.tokenizer={inputs['tok']}",
            f"checkpoint.pretrained={inputs['init']}", f"data.train_file={pairs or inputs['pairs']}",
            f"checkpoint.save={save}", "logging.progress_bar=false", f"schedule.train_iters={ITERS}",
            "schedule.eval_interval=4", "checkpoint.save_interval=null", *overrides]
    if nproc:
        args = ["--nproc-per-node", str(nproc), *args]
    proc = cli("dpo", *args, check=check)
    return proc, (metrics(save / "metrics.jsonl") if (save / "metrics.jsonl").exists() else [])


KEYS = ("loss", "rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "sft_loss")


@pytest.fixture(scope="module")
def reference_run(inputs, tmp_path_factory):
    save = tmp_path_factory.mktemp("dpo_ref") / "tp1"
    proc, rows = _dpo(inputs, save)
    return save, proc, rows


def _series(rows, key):
    return [r[key] for r in rows if key in r]


def test_learns_preference_from_reference_start(reference_run):
    save, proc, rows = reference_run
    assert len(rows) == ITERS
    first = rows[0]
    # the policy starts as the reference: log-ratios are exactly 0, the DPO loss is log 2
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-6) and first["reward_accuracy"] == 0.0
    for k in KEYS:
        assert all(math.isfinite(r[k]) for r in rows), k
    assert rows[-1]["loss"] < 0.5 * math.log(2) + 0.2
    assert sum(r["reward_accuracy"] for r in rows[-3:]) / 3 >= 0.9
    assert rows[-1]["rewards_chosen"] > 0 > rows[-1]["rewards_rejected"]
    valid = _series(rows, "valid/reward_accuracy")
    assert len(valid) == 2 and valid[-1] >= 0.75 and _series(rows, "valid/loss")[-1] < math.log(2)
    assert (save / "reference_logps" / "pairs.ref_logps.npz").is_file()
    assert all(0 < r["tokens_per_pair"] <= 2 * 128 and r["tokens_per_s"] < r["padded_tokens_per_s"] for r in rows)
    assert "36 training pairs, 4 held-out pairs" in proc.stdout
    assert "responses without <|eot_id|> (appended)" in proc.stdout


def _assert_same(rows, ref, tol=2e-5):
    assert len(rows) == len(ref)
    for key in (*KEYS, "valid/loss", "valid/reward_accuracy"):
        assert _series(rows, key) == pytest.approx(_series(ref, key), rel=tol, abs=tol), key


def test_on_the_fly_reference_equals_precomputed(inputs, reference_run, tmp_path):
    proc, rows = _dpo(inputs, tmp_path / "fly", "dpo.precompute_reference_logps=false")
    assert "computed on the fly" in proc.stdout and not (tmp_path / "fly" / "reference_logps").exists()
    _assert_same(rows, reference_run[2], tol=1e-6)


LAYOUTS = {
    "tp2_sp_on_the_fly": ["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true",
                          "dpo.precompute_reference_logps=false"],
    "pp2_on_the_fly": ["parallel.pipeline_model_parallel_size=2", "dpo.precompute_reference_logps=false"],
    "pp2_vpp2_on_the_fly": ["parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2",
                            "dpo.precompute_reference_logps=false"],
    "dp2_distopt_precomputed": ["parallel.use_distributed_optimizer=true"],
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_match_tp1(layout, inputs, reference_run, tmp_path):
    _, rows = _dpo(inputs, tmp_path / layout, *LAYOUTS[layout], nproc=2)
    # policy and reference agree at step 0 under every layout (sharded reference == sharded policy)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and rows[0]["reward_margin"] == 0.0
    _assert_same(rows, reference_run[2])


@pytest.mark.slow
def test_small_file_micro_batch_2_and_exact_resume(inputs, tmp_path):
    """3 pairs < global batch 8 with micro batch 2 (batches wrap), RPO-sq + SFT, interrupted at 2 and resumed."""
    pairs = write_pairs(tmp_path / "small.jsonl", 3, seed=1)
    common = ["schedule.micro_batch_size=2", "schedule.global_batch_size=8", "data.validation_fraction=0",
              "schedule.eval_interval=null", "dpo.preference_loss=rpo_sq", "dpo.sft_loss_weight=0.5",
              "schedule.train_iters=4"]
    _, full = _dpo(inputs, tmp_path / "full", *common, pairs=pairs)
    _, first = _dpo(inputs, tmp_path / "split", *common, "schedule.exit_interval=2", pairs=pairs)
    assert len(first) == 2
    proc, rows = _dpo(inputs, tmp_path / "split", *common, pairs=pairs)
    assert "resumed from" in proc.stdout and "reference log-probs from" in proc.stdout
    assert len(rows) == 4
    for key in KEYS:
        assert _series(rows, key) == pytest.approx(_series(full, key), rel=1e-6, abs=1e-6), key
    # rpo_sq at the start: (beta * 0 - (1 - 0))^2 = 1, plus 0.5 x the chosen NLL
    assert full[0]["preference_loss"] == pytest.approx(1.0, abs=1e-6)
    assert full[0]["loss"] == pytest.approx(1.0 + 0.5 * full[0]["sft_loss"], rel=1e-6)


def test_stale_reference_sidecar_is_not_reused(tmp_path):
    from findap_nemo.dpo.reference import read_sidecar, write_sidecar

    path = tmp_path / "x.ref_logps.npz"
    meta = {"data_sha256": "a", "checkpoint": "/ck/iter_0000000", "seq_length": 128}
    write_sidecar(path, meta, {0: (-1.0, -2.0), 5: (-3.0, -4.5)})
    assert read_sidecar(path, meta) == {0: (-1.0, -2.0), 5: (-3.0, -4.5)}
    assert read_sidecar(path, {**meta, "data_sha256": "b"}) is None
    assert not list(tmp_path.glob("*.tmp*"))


def test_cli_reports_config_problems(inputs, tmp_path):
    proc = cli("dpo", "--config", "configs/dpo/tiny_cpu.yaml", f"model.tokenizer={inputs['tok']}",
               f"data.train_file={inputs['pairs']}", "dpo.sft_loss_weight=0", "dpo.preference_loss_weight=0",
               check=False)
    assert proc.returncode == 2
    assert "checkpoint.pretrained" in proc.stderr and "nothing to train" in proc.stderr
