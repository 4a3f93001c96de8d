"""The main job end to end on CPU: every stage's outputs exist and are valid; a rerun reuses finished stages."""

from __future__ import annotations

import json

import pytest

from helpers import cli

FAST = [
    "train.overrides=[parallel.tensor_model_parallel_size=2,schedule.train_iters=12,schedule.seq_length=256,"
    "schedule.eval_interval=6,checkpoint.save_interval=null]",
    "dpo.overrides=[parallel.tensor_model_parallel_size=2,schedule.train_iters=6,schedule.seq_length=512,"
    "schedule.eval_interval=3]",
]


@pytest.mark.slow
def test_demo_pipeline_end_to_end_and_rerun(tmp_path):
    run = tmp_path / "demo"
    first = cli("run", "configs/demo_tiny.yaml", f"run_dir={run}", *FAST, timeout=1500)
    assert "[9/9]" in first.stdout and "report:" in first.stdout

    # data: the manifest and every component's indexed datasets load
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert set(manifest["blend"]["train"]["prefixes"]) == {"finance_train", "general_train"}
    for comp in manifest["components"]:
        ds = IndexedDataset(str(run / "data" / comp["prefix"]))
        assert len(ds.document_indices) - 1 == comp["packs"] > 0

    # training: a complete megatron checkpoint at the last iteration, and a falling loss
    from megatron.core import dist_checkpointing

    from findap_nemo.train.checkpointing import latest_checkpoint

    ckpt = latest_checkpoint(run / "train")
    assert ckpt is not None and ckpt.name == "iter_0000012"
    assert dist_checkpointing.load_common_state_dict(str(ckpt))["iteration"] == 12
    losses = [json.loads(x)["lm_loss"] for x in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and losses[-1] < losses[0]

    # HF exports load in transformers and generate, stopping at the chat stop token
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("cptit_hf", "dpo_hf"):
        model = AutoModelForCausalLM.from_pretrained(run / name)
        tok = AutoTokenizer.from_pretrained(run / name)
        assert model.generation_config.eos_token_id, name
        ids = tok.apply_chat_template([{"role": "user", "content": "EBITDA?"}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > ids.shape[1]

    # GenRM pairs parse in the DPO format
    pairs = [json.loads(x) for x in (run / "genrm" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all({"prompt", "chosen_response", "rejected_response"} <= set(p) for p in pairs)
    assert json.loads((run / "genrm" / "summary.json").read_text())["pairs"] == len(pairs)

    # DPO trained from the CPT+IT checkpoint; eval compared the three models
    assert latest_checkpoint(run / "dpo").name == "iter_0000006"
    results = json.loads((run / "eval" / "comparison.json").read_text())
    assert {"base", "cpt_it", "dpo"} <= set(json.dumps(results).replace('"', " ").split())

    # the report: tables and images, the HTML self-contained
    md = (run / "report" / "report.md").read_text()
    for needle in ("## Data mix", "| finance_cpt |", "train_loss.png", "dpo_loss.png", "## FinEval",
                   "comparison.png", "## GenRM preference pairs", "## Stages: timings"):
        assert needle in md, needle
    html = (run / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "<table>" in html

    # a second run reuses every finished stage
    second = cli("run", "configs/demo_tiny.yaml", f"run_dir={run}", *FAST, timeout=600)
    assert second.stdout.count("done earlier") == 9, second.stdout
    assert "running" not in second.stdout


def test_failed_stage_names_itself_and_how_to_resume(tmp_path):
    proc = cli("run", "configs/demo_tiny.yaml", f"run_dir={tmp_path / 'bad'}", "data.overrides=[seq_length=2]",
               "genrm.enabled=false", "dpo.enabled=false", "eval.enabled=false", check=False, timeout=600)
    assert proc.returncode == 1
    assert "stage 'data'" in proc.stderr and "seq_length=2: must be >= 8" in proc.stderr
    assert "resumes at 'data'" in proc.stderr


def test_pipeline_config_errors(tmp_path):
    proc = cli("run", "configs/demo_tiny.yaml", "base_model.tokenizer=/nope", "train.config=/nope.yaml", check=False)
    assert proc.returncode == 2
    assert "base_model.tokenizer='/nope'" in proc.stderr and "train.config='/nope.yaml'" in proc.stderr
    proc = cli("run", "configs/demo_tiny.yaml", "convert.config=configs/x.yaml", "recipe=sequentially",
               "convert.overrides=[--dtype,bf16]", check=False)
    assert proc.returncode == 2
    assert "convert.config='configs/x.yaml': file not found" in proc.stderr
    assert "convert.overrides=['--dtype', 'bf16']: dotted convert options such as mcore_to_hf.dtype=bf16" in proc.stderr
    assert "recipe='sequentially': use one of: joint" in proc.stderr
