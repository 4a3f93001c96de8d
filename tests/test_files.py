"""findap_nemo.files: atomic writes leave no partial file; JSONL lines are read with every bad line located."""

from __future__ import annotations

import os

import pytest

from findap_nemo.files import BadLine, jsonl_lines, write_json_atomic, write_text_atomic


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
