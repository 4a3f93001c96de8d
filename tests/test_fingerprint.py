"""Cache keys cover what they cache: editing the chat template or replacing weights under the same path changes
the key of every cached output (reference log-probs, GenRM progress, eval predictions, tokenized data sources)."""

from __future__ import annotations

import json
import os
from pathlib import Path


from findap_nemo.fingerprint import digest, file_states, tokenizer_identity, weights_identity


def _model_dir(root: Path) -> Path:
    """A folder shaped like an HF export: config, tokenizer files with a template, one weights file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 300}))
    (root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (root / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    (root / "model.safetensors").write_bytes(b"\0" * 4096)
    return root


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_tokenizer_identity_sees_every_template_source(tmp_path):
    d = _model_dir(tmp_path / "m")
    base = tokenizer_identity(d)
    (d / "chat_template.jinja").write_text("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")
    t1 = tokenizer_identity(d)
    assert t1 != base  # the .jinja template (the old *.json-only key missed this)
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0] }}"}))
    t2 = tokenizer_identity(d)
    assert t2 != t1
    (d / "special_tokens_map.json").write_text("{}")
    assert tokenizer_identity(d) != t2
    big = tokenizer_identity(d)  # a tokenizer.json larger than the small-file limit is still read
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(700_000)}}}))
    assert (d / "tokenizer.json").stat().st_size > 8 << 20
    t_big = tokenizer_identity(d)
    assert t_big != big
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"u{i}": i for i in range(700_000)}}}))
    assert tokenizer_identity(d) != t_big
    # weights are not tokenizer files: touching them leaves the tokenizer key alone
    t3 = tokenizer_identity(d)
    (d / "model.safetensors").write_bytes(b"\1" * 4096)
    assert tokenizer_identity(d) == t3
    assert tokenizer_identity(tmp_path / "absent") is None


def test_weights_identity_sees_rewritten_and_resized_weights(tmp_path):
    d = _model_dir(tmp_path / "m")
    base = weights_identity(d)
    _bump_mtime(d / "model.safetensors")  # re-exported under the same name and size
    w1 = weights_identity(d)
    assert w1 != base
    with open(d / "model.safetensors", "ab") as f:
        f.write(b"\0")
    assert weights_identity(d) != w1
    # megatron checkpoint: .distcp shards by size/mtime, the small metadata by content
    it = tmp_path / "ckpt" / "iter_0000001"
    it.mkdir(parents=True)
    (it / "__0_0.distcp").write_bytes(b"\0" * 100)
    (it / ".metadata").write_bytes(b"meta-v1")
    (it / "metadata.json").write_text("{}")
    m0 = weights_identity(it)
    (it / ".metadata").write_bytes(b"meta-v2")  # same size, new content: torch-dist's shard index
    m1 = weights_identity(it)
    assert m1 != m0
    (it / "common.pt").write_bytes(b"x")
    assert weights_identity(it) != m1
    assert [f[0] for f in file_states(it)] == [".metadata", "__0_0.distcp", "common.pt", "metadata.json"]


def test_digest_is_stable_and_order_free():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest("x", 16)) == 16


def test_reference_logps_key_changes_with_template_and_weights(tmp_path):
    from findap_nemo.dpo.config import DPOJobConfig
    from findap_nemo.dpo.reference import fingerprint

    tok = _model_dir(tmp_path / "tok")
    it = tmp_path / "ckpt" / "iter_0000002"
    it.mkdir(parents=True)
    (it / "metadata.json").write_text("{}")
    (it / "__0_0.distcp").write_bytes(b"\0" * 100)
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("2")
    cfg = DPOJobConfig()
    cfg.model.tokenizer, cfg.checkpoint.pretrained = str(tok), str(tmp_path / "ckpt")
    data = tmp_path / "pairs.jsonl"
    data.write_text("{}\n")
    base = fingerprint(cfg, str(data), "sha")
    assert fingerprint(cfg, str(data), "sha") == base
    (tok / "chat_template.jinja").write_text("changed")
    t = fingerprint(cfg, str(data), "sha")
    assert t != base and t["tokenizer_sha256"] != base["tokenizer_sha256"]
    with open(it / "__0_0.distcp", "ab") as f:
        f.write(b"\0")
    w = fingerprint(cfg, str(data), "sha")
    assert w["weights"] != t["weights"]


def test_genrm_progress_key_changes_with_model_files(tmp_path):
    from findap_nemo.genrm.config import GenRMConfig
    from findap_nemo.genrm.prompts import Templates
    from findap_nemo.genrm.run import fingerprint

    pol, judge = _model_dir(tmp_path / "pol"), _model_dir(tmp_path / "judge")
    cfg = GenRMConfig()
    cfg.policy.model, cfg.genrm.model = str(pol), str(judge)
    prompts = Path(__file__).resolve().parents[1] / "configs" / "genrm" / "prompts"
    templates = Templates(prompts / "solve.txt", prompts / "fap.txt", prompts / "scp.txt")
    base = fingerprint(cfg, templates)
    (judge / "chat_template.jinja").write_text("another template")
    fp1 = fingerprint(cfg, templates)
    assert fp1["model_files"]["genrm"] != base["model_files"]["genrm"]
    assert fp1["model_files"]["policy"] == base["model_files"]["policy"]
    _bump_mtime(pol / "model.safetensors")
    assert fingerprint(cfg, templates)["model_files"]["policy"] != fp1["model_files"]["policy"]


def test_eval_predictions_key_changes_with_model_files_and_examples(tmp_path):
    from findap_nemo.eval.config import EvalConfig
    from findap_nemo.eval.registry import load_registry
    from findap_nemo.eval.run import _fingerprint

    m = _model_dir(tmp_path / "m")
    task = load_registry()["fomc"]
    cfg = EvalConfig(models={"x": str(m)})
    rows = [{"text": "a", "answer": "hawkish"}]
    base = _fingerprint(task, cfg, str(m), rows, [])
    assert _fingerprint(task, cfg, str(m), rows, []) == base
    assert _fingerprint(task, cfg, str(m), [{"text": "b", "answer": "hawkish"}], []) != base  # edited example
    (m / "tokenizer_config.json").write_text(json.dumps({"chat_template": "new"}))
    fp1 = _fingerprint(task, cfg, str(m), rows, [])
    assert fp1 != base
    _bump_mtime(m / "model.safetensors")
    assert _fingerprint(task, cfg, str(m), rows, []) != fp1


def test_data_build_source_key_changes_with_template(tmp_path):
    from findap_nemo.data.run import _fingerprint
    from findap_nemo.data.config import DataRecipe, SourceConfig

    tok = _model_dir(tmp_path / "tok")
    src_file = tmp_path / "it.jsonl"
    src_file.write_text('{"messages": []}\n')
    src = SourceConfig(name="it", kind="it", path=str(src_file))
    recipe = DataRecipe(tokenizer=str(tok), sources=[src])
    base = _fingerprint(src, recipe, None)
    (tok / "chat_template.jinja").write_text("{{ 'changed' }}")
    fp1 = _fingerprint(src, recipe, None)
    assert fp1 != base
    _bump_mtime(src_file)
    assert _fingerprint(src, recipe, None) != fp1
