"""The model's own config, chat template and stop tokens travel with the weights through every stage.

ChatML (SmolLM2-style: no BOS, ``<|im_end|>`` ends turns, ``<|endoftext|>`` ends documents, no pad token) and
Llama 3 (``<|begin_of_text|>``, ``<|eot_id|>``, ``<|end_of_text|>``) tokenizers trained locally; tiny random models.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from findap_nemo.config import ConfigError, load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.convert.hf_to_mcore import convert_hf_to_mcore
from findap_nemo.convert.mcore_to_hf import convert_mcore_to_hf
from findap_nemo.tokenizer import (TOKENIZER_FILES, document_bos_id, end_of_text_id, end_of_turn_token, load_tokenizer,
                                   pad_token_id, stop_token_ids, train_tokenizer)

from tests.conftest import _CORPUS


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chatml_tok")
    train_tokenizer(_CORPUS * 20, out, vocab_size=400, chat_format="chatml")
    return out


@pytest.fixture(scope="module")
def chatml_model(tmp_path_factory, chatml_dir) -> Path:
    from findap_nemo.model.hf_tiny import save_random_model

    return save_random_model(tmp_path_factory.mktemp("chatml_model"), chatml_dir, num_attention_heads=6,
                             num_key_value_heads=3, hidden_size=48, intermediate_size=96, num_layers=2,
                             tie_word_embeddings=True, rope_theta=100000.0)


def _ids(tok, *tokens):
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def test_special_tokens_chatml(chatml_dir):
    tok = load_tokenizer(chatml_dir)
    assert tok.pad_token is None and tok.chat_template  # loaded as shipped: no pad token invented
    assert end_of_turn_token(tok) == "<|im_end|>"
    assert end_of_text_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>")  # not the turn marker
    assert document_bos_id(tok) is None  # its bos_token <|im_start|> is a chat marker, not a document start
    assert stop_token_ids(tok) == _ids(tok, "<|im_end|>")
    assert pad_token_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")


def test_special_tokens_llama3(tiny_tokenizer_dir):
    tok = load_tokenizer(tiny_tokenizer_dir)
    assert end_of_turn_token(tok) == "<|eot_id|>"
    assert end_of_text_id(tok) == tok.convert_tokens_to_ids("<|end_of_text|>")
    assert document_bos_id(tok) == tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert stop_token_ids(tok) == sorted(_ids(tok, "<|end_of_text|>", "<|eot_id|>"))


@pytest.mark.parametrize("fmt", ["chatml", "llama3"])
def test_cpt_and_chat_encoding_use_the_models_own_tokens(fmt, chatml_dir, tiny_tokenizer_dir):
    from findap_nemo.data import render

    tok = load_tokenizer(chatml_dir if fmt == "chatml" else tiny_tokenizer_dir)
    render._TOK = tok
    (cpt_ids, cpt_mask), (it_ids, it_mask) = render.encode_batch([
        ("cpt", "The company reported revenue."),
        ("it", [{"role": "user", "content": "Sentiment?"}, {"role": "assistant", "content": "positive"}])])
    cpt = tok.convert_ids_to_tokens(cpt_ids.tolist())
    if fmt == "chatml":
        assert cpt[-1] == "<|endoftext|>" and "<|im_start|>" not in cpt and "<|im_end|>" not in cpt
    else:
        assert cpt[0] == "<|begin_of_text|>" and cpt[-1] == "<|end_of_text|>"
    assert cpt_mask.all()
    target = tok.decode(it_ids[it_mask.astype(bool)].tolist())
    assert target == "positive" + end_of_turn_token(tok)  # exactly the assistant turn and its end-of-turn token


def test_data_build_refuses_a_tokenizer_without_chat_template(tmp_path, tiny_tokenizer_dir):
    import shutil

    from findap_nemo.data.run import build
    from findap_nemo.data.config import DataRecipe

    bare = tmp_path / "bare_tok"
    shutil.copytree(tiny_tokenizer_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert not load_tokenizer(bare).chat_template
    src = tmp_path / "it.jsonl"
    src.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    recipe = load_config(DataRecipe, None, [f"tokenizer={bare}", f"output_dir={tmp_path / 'out'}",
                                            f"sources=[{{name: it, kind: it, domain: finance, path: {src}, "
                                            f"messages_field: null, prompt_field: prompt, response_field: response}}]"])
    with pytest.raises(ConfigError, match=r"bare_tok has no chat template"):
        build(recipe, log=lambda *_: None)


def test_model_config_travels_with_the_weights(tmp_path, chatml_model):
    mcore = tmp_path / "mcore"
    convert_hf_to_mcore(chatml_model, mcore, progress=False)
    cfg = load_config(TrainJobConfig, None, [f"checkpoint.pretrained={mcore}", "data.mock=true", "schedule.seq_length=64"])
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.ffn_hidden_size) == (2, 48, 6, 3, 96)
    assert m.rotary_base == 100000.0 and not m.untie_embeddings_and_output_weights
    assert m.vocab_size == len(load_tokenizer(chatml_model))
    assert m.tokenizer == str(mcore.absolute() / "tokenizer")
    # equal explicit values and runtime keys are fine ...
    ok = load_config(TrainJobConfig, None, [f"checkpoint.pretrained={mcore}", "data.mock=true", "schedule.seq_length=64",
                                            "model.num_layers=2", "model.transformer_impl=local"])
    assert ok.model.transformer_impl == "local"
    # ... a value that disagrees (even one that changes no tensor shape) is an error naming both and the source
    with pytest.raises(ConfigError) as err:
        load_config(TrainJobConfig, None, [f"checkpoint.pretrained={mcore}", "data.mock=true", "schedule.seq_length=64",
                                           "model.rotary_base=500000", "model.norm_epsilon=1e-6"])
    text = str(err.value)
    assert "model.rotary_base=500000 (from the command line)" in text and "rotary_base=100000.0" in text
    assert "model.norm_epsilon=1e-06" in text and "model_config.yaml" in text
    # a preset of another shape disagrees too
    with pytest.raises(ConfigError, match=r"model.num_layers=4 \(from model.preset=tiny\)"):
        load_config(TrainJobConfig, None, [f"checkpoint.pretrained={mcore}", "data.mock=true", "schedule.seq_length=64", "model.preset=tiny"])


def test_layout_validation_names_the_layouts_that_fit(tmp_path, chatml_model):
    mcore = tmp_path / "mcore"
    convert_hf_to_mcore(chatml_model, mcore, progress=False)
    with pytest.raises(ConfigError) as err:
        load_config(TrainJobConfig, None, [f"checkpoint.pretrained={mcore}", "data.mock=true", "schedule.seq_length=64",
                                           "parallel.tensor_model_parallel_size=2"], world_size=2)
    assert "these layouts fit the model: TP1 x PP1 (DP2), TP1 x PP2 (DP1)" in str(err.value)


def test_export_keeps_the_tokenizer_as_it_was(tmp_path, chatml_model):
    mcore, out = tmp_path / "mcore", tmp_path / "hf"
    convert_hf_to_mcore(chatml_model, mcore, progress=False)
    convert_mcore_to_hf(mcore, out, progress=False)
    shipped = [f for f in TOKENIZER_FILES if (chatml_model / f).is_file()]
    assert "chat_template.jinja" in shipped or "tokenizer_config.json" in shipped
    for f in shipped:
        assert filecmp.cmp(chatml_model / f, out / f, shallow=False), f"{f} changed on export"
    tok = load_tokenizer(out)
    assert tok.pad_token is None  # none invented
    assert "<|im_start|>" in tok.chat_template and "<|start_header_id|>" not in tok.chat_template
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_dpo_and_eval_prompts_use_the_chatml_template(chatml_dir):
    from collections import Counter

    from findap_nemo.dpo.data import ChatFormatter
    from findap_nemo.eval.prompts import encode_messages

    tok = load_tokenizer(chatml_dir)
    fmt = ChatFormatter(tok)
    assert fmt.eot == "<|im_end|>" and fmt.generation_header == "<|im_start|>assistant\n"
    assert fmt.response_text(" positive ", templated=True) == "positive<|im_end|>"
    prompt = fmt.prompt_text([{"role": "user", "content": "q"}], Counter())
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>system" in prompt
    ids = encode_messages(tok, [{"role": "user", "content": "q"}], chat_template=True)
    assert tok.decode(ids) == prompt
    assert np.all(np.asarray(ids) < len(tok))


def test_a_null_tokenizer_in_the_file_takes_the_checkpoints(tmp_path, chatml_model):
    from findap_nemo.dpo.config import DPOJobConfig

    mcore = tmp_path / "mcore"
    convert_hf_to_mcore(chatml_model, mcore, progress=False)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen_response": "a", "rejected_response": "b"}) + "\n")
    yml = tmp_path / "dpo.yaml"
    yml.write_text("model:\n  tokenizer: null\nschedule:\n  seq_length: 64\n")
    cfg = load_config(DPOJobConfig, yml, [f"checkpoint.pretrained={mcore}", f"data.train_file={pairs}"])
    assert cfg.model.tokenizer == str(mcore.absolute() / "tokenizer") and cfg.model.num_layers == 2
