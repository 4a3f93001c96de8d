"""findap_nemo.files: atomic writes leave no partial file; JSONL lines are read with every bad line located."""

from __future__ import annotations

import os

import pytest

from findap_nemo.config import ConfigError
from findap_nemo.files import BadLine, jsonl_lines, read_json, read_jsonl, write_json_atomic, write_text_atomic


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "result.json"
    write_json_atomic(path, {"a": 1})
    write_text_atomic(path, '{"a": 2}')
    assert path.read_text() == '{"a": 2}' and os.listdir(path.parent) == ["result.json"]


def test_jsonl_lines_locate_every_bad_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n[1, 2]\n{oops\n\xff\xfe\n{"b": 2}\n')
    rows = list(jsonl_lines(path))
    assert [(n, w) for n, w, _ in rows] == [(1, f"{path}:1"), (3, f"{path}:3"), (4, f"{path}:4"), (5, f"{path}:5"),
                                            (6, f"{path}:6")]
    good = [r for _, _, r in rows if not isinstance(r, BadLine)]
    assert good == [{"a": 1}, {"b": 2}]  # the byte order mark is not part of the first record
    bad = [str(r) for _, _, r in rows if isinstance(r, BadLine)]
    assert bad[0] == f"{path}:3: expected a JSON object per line, got list"
    assert bad[1].startswith(f"{path}:4: not valid JSON (")
    assert bad[2].startswith(f"{path}:5: not valid UTF-8")
    # blank lines on request; any JSON value when objects are not required
    assert [r for _, _, r in jsonl_lines(path, blanks=True)][1] is None
    assert [r for _, _, r in jsonl_lines(path, objects=False)][1] == [1, 2]


def test_decontamination_reads_eval_sets_with_a_byte_order_mark(tmp_path):
    from findap_nemo.data.decontam import eval_texts

    path = tmp_path / "eval.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"q": "What was EBITDA?"}\n')
    assert list(eval_texts([str(path)])) == [(str(path), "What was EBITDA?")]
    path.write_text('{"q": "x"}\n{bad\n')
    with pytest.raises(ValueError, match=rf"decontamination.eval_sets: {path}:2: not valid JSON"):
        list(eval_texts([str(path)]))


def test_read_json_and_jsonl_name_the_file_and_line(tmp_path):
    """One reader for whole JSON files and JSONL record files: errors say file, line (and column); a missing file
    is an error unless the caller says it may be missing; a torn last line (a killed appender) is dropped only when
    the caller allows it, never a bad line in the middle."""
    good = tmp_path / "a.json"
    good.write_text('\ufeff{"x": 1}')  # byte order mark from a Windows editor
    assert read_json(good) == {"x": 1}
    assert read_json(tmp_path / "none.json", missing_ok=True) is None
    with pytest.raises(ConfigError, match=r"none.json: not found"):
        read_json(tmp_path / "none.json")
    bad = tmp_path / "b.json"
    bad.write_text('{\n  "x": 1,\n}\n')
    with pytest.raises(ConfigError, match=r"b.json line 3: not valid JSON \(.* at column 1\)"):
        read_json(bad)

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"iteration": 1}\n\n{"iteration": 2}\n{"itera')
    with pytest.raises(ConfigError, match=r"metrics.jsonl:4: not valid JSON"):
        read_jsonl(log)
    assert read_jsonl(log, torn_tail_ok=True) == [{"iteration": 1}, {"iteration": 2}]
    log.write_text('{"iteration": 1}\n{"itera\n{"iteration": 3}\n')
    with pytest.raises(ConfigError, match=r"metrics.jsonl:2: not valid JSON"):
        read_jsonl(log, torn_tail_ok=True)
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
