"""FinTrain data stage: rendering and masks, packing, blend proportions, decontamination, bad input, atomicity."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from findap_nemo.config import load_config
from findap_nemo.data.run import build
from findap_nemo.data.config import DataRecipe
from findap_nemo.data.sources import DataError

QUIET = dict(log=lambda *_: None)


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path):
    fin_cpt = _jsonl(tmp_path / "fin_cpt.jsonl", [{"text": f"Revenue of company {i} grew {i} percent as margins "
                                                            f"expanded and debt fell in quarter {i % 4}."}
                                                   for i in range(40)])
    gen_cpt = _jsonl(tmp_path / "gen_cpt.jsonl", [{"text": f"Rivers carry water number {i} to the sea."}
                                                   for i in range(40)])
    fin_it = _jsonl(tmp_path / "fin_it.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"Sentiment of headline {i}?"},
        {"role": "assistant", "content": "positive" if i % 2 else "negative"},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": f"Because of reason {i}."}]} for i in range(30)])
    gen_it = _jsonl(tmp_path / "gen_it.jsonl", [{"prompt": f"What is {i} plus 1?", "response": f"It is {i + 1}."}
                                                 for i in range(20)])
    return {"fin_cpt": fin_cpt, "gen_cpt": gen_cpt, "fin_it": fin_it, "gen_it": gen_it}


def recipe(tokenizer, corpus, out, **over) -> DataRecipe:
    base = {
        "tokenizer": str(tokenizer), "output_dir": str(out), "seq_length": 128, "num_workers": 1,
        "sources": [
            {"name": "fin_cpt", "kind": "cpt", "domain": "finance", "path": str(corpus["fin_cpt"])},
            {"name": "gen_cpt", "kind": "cpt", "domain": "general", "path": str(corpus["gen_cpt"])},
            {"name": "fin_it", "kind": "it", "domain": "finance", "path": str(corpus["fin_it"])},
            {"name": "gen_it", "kind": "it", "domain": "general", "path": str(corpus["gen_it"]),
             "messages_field": None},
        ],
        "blend": {"domain_weights": {"finance": 0.7, "general": 0.3}, "valid_fraction": 0.1},
    }
    for k, v in over.items():
        base[k] = v
    return load_config(DataRecipe, None, base=base)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_chat_rendering_round_trip_and_assistant_mask(tiny_tokenizer_dir):
    from findap_nemo.data.render import _init_worker, encode_batch
    from findap_nemo.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "EBITDA?"},
            {"role": "assistant", "content": "Earnings before interest."}, {"role": "user", "content": "And?"},
            {"role": "assistant", "content": "Taxes too."}]
    _init_worker(str(tiny_tokenizer_dir))
    (ids, mask), (cids, cmask) = encode_batch([("it", msgs), ("cpt", "Net income rose.")])
    assert tok.decode(ids) == tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(ids[mask == 1]) == "Earnings before interest.<|eot_id|>Taxes too.<|eot_id|>"
    # the mask is exactly the two assistant spans: two runs of ones
    runs = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])))
    assert len(runs) == 4
    assert tok.decode(cids) == "<|begin_of_text|>Net income rose.<|end_of_text|>" and cmask.all()


def test_chat_mask_without_generation_block(tiny_tokenizer_dir):
    """Templates without {% generation %} (most hub tokenizers) get the same mask by incremental rendering."""
    from findap_nemo.data.render import render_chat
    from findap_nemo.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."},
            {"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "B."}]
    ids, mask = render_chat(tok, msgs)
    tok.chat_template = tok.chat_template.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    ids2, mask2 = render_chat(tok, msgs)
    assert ids == ids2 and mask == mask2 and sum(mask) > 0


def test_build_packs_blend_and_manifest(tiny_tokenizer_dir, corpus, tmp_path):
    out = tmp_path / "ds"
    build(recipe(tiny_tokenizer_dir, corpus, out), **QUIET)
    m = _manifest(out)
    assert m["seq_length"] == 128 and m["vocab_size"] > 0
    # CPT cut to the IT size by examples (FinDAP release): 50 IT examples -> 50 CPT documents kept of 80
    assert m["downsampling"]["it_documents"] == 50 and m["downsampling"]["cpt_documents_kept"] == 50
    dropped = sum(s["dropped"].get("downsampled (CPT cut to the IT size)", 0) for s in m["sources"].values())
    assert dropped == 30
    assert m["blend"]["train"]["weights"] == pytest.approx([0.7, 0.3])
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for comp in m["components"]:
        ds = IndexedDataset(str(out / comp["prefix"]))
        mask = IndexedDataset(str(out / (comp["prefix"] + "_mask")))
        assert len(ds.document_indices) - 1 == comp["packs"]
        for d in range(comp["packs"]):  # packs never exceed seq_length + 1 and documents never cross packs
            lo, hi = ds.document_indices[d], ds.document_indices[d + 1]
            assert sum(len(ds[i]) for i in range(lo, hi)) <= 129
            assert all(len(ds[i]) == len(mask[i]) for i in range(lo, hi))


def test_blend_kinds_split_the_joint_blend_for_recipe_ablations(tiny_tokenizer_dir, corpus, tmp_path):
    """A [cpt] build holds exactly the CPT documents the joint build kept (cut to the IT size), an [it] build exactly
    its IT examples; what a build leaves out is counted, and a kind without sources is refused."""
    joint, cpt, it = (tmp_path / n for n in ("joint", "cpt", "it"))
    for out, kinds in ((joint, ["cpt", "it"]), (cpt, ["cpt"]), (it, ["it"])):
        r = recipe(tiny_tokenizer_dir, corpus, out)
        r.blend.kinds = kinds
        build(r, **QUIET)
    mj, mc, mi = _manifest(joint), _manifest(cpt), _manifest(it)

    def docs(m, kind):
        return sum(s.get("documents", 0) for s in m["sources"].values() if s["kind"] == kind)

    assert mc["downsampling"] == mj["downsampling"]  # the same 50 CPT documents, chosen against the IT set
    assert docs(mc, "cpt") == docs(mj, "cpt") == 50 and docs(mc, "it") == 0
    assert docs(mi, "it") == docs(mj, "it") == 50 and docs(mi, "cpt") == 0
    left_out = sum(s["dropped"].get("not in blend.kinds ['cpt']", 0) for s in mc["sources"].values())
    assert left_out == 50
    assert sum(c["documents"] for c in mc["components"]) == 50
    with pytest.raises(Exception, match=r"blend.kinds.*\[cpt, it\] \(joint\), \[cpt\] or \[it\]"):
        recipe(tiny_tokenizer_dir, corpus, tmp_path / "x", blend={"kinds": ["text"]})
    only_it = recipe(tiny_tokenizer_dir, corpus, tmp_path / "y").sources[2:]
    with pytest.raises(Exception, match="no source has kind cpt"):
        recipe(tiny_tokenizer_dir, corpus, tmp_path / "y", sources=[{"name": s.name, "kind": s.kind, "domain": s.domain,
                                                                    "path": s.path, "messages_field": s.messages_field}
                                                                   for s in only_it], blend={"kinds": ["cpt"]})


def test_training_items_and_blend_proportions(tiny_tokenizer_dir, corpus, tmp_path, dist1):
    from findap_nemo.data.loader import build_datasets

    out = tmp_path / "ds"
    build(recipe(tiny_tokenizer_dir, corpus, out), **QUIET)
    ds = build_datasets(str(out / "manifest.json"), seq_length=64, num_samples={"train": 4000, "valid": 16}, seed=3)
    train = ds["train"]
    assert len(train) >= 4000 and len(ds["valid"]) >= 16
    counts = Counter(int(i) for i in train.dataset_index[:4000])
    assert counts[0] / 4000 == pytest.approx(0.7, abs=0.01) and counts[1] / 4000 == pytest.approx(0.3, abs=0.01)
    item = train[0]
    assert {"tokens", "labels", "loss_mask", "position_ids", "segment_ids"} <= set(item)
    assert all(item[k].shape == (64,) for k in ("tokens", "labels", "loss_mask", "position_ids", "segment_ids"))
    assert (item["labels"][:-1] == item["tokens"][1:]).all()
    seg = item["segment_ids"]
    boundary = (seg[1:] != seg[:-1]).nonzero().flatten()
    for b in boundary.tolist():  # the label across a document boundary never trains
        assert item["loss_mask"][b] == 0
        assert item["position_ids"][b + 1] == 0 or seg[b + 1] == 0
    assert (item["loss_mask"][seg == 0] == 0).all()
    again = build_datasets(str(out / "manifest.json"), seq_length=64, num_samples={"train": 4000, "valid": 16},
                           seed=3)["train"]
    assert all((train[i]["tokens"] == again[i]["tokens"]).all() for i in range(0, 4000, 997))  # deterministic


def test_decontamination_removes_planted_overlaps(tiny_tokenizer_dir, corpus, tmp_path):
    planted = "Revenue of company 7 grew 7 percent as margins expanded and debt fell in quarter 3."
    evalset = _jsonl(tmp_path / "eval.jsonl", [{"query": f"Q: {planted.upper()}!! What happened?", "answer": "up"},
                                               {"query": "Unrelated question about bees", "answer": "dance"}])
    out = tmp_path / "ds"
    rec = recipe(tiny_tokenizer_dir, corpus, out, decontamination={"eval_sets": [str(evalset)], "ngram": 13})
    build(rec, **QUIET)
    m = _manifest(out)
    assert m["decontamination"]["removed"] == {"fin_cpt": 1, "gen_cpt": 0, "fin_it": 0, "gen_it": 0}
    assert m["sources"]["fin_cpt"]["decontaminated"] == 1 and str(evalset) in m["decontamination"]["eval_files"]


@pytest.mark.parametrize("bad_line,needle", [
    ('{"text": "ok"', "not valid JSON"),
    ('{"body": "no text field"}', "missing field 'text'"),
    ('["a list"]', "expected a JSON object"),
    ('{"text": 5}', "must be a string"),
])
def test_bad_records_name_file_and_line_or_are_counted(tiny_tokenizer_dir, corpus, tmp_path, bad_line, needle):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine document one"}\n' + bad_line + "\n" + '{"text": "  "}\n', encoding="utf-8")
    corpus = dict(corpus, fin_cpt=bad)
    with pytest.raises(DataError, match=rf"{bad}:2: .*{needle}"):
        build(recipe(tiny_tokenizer_dir, corpus, tmp_path / "x"), **QUIET)
    assert not (tmp_path / "x").exists()
    build(recipe(tiny_tokenizer_dir, corpus, tmp_path / "y", skip_bad=True), **QUIET)
    skipped = _manifest(tmp_path / "y")["sources"]["fin_cpt"]["skipped_bad"]
    assert sum(skipped.values()) == 2 and skipped["empty document"] == 1  # the bad line + the empty one


def test_non_utf8_file_and_bad_chat_records(tiny_tokenizer_dir, corpus, tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"{bad}:2: not valid UTF-8"):
        build(recipe(tiny_tokenizer_dir, dict(corpus, fin_cpt=bad), tmp_path / "x"), **QUIET)
    chat = _jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "bot", "content": "hi"}]}])
    with pytest.raises(DataError, match=r"chat.jsonl:1: messages\[0\].role='bot'"):
        build(recipe(tiny_tokenizer_dir, dict(corpus, fin_it=chat), tmp_path / "x"), **QUIET)
    noanswer = _jsonl(tmp_path / "noans.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    build(recipe(tiny_tokenizer_dir, dict(corpus, fin_it=noanswer), tmp_path / "z"), **QUIET)
    assert _manifest(tmp_path / "z")["sources"]["fin_it"]["skipped_bad"] == {"empty document": 1}


def test_parquet_and_local_hf_dataset_sources(tiny_tokenizer_dir, corpus, tmp_path, monkeypatch):
    """Parquet files and ``datasets.load_dataset`` folders feed the same pipeline as JSONL; blank lines are counted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    rows = [json.loads(line) for line in corpus["fin_cpt"].read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "fin_cpt.parquet", row_group_size=7)
    hf_dir = tmp_path / "gen_it_hf"
    hf_dir.mkdir()
    (hf_dir / "train.jsonl").write_text(corpus["gen_it"].read_text(), encoding="utf-8")
    gen_cpt = tmp_path / "gen_cpt_blank.jsonl"
    gen_cpt.write_text(corpus["gen_cpt"].read_text() + "\n\n", encoding="utf-8")
    r = recipe(tiny_tokenizer_dir, corpus, tmp_path / "pq")
    r.sources[0].path = str(tmp_path / "fin_cpt.parquet")
    r.sources[1].path = str(gen_cpt)
    r.sources[3].path, r.sources[3].hf_dataset = None, str(hf_dir)
    build(r, **QUIET)
    ref = tmp_path / "ref"
    build(recipe(tiny_tokenizer_dir, corpus, ref), **QUIET)
    m, m_ref = _manifest(tmp_path / "pq"), _manifest(ref)
    for name in ("fin_cpt", "gen_it"):
        assert m["sources"][name]["read"] == m_ref["sources"][name]["read"] > 0
        assert m["sources"][name]["raw_tokens"] == m_ref["sources"][name]["raw_tokens"]
    assert m["sources"]["gen_cpt"]["skipped_bad"] == {"blank line": 2}
    assert [c["tokens"] for c in m["components"]] == [c["tokens"] for c in m_ref["components"]]


def test_overlong_conversations_dropped_or_truncated_and_counted(tiny_tokenizer_dir, corpus, tmp_path):
    long = _jsonl(tmp_path / "long.jsonl", [{"messages": [{"role": "user", "content": "Tell me. " * 5},
                                                          {"role": "assistant", "content": "word " * 400}]}])
    c = dict(corpus, fin_it=long)
    build(recipe(tiny_tokenizer_dir, c, tmp_path / "a"), **QUIET)
    assert _manifest(tmp_path / "a")["sources"]["fin_it"]["dropped"] == {"longer than seq_length+1=129": 1}
    build(recipe(tiny_tokenizer_dir, c, tmp_path / "b", it_overlong="truncate"), **QUIET)
    assert _manifest(tmp_path / "b")["sources"]["fin_it"]["truncated"] == 1


def test_interrupted_build_leaves_nothing_that_looks_complete(tiny_tokenizer_dir, corpus, tmp_path, monkeypatch):
    import findap_nemo.data.run as b

    real = b._write
    calls = []

    def crash(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(b, "_write", crash)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        build(recipe(tiny_tokenizer_dir, corpus, out), **QUIET)
    assert not out.exists() and not any(p.name.endswith("manifest.json") for p in tmp_path.rglob("*"))
    monkeypatch.setattr(b, "_write", real)
    # a rerun resumes: the four sources were tokenized before the crash and are not tokenized again
    tokenized = []
    real_tok = b._tokenize_source
    monkeypatch.setattr(b, "_tokenize_source", lambda src, *a: tokenized.append(src.name) or real_tok(src, *a))
    logs = []
    build(recipe(tiny_tokenizer_dir, corpus, out), log=logs.append)
    assert tokenized == [] and sum("reusing the tokenized output" in m for m in logs) == 4
    assert (out / "manifest.json").is_file() and not (tmp_path / "ds.partial").exists()
    assert not list(out.rglob("_tokenized")) and not (out / ".lock").exists()
    clean = tmp_path / "clean"
    build(recipe(tiny_tokenizer_dir, corpus, clean), **QUIET)
    m, m_clean = _manifest(out), _manifest(clean)
    assert m["sources"] == m_clean["sources"] and m["components"] == m_clean["components"]
    for comp in m["components"]:  # the resumed dataset is byte-identical to a clean build
        for suffix in (".bin", ".idx", "_mask.bin", "_mask.idx"):
            assert (out / (comp["prefix"] + suffix)).read_bytes() == (clean / (comp["prefix"] + suffix)).read_bytes()
    # a changed input is tokenized again (its fingerprint no longer matches)
    monkeypatch.setattr(b, "_write", crash)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        build(recipe(tiny_tokenizer_dir, corpus, tmp_path / "ds2"), **QUIET)
    monkeypatch.setattr(b, "_write", real)
    with open(corpus["gen_it"], "a") as f:
        f.write(json.dumps({"prompt": "One more?", "response": "Yes."}) + "\n")
    tokenized.clear()
    build(recipe(tiny_tokenizer_dir, corpus, tmp_path / "ds2"), **QUIET)
    assert tokenized == ["gen_it"]
    with pytest.raises(FileExistsError, match="force=true"):
        build(recipe(tiny_tokenizer_dir, corpus, out), **QUIET)


def test_recipe_validation_names_keys(tiny_tokenizer_dir, corpus, tmp_path):
    from findap_nemo.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        recipe(tiny_tokenizer_dir, corpus, tmp_path / "x", sources=[
            {"name": "a", "kind": "text", "domain": "law", "path": "/nope.jsonl"}],
            blend={"downsample_cpt": "bytes"})
    msg = str(exc.value)
    for needle in ("sources[0].kind='text'", "sources[0].domain='law'", "sources[0].path='/nope.jsonl'",
                   "blend.downsample_cpt='bytes'"):
        assert needle in msg


def test_demo_recipe_builds_via_cli(tmp_path):
    from helpers import cli

    cli("data", "--config", "configs/data/demo.yaml", f"output_dir={tmp_path / 'demo'}")
    m = _manifest(tmp_path / "demo")
    assert {c["domain"] for c in m["components"]} == {"finance", "general"}
    assert m["downsampling"]["cpt_documents_kept"] == m["downsampling"]["it_documents"]
    # the sample training data is held out from every shipped FinEval set: nothing to decontaminate
    dec = m["decontamination"]
    assert len(dec["eval_files"]) >= 12 and dec["removed"] and set(dec["removed"].values()) == {0}


def test_utf8_bom_is_accepted(tiny_tokenizer_dir, corpus, tmp_path):
    """Windows editors start files with a byte order mark: the first record is read, not rejected or skipped."""
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + corpus["fin_cpt"].read_bytes())
    build(recipe(tiny_tokenizer_dir, dict(corpus, fin_cpt=bom), tmp_path / "x", skip_bad=True), **QUIET)
    st = _manifest(tmp_path / "x")["sources"]["fin_cpt"]
    assert st["read"] == 40 and st["skipped_bad"] == {}


def test_empty_source_warns_and_an_empty_kind_refuses(tiny_tokenizer_dir, corpus, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    lines: list[str] = []
    build(recipe(tiny_tokenizer_dir, dict(corpus, fin_cpt=empty), tmp_path / "x"), log=lines.append)
    assert any(f"WARNING: source 'fin_cpt' ({empty}) gave no documents: no records" in ln for ln in lines), lines
    with pytest.raises(DataError, match=r"every IT source is empty \(fin_it, gen_it\)"):
        build(recipe(tiny_tokenizer_dir, dict(corpus, fin_it=empty, gen_it=empty), tmp_path / "y"), **QUIET)
    assert not (tmp_path / "y").exists()


def _tmpfs(path: Path, size: str, *opts: str) -> None:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *opts]), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root and a "
                    f"sandbox that allows mount")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    yield mnt
    import subprocess

    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _without_root_override() -> list[str]:
    """A command prefix under which permission bits apply: root drops its capabilities to bypass them."""
    import shutil

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("EACCES as root needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


@pytest.mark.parametrize("case", ["ENOSPC", "EROFS", "EACCES", "vanished"])
def test_os_errors_in_the_data_build_are_one_line(tiny_tokenizer_dir, corpus, tmp_path, small_disk, case):
    """Full disk, read-only disk, no permission, output folder deleted mid-build: one line naming the path and the
    cause; nothing looks complete (no manifest.json in the output, the partial folder keeps its .partial name)."""
    import subprocess
    import sys

    from helpers import REPO, env

    prefix: list[str] = []
    if case == "ENOSPC":
        _tmpfs(small_disk, "48k")
    elif case == "EROFS":
        _tmpfs(small_disk, "1m", "ro")
    elif case == "EACCES":
        prefix = _without_root_override()
        small_disk.mkdir()
        small_disk.chmod(0o555)
    else:
        small_disk.mkdir()
    out = small_disk / "ds"
    cfg = tmp_path / "recipe.yaml"
    import yaml

    from findap_nemo.config import config_to_dict

    r = config_to_dict(recipe(tiny_tokenizer_dir, corpus, out))
    if case == "vanished":  # the build's folder is removed while the first source is being tokenized
        r["sources"][0]["path"] = str(tmp_path / "slow.jsonl")
        (tmp_path / "slow.jsonl").write_text("".join(json.dumps({"text": f"doc {i} " * 40}) + "\n"
                                                     for i in range(20000)))
    cfg.write_text(yaml.safe_dump(r))
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "findap_nemo.cli", "data", "--config", str(cfg)], cwd=REPO,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if case == "vanished":
        import shutil
        import time

        partial = small_disk / "ds.partial" / "_tokenized"
        while proc.poll() is None and not list(partial.glob("*.bin")):
            time.sleep(0.05)
        shutil.rmtree(small_disk / "ds.partial")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr[-3000:]
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    expect = {"ENOSPC": "no space left on the device", "EROFS": "read-only file system",
              "EACCES": "permission denied", "vanished": "the folder vanished while writing"}[case]
    assert lines[-1].startswith("findap-nemo data: cannot write the dataset to ") and expect in lines[-1] \
        and f"({case if case != 'vanished' else 'ENOENT'})" in lines[-1], lines[-1]
    assert str(small_disk) in lines[-1]
    assert not (out / "manifest.json").exists()
