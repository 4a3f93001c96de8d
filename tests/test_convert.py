"""Converters, in-process: layout mapping, config mapping, safetensors streaming, HF -> mcore -> HF round trips,
validation. Logit parity against megatron models at TP/PP layouts is in test_convert_parity.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from findap_nemo.config import ConfigError
from findap_nemo.convert import layout, names
from findap_nemo.convert.hf_config import hf_to_model_config, model_config_to_hf
from findap_nemo.convert.hf_to_mcore import convert_hf_to_mcore
from findap_nemo.convert.mcore_io import DistCheckpointReader
from findap_nemo.convert.mcore_to_hf import convert_mcore_to_hf
from findap_nemo.convert.safetensors_io import INDEX_NAME, SafetensorsReader, TensorSpec, write_sharded
from tests.helpers import cli


# ----------------------------------------------------------------------------------------------- tensor layout
def test_qkv_fuse_matches_megatron_group_layout_and_round_trips():
    heads, groups, d, h = 4, 2, 3, 5
    # Row r of q belongs to head r // d; values encode (tensor, head) so the layout can be read off.
    q = torch.arange(heads * d).div(d, rounding_mode="floor").float()[:, None].expand(-1, h) + 100
    k = torch.arange(groups * d).div(d, rounding_mode="floor").float()[:, None].expand(-1, h) + 200
    v = torch.arange(groups * d).div(d, rounding_mode="floor").float()[:, None].expand(-1, h) + 300
    qkv = layout.fuse_qkv(q, k, v, heads, groups, d)
    per_row_tag = qkv[:, 0].view(-1, d)[:, 0].tolist()  # one tag per head-sized block
    # group 0: q heads 0,1 then k0, v0; group 1: q heads 2,3 then k1, v1
    assert per_row_tag == [100, 101, 200, 300, 102, 103, 201, 301]
    q2, k2, v2 = layout.split_qkv(qkv, heads, groups, d)
    assert torch.equal(q2, q) and torch.equal(k2, k) and torch.equal(v2, v)
    # biases (Qwen2) use the same interleaving on a 1-D tensor
    qb, kb, vb = q[:, 0].clone(), k[:, 0].clone(), v[:, 0].clone()
    fused_b = layout.fuse_qkv(qb, kb, vb, heads, groups, d)
    assert torch.equal(fused_b, qkv[:, 0])
    assert all(torch.equal(a, b) for a, b in zip(layout.split_qkv(fused_b, heads, groups, d), (qb, kb, vb)))


def test_qkv_shape_mismatch_names_tensor_and_shapes():
    with pytest.raises(ValueError, match=r"k_proj.*expected shape \(6, 5\), found \(3, 5\)"):
        layout.fuse_qkv(torch.zeros(12, 5), torch.zeros(3, 5), torch.zeros(6, 5), 4, 2, 3, "layer 0")


def test_gate_up_and_vocab_padding_round_trip():
    gate, up = torch.randn(7, 4), torch.randn(7, 4)
    fc1 = layout.fuse_gate_up(gate, up)
    assert torch.equal(fc1[:7], gate) and torch.equal(fc1[7:], up)
    g2, u2 = layout.split_gate_up(fc1, 7)
    assert torch.equal(g2, gate) and torch.equal(u2, up)
    emb = torch.randn(300, 4)
    padded = layout.pad_vocab(emb, 384)
    assert padded.shape == (384, 4) and torch.equal(padded[:300], emb) and not padded[300:].any()
    assert torch.equal(layout.unpad_vocab(padded, 300), emb)
    with pytest.raises(ValueError, match="exceed"):
        layout.pad_vocab(emb, 256)


# ----------------------------------------------------------------------------------------------- config mapping
LLAMA31 = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    "hidden_act": "silu", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
}


def test_llama31_config_maps_to_megatron_and_back():
    m = hf_to_model_config(LLAMA31)
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups) == \
        (32, 4096, 14336, 32, 8)
    assert m.rope_scaling and m.rope_scaling_factor == 8.0 and m.rotary_base == 500000.0
    assert m.untie_embeddings_and_output_weights and not m.add_qkv_bias and m.head_dim == 128
    back = model_config_to_hf(m, 128256, LLAMA31)
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_key_value_heads", "vocab_size",
              "rope_theta", "tie_word_embeddings", "max_position_embeddings"):
        assert back[k] == LLAMA31[k], k
    assert back["rope_scaling"] == LLAMA31["rope_scaling"]
    # transformers 5 style (rope_parameters) reads the same
    v5 = {k: v for k, v in LLAMA31.items() if k not in ("rope_scaling", "rope_theta")}
    v5["rope_parameters"] = {**LLAMA31["rope_scaling"], "rope_theta": 500000.0}
    assert hf_to_model_config(v5) == m


def test_unsupported_configs_are_refused_with_the_key():
    bad = dict(LLAMA31, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ConfigError, match="rope_scaling type 'yarn'"):
        hf_to_model_config(bad, "x/config.json")
    bad = dict(LLAMA31, rope_scaling=dict(LLAMA31["rope_scaling"], high_freq_factor=2.0))
    with pytest.raises(ConfigError, match="high_freq_factor=2.0"):
        hf_to_model_config(bad)
    mistral = dict(LLAMA31, model_type="mistral", rope_scaling=None, sliding_window=4096)
    with pytest.raises(ConfigError, match="sliding_window=4096"):
        hf_to_model_config(mistral)
    assert not hf_to_model_config(dict(mistral, sliding_window=None)).add_qkv_bias
    with pytest.raises(ConfigError, match="model_type='gpt2'"):
        hf_to_model_config({"model_type": "gpt2"})
    qwen = dict(LLAMA31, model_type="qwen2", rope_scaling=None, tie_word_embeddings=True, use_sliding_window=False,
                sliding_window=32768)
    q = hf_to_model_config(qwen)
    assert q.add_qkv_bias and not q.untie_embeddings_and_output_weights
    assert model_config_to_hf(q, 128256, qwen)["architectures"] == ["Qwen2ForCausalLM"]


# ----------------------------------------------------------------------------------------------- safetensors
def test_sharded_safetensors_writer_streams_and_reader_reads_index(tmp_path):
    tensors = {f"t{i}": torch.randn(16, 8 + i).to(torch.bfloat16 if i % 2 else torch.float32) for i in range(6)}
    specs = [TensorSpec(k, tuple(v.shape), v.dtype) for k, v in tensors.items()]
    produced = []

    def produce(s):
        produced.append(s.name)
        return tensors[s.name]

    files = write_sharded(tmp_path, specs, produce, max_shard_bytes=1200)
    assert len(files) > 1 and produced == list(tensors)  # in order, each produced once
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(s.nbytes for s in specs)
    loaded = {}
    for f in files:
        loaded.update(load_file(f))
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    r = SafetensorsReader(tmp_path)
    assert torch.equal(r.get("t3"), tensors["t3"]) and r.shape("t5") == (16, 13)
    (tmp_path / "bad").mkdir()
    with pytest.raises(ValueError, match=r"t0: expected \(16, 8\)"):
        write_sharded(tmp_path / "bad", specs, lambda s: torch.zeros(3))


def test_dist_checkpoint_writer_streams_and_reader_reads_layer_slices(tmp_path):
    """The writer asks for one chunk at a time (the previous one is released before the next is produced); the
    reader returns one layer of a stacked tensor, or a whole tensor, exactly."""
    import gc
    import weakref

    from findap_nemo.convert.mcore_io import ChunkedTensor, write_dist_checkpoint

    tensors = [ChunkedTensor.per_layer("decoder.layers.w", (6, 32, 16), torch.float32),
               ChunkedTensor.whole("emb", (40, 16), torch.bfloat16)]
    alive: list = []
    peak = [0]

    def produce(t, offsets):
        gc.collect()
        peak[0] = max(peak[0], sum(r() is not None for r in alive))
        x = (torch.full((1, 32, 16), float(offsets[0])) if t.key == "decoder.layers.w"
             else torch.arange(640).view(40, 16).to(torch.bfloat16))
        alive.append(weakref.ref(x))
        return x

    write_dist_checkpoint(tmp_path / "c", tensors, produce, objects={"obj/shard_0_1": [None]}, common={"a": 1})
    assert len(alive) == 7 and peak[0] <= 1
    r = DistCheckpointReader(tmp_path / "c")
    assert r.shape("decoder.layers.w") == (6, 32, 16) and r.dtype("emb") == torch.bfloat16
    for i in (0, 3, 5):
        assert torch.equal(r.read("decoder.layers.w", i), torch.full((32, 16), float(i)))
    assert torch.equal(r.read("emb"), torch.arange(640).view(40, 16).to(torch.bfloat16))
    assert r.common_state() == {"a": 1}
    with pytest.raises(KeyError, match="'nope' is not in the checkpoint"):
        r.read("nope")


# ----------------------------------------------------------------------------------------------- round trips
def _save_llama(out, tok_dir, **kw):  # any family with model_type=
    from findap_nemo.model.hf_tiny import save_random_model

    return save_random_model(out, tok_dir, **kw)


def _assert_same_weights(a_dir: Path, b_dir: Path):
    a, b = SafetensorsReader(a_dir), SafetensorsReader(b_dir)
    assert sorted(a.names()) == sorted(b.names())
    for n in a.names():
        x, y = a.get(n), b.get(n)
        assert x.dtype == y.dtype and torch.equal(x, y), n


@pytest.mark.parametrize("variant", ["untied", "tied", "gqa_kv1_bf16", "qwen2_bias_sharded", "mistral"])
def test_hf_to_mcore_to_hf_is_bit_identical(tmp_path, tiny_tokenizer_dir, tiny_hf_model_dir, variant):
    if variant == "untied":
        src = tiny_hf_model_dir
    elif variant == "tied":
        src = _save_llama(tmp_path / "src", tiny_tokenizer_dir, tie_word_embeddings=True, seed=1)
    elif variant == "gqa_kv1_bf16":
        from transformers import AutoModelForCausalLM

        src = _save_llama(tmp_path / "f32", tiny_tokenizer_dir, num_attention_heads=8, num_key_value_heads=1,
                          hidden_size=64, seed=2,
                          rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                          max_position_embeddings=16384)
        m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
        m.save_pretrained(tmp_path / "src")
        from findap_nemo.tokenizer import load_tokenizer

        load_tokenizer(src).save_pretrained(tmp_path / "src")
        src = tmp_path / "src"
    elif variant == "mistral":
        src = _save_mistral(tmp_path / "src", tiny_tokenizer_dir)
    else:
        src = _save_qwen2(tmp_path / "src", tiny_tokenizer_dir, max_shard_size="40KB")
        assert (src / INDEX_NAME).is_file()
    rec = convert_hf_to_mcore(src, tmp_path / "mc", progress=False)
    assert rec["padded_vocab_size"] % 128 == 0 and rec["padded_vocab_size"] >= rec["vocab_size"]
    reader = DistCheckpointReader(tmp_path / "mc" / "iter_0000000")
    assert (names.OUTPUT in reader.tensors) == (variant != "tied")
    convert_mcore_to_hf(tmp_path / "mc", tmp_path / "hf", progress=False,
                        max_shard_size="30KB" if variant == "qwen2_bias_sharded" else "5GB")
    _assert_same_weights(src, tmp_path / "hf")
    src_cfg = json.loads((src / "config.json").read_text())
    out_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert out_cfg["model_type"] == src_cfg["model_type"]
    assert out_cfg["tie_word_embeddings"] == src_cfg.get("tie_word_embeddings", False)
    if variant == "gqa_kv1_bf16":
        from transformers import AutoConfig

        c = AutoConfig.from_pretrained(tmp_path / "hf")
        rp = getattr(c, "rope_parameters", None) or c.rope_scaling
        assert rp["rope_type"] == "llama3" and rp["factor"] == 32.0
        assert reader.dtype(names.QKV) == torch.bfloat16


def _save_mistral(out: Path, tok_dir) -> Path:
    return _save_llama(out, tok_dir, model_type="mistral", intermediate_size=160, num_key_value_heads=1,
                       max_position_embeddings=2048, rope_theta=1000000.0, seed=4)


def _save_qwen2(out: Path, tok_dir, max_shard_size: str) -> Path:
    return _save_llama(out, tok_dir, model_type="qwen2", intermediate_size=128, max_position_embeddings=2048,
                       rope_theta=1000000.0, seed=3, max_shard_size=max_shard_size)


def test_export_ships_tokenizer_chat_template_and_stop_tokens(tmp_path, tiny_hf_model_dir):
    from transformers import AutoTokenizer, GenerationConfig

    from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

    convert_hf_to_mcore(tiny_hf_model_dir, tmp_path / "mc", progress=False)
    assert (tmp_path / "mc" / "tokenizer" / "tokenizer.json").is_file()
    convert_mcore_to_hf(tmp_path / "mc", tmp_path / "hf", progress=False)
    src_tok = load_tokenizer(tiny_hf_model_dir)
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    msgs = [{"role": "user", "content": "Net income?"}, {"role": "assistant", "content": "$310 million."}]
    assert tok.apply_chat_template(msgs, tokenize=False) == src_tok.apply_chat_template(msgs, tokenize=False)
    gen = GenerationConfig.from_pretrained(tmp_path / "hf")
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert sorted(eos) == stop_token_ids(src_tok) and len(eos) == 2  # EOS and <|eot_id|>
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == eos


# ----------------------------------------------------------------------------------------------- validation
def test_shape_mismatch_is_refused_naming_the_tensor_and_both_shapes(tmp_path, tiny_hf_model_dir):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_hf_model_dir, src)
    weights = load_file(src / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"] = torch.zeros(100, 64)
    save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.mlp\.up_proj\.weight has shape \(100, 64\), "
                                          r"the config implies \(176, 64\)"):
        convert_hf_to_mcore(src, tmp_path / "mc", progress=False)
    assert not (tmp_path / "mc").exists() and not list(tmp_path.glob(".mc.tmp-*"))
    # a checkpoint whose model config disagrees with its tensors
    convert_hf_to_mcore(tiny_hf_model_dir, tmp_path / "ok", progress=False)
    with pytest.raises(ConfigError, match=r"linear_fc1\.weight has shape \(2, 352, 64\), the model config implies "
                                          r"\(2, 400, 64\)"):
        convert_mcore_to_hf(tmp_path / "ok", tmp_path / "hf", overrides=["model.ffn_hidden_size=200"],
                            progress=False)
    assert not (tmp_path / "hf").exists()


def test_cli_refuses_to_overwrite_without_force(tmp_path, tiny_hf_model_dir):
    out = tmp_path / "mc"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    proc = cli("convert", "hf-to-mcore", "--hf", str(tiny_hf_model_dir), "--out", str(out), check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--force" in proc.stderr
    assert (out / "keep.txt").read_text() == "user data"
    proc = cli("convert", "hf-to-mcore", "--hf", str(tiny_hf_model_dir), "--out", str(out), "--force")
    assert not (out / "keep.txt").exists() and (out / "iter_0000000" / "metadata.json").is_file()
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rec["direction"] == "hf-to-mcore" and rec["bytes"] > 0
    # one iteration folder given directly (intermediate checkpoints), exported in another dtype
    proc = cli("convert", "mcore-to-hf", "--mcore", str(out / "iter_0000000"), "--out", str(tmp_path / "hf"),
               "--dtype", "bf16")
    assert SafetensorsReader(tmp_path / "hf").get(names.HF_EMBED).dtype == torch.bfloat16
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_convert_options_come_from_config_then_overrides_then_flags(tmp_path, tiny_hf_model_dir):
    """One config serves every direction; a dotted override beats the file and a flag beats both; bad values and
    model.* overrides where no model config is read are errors naming the key."""
    conf = tmp_path / "convert.yaml"
    conf.write_text("hf_to_mcore:\n  dtype: bf16\nmcore_to_hf:\n  dtype: fp16\n  max_shard_size: 100KB\n")
    base = ["convert", "hf-to-mcore", "--hf", str(tiny_hf_model_dir), "--out", str(tmp_path / "mc"),
            "--config", str(conf)]
    printed = yaml.safe_load(cli(*base, "--print-config").stdout)
    assert printed["hf_to_mcore"]["dtype"] == "bf16" and printed["mcore_to_hf"]["max_shard_size"] == "100KB"
    assert yaml.safe_load(cli(*base, "hf_to_mcore.dtype=fp32", "--print-config").stdout)["hf_to_mcore"]["dtype"] == "fp32"
    assert yaml.safe_load(cli(*base, "hf_to_mcore.dtype=fp32", "--dtype", "fp16",
                              "--print-config").stdout)["hf_to_mcore"]["dtype"] == "fp16"
    assert not (tmp_path / "mc").exists()  # --print-config converts nothing

    rec = json.loads(cli(*base).stdout.strip().splitlines()[-1])
    assert rec["dtype"] == "bfloat16"
    out = tmp_path / "hf"
    cli("convert", "mcore-to-hf", "--mcore", str(tmp_path / "mc"), "--out", str(out), "--config", str(conf))
    assert SafetensorsReader(out).get(names.HF_EMBED).dtype == torch.float16
    assert len(list(out.glob("model-*.safetensors"))) > 1  # sharded at 100 KB

    proc = cli("convert", "mcore-to-hf", "--mcore", str(tmp_path / "mc"), "--out", str(tmp_path / "x"),
               "mcore_to_hf.dtype=int8", "mcore_to_hf.max_shard_size=huge", "hf_to_mcore.pad_vocab_for_tp=0",
               "mcore_to_hf.shard=1", check=False)
    assert proc.returncode == 2
    for msg in ("mcore_to_hf.dtype='int8': one of ['auto', 'fp32', 'bf16', 'fp16']",
                "mcore_to_hf.max_shard_size='huge': a positive size", "hf_to_mcore.pad_vocab_for_tp=0: >= 1",
                "mcore_to_hf.shard"):
        assert msg in proc.stderr, proc.stderr
    proc = cli("convert", "hf-to-mcore", "--hf", str(tiny_hf_model_dir), "--out", str(tmp_path / "y"),
               "model.num_layers=3", check=False)
    assert proc.returncode == 2 and "hf-to-mcore takes no model.* overrides" in proc.stderr
    proc = cli("convert", "hf-to-mcore", "--out", str(tmp_path / "y"), check=False)
    assert proc.returncode == 2 and "--hf required" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    helptext = cli("convert", "--help-config").stdout
    assert "mcore_to_hf.max_shard_size" in helptext and "largest safetensors shard" in helptext


def test_tied_config_with_a_different_head_is_refused(tmp_path, tiny_tokenizer_dir):
    src = _save_llama(tmp_path / "src", tiny_tokenizer_dir, tie_word_embeddings=True)
    weights = load_file(src / "model.safetensors")
    weights[names.HF_LM_HEAD] = weights[names.HF_EMBED] + 1  # a separately trained head under a tied config
    save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="tie_word_embeddings=true but lm_head.weight differs"):
        convert_hf_to_mcore(src, tmp_path / "mc", progress=False)


def test_export_finds_architecture_and_tokenizer_through_the_pretrained_chain(tmp_path, tiny_hf_model_dir):
    """DPO run -> CPT+IT run -> converted base: the export of the DPO run takes hf_config.json and the tokenizer
    from the converted base it descends from."""
    import yaml

    from findap_nemo.convert.mcore_to_hf import _roots

    base = tmp_path / "base"
    convert_hf_to_mcore(tiny_hf_model_dir, base, progress=False)
    train, dpo = tmp_path / "train", tmp_path / "dpo"
    for run, parent in ((train, base), (dpo, train)):
        (run / "iter_0000002").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"checkpoint": {"pretrained": str(parent)}}))
    assert _roots(dpo / "iter_0000002") == [dpo, train, base]
    (base / "config.yaml").write_text(yaml.safe_dump({"checkpoint": {"pretrained": str(dpo)}}))  # a cycle
    assert _roots(dpo / "iter_0000002") == [dpo, train, base]


@pytest.mark.slow
def test_temp_folders_of_killed_conversions_are_removed(tmp_path, tiny_hf_model_dir):
    """kill -9 mid-conversion leaves `.<out>.tmp-<pid>-*`; the next conversion removes it (its process is dead) and
    leaves a live process's temp folder alone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import REPO, env

    out = tmp_path / "mcore"
    cmd = [sys.executable, "-m", "findap_nemo.cli", "convert", "hf-to-mcore", "--hf", str(tiny_hf_model_dir),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob(".mcore.tmp-*")):
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = list(tmp_path.glob(".mcore.tmp-*"))
    assert len(stale) == 1 and not out.exists()
    live = tmp_path / f".mcore.tmp-{os.getpid()}-1"  # this test process is alive: not touched
    live.mkdir()
    res = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "removed 1 temporary folder(s) of killed runs" in res.stdout
    assert not stale[0].exists() and live.is_dir() and out.is_dir()


def _truncate(path: Path, drop: int) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - drop)


def test_truncated_safetensors_is_named_before_any_output(tmp_path, tiny_hf_model_dir):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_hf_model_dir, src)
    _truncate(src / "model.safetensors", 1000)  # a download cut short
    with pytest.raises(ConfigError) as err:
        convert_hf_to_mcore(src, tmp_path / "mc", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and str(src / "model.safetensors") in msg and "truncated" in msg and "1000 missing" in msg
    assert not (tmp_path / "mc").exists() and not list(tmp_path.glob(".mc.tmp-*"))
    # through the CLI: one line on stderr naming the file, exit code 2, no traceback
    proc = cli("convert", "hf-to-mcore", "--hf", str(src), "--out", str(tmp_path / "mc2"), check=False)
    assert proc.returncode == 2 and "model.safetensors: truncated" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "mc2").exists()
    # cut inside the header, and a shard of a sharded checkpoint
    (src / "model.safetensors").write_bytes((tiny_hf_model_dir / "model.safetensors").read_bytes()[:20])
    with pytest.raises(ConfigError, match=r"model\.safetensors: truncated or not safetensors: the header declares"):
        convert_hf_to_mcore(src, tmp_path / "mc", progress=False)
    sharded = tmp_path / "sharded"
    _save_qwen2(sharded, tiny_hf_model_dir, max_shard_size="200KB")
    shard = sorted(sharded.glob("model-0000*-of-*.safetensors"))[-1]
    _truncate(shard, 8)
    with pytest.raises(ConfigError, match=re.escape(str(shard)) + r": truncated: .* \(.*8 missing\)"):
        convert_hf_to_mcore(sharded, tmp_path / "mc3", progress=False)
    assert not (tmp_path / "mc3").exists()


def test_truncated_distcp_shard_and_metadata_are_named_before_any_output(tmp_path, tiny_hf_model_dir):
    import shutil

    convert_hf_to_mcore(tiny_hf_model_dir, tmp_path / "mc", progress=False)
    it = tmp_path / "mc" / "iter_0000000"
    shard = sorted(it.glob("*.distcp"))[0]
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "mc", bad)
    _truncate(bad / "iter_0000000" / shard.name, 4096)
    with pytest.raises(ConfigError) as err:
        convert_mcore_to_hf(bad, tmp_path / "hf", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and str(bad / "iter_0000000" / shard.name) in msg and "truncated" in msg
    assert "4096 missing" in msg and not (tmp_path / "hf").exists()
    proc = cli("convert", "mcore-to-hf", "--mcore", str(bad), "--out", str(tmp_path / "hf2"), check=False)
    assert proc.returncode == 2 and f"{shard.name}: truncated" in proc.stderr and "Traceback" not in proc.stderr
    # a missing shard, and a truncated .metadata index
    (bad / "iter_0000000" / shard.name).unlink()
    with pytest.raises(ConfigError, match=re.escape(shard.name) + ": shard missing"):
        convert_mcore_to_hf(bad, tmp_path / "hf", progress=False)
    shutil.copy(shard, bad / "iter_0000000" / shard.name)
    _truncate(bad / "iter_0000000" / ".metadata", 50)
    with pytest.raises(ConfigError, match=r"\.metadata: unreadable torch_dist index"):
        convert_mcore_to_hf(bad, tmp_path / "hf", progress=False)
    assert not (tmp_path / "hf").exists()
