"""Reading sources record by record, with every bad record either a named error or a counted skip."""

from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from findap_nemo.data.config import SourceConfig
from findap_nemo.files import BadLine, jsonl_lines


class DataError(ValueError):
    """Bad input: names the file and line (or row) and what was expected."""


@dataclass
class Record:
    source: str
    where: str  # "file:line" or "dataset[row]"
    kind: str
    domain: str
    text: str | None = None  # cpt
    messages: list | None = None  # it


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        out = sorted(glob.glob(os.path.join(path, "*.jsonl")) + glob.glob(os.path.join(path, "*.json")) +
                     glob.glob(os.path.join(path, "*.parquet")))
        if not out:
            raise DataError(f"{path}: folder has no .jsonl/.json/.parquet files")
        return out
    return [path]


def _raw_rows(src: SourceConfig, bad: Counter, skip_bad: bool) -> Iterator[tuple[str, object]]:
    """(where, row) pairs; a row is a dict, or an exception to report for that position."""
    if src.hf_dataset:
        import datasets

        ds = datasets.load_dataset(src.hf_dataset, src.hf_subset, split=src.hf_split)
        for i, row in enumerate(ds):
            yield f"{src.hf_dataset}[{src.hf_split}][{i}]", row
        return
    for path in _files(src.path):
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            i = 0  # streamed in record batches: a large Parquet file never sits in memory whole
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    i += 1
                    yield f"{path}:row {i}", row
            continue
        for _, where, row in jsonl_lines(path, blanks=True):
            if row is None:
                yield where, _Empty(f"{where}: blank line", reason="blank line")
            elif isinstance(row, BadLine):
                yield where, DataError(row)
            else:
                yield where, row


def _messages(src: SourceConfig, row: dict, where: str) -> list[dict]:
    if src.messages_field and src.messages_field in row:
        msgs = row[src.messages_field]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: field '{src.messages_field}' must be a non-empty list of "
                            f"{{'role', 'content'}} messages")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: {src.messages_field}[{j}] must have string 'role' and 'content'")
            if m["role"] not in ("system", "user", "assistant"):
                raise DataError(f"{where}: {src.messages_field}[{j}].role={m['role']!r}: expected system, user or "
                                f"assistant")
        out = [{"role": m["role"], "content": m["content"]} for m in msgs]
    else:
        missing = [f for f in (src.prompt_field, src.response_field) if not f or f not in row]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing} (source '{src.name}' maps it data from "
                            f"messages_field={src.messages_field!r} or prompt_field/response_field)")
        for f in (src.prompt_field, src.response_field):
            if not isinstance(row[f], str):
                raise DataError(f"{where}: field '{f}' must be a string, got {type(row[f]).__name__}")
        out = []
        if src.system_field and isinstance(row.get(src.system_field), str) and row[src.system_field].strip():
            out.append({"role": "system", "content": row[src.system_field]})
        out += [{"role": "user", "content": row[src.prompt_field]},
                {"role": "assistant", "content": row[src.response_field]}]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise _Empty(f"{where}: no non-empty assistant message (nothing to train on)")
    return out


class _Empty(DataError):
    """An empty document: always a counted skip, never fatal (empty lines of text are common in corpora)."""

    def __init__(self, msg: str, reason: str = "empty document"):
        super().__init__(msg)
        self.reason = reason


def read_source(src: SourceConfig, *, skip_bad: bool, skipped: Counter) -> Iterator[Record]:
    """Yield the source's records. Bad records raise :class:`DataError` unless ``skip_bad`` (then counted in
    ``skipped`` by reason); empty documents are always counted and skipped."""
    n = 0
    for where, row in _raw_rows(src, skipped, skip_bad):
        try:
            if isinstance(row, Exception):
                raise row
            if src.kind == "cpt":
                if src.text_field not in row:
                    raise DataError(f"{where}: missing field '{src.text_field}' (source '{src.name}' has "
                                    f"text_field={src.text_field!r}; fields here: {sorted(row)[:8]})")
                text = row[src.text_field]
                if not isinstance(text, str):
                    raise DataError(f"{where}: field '{src.text_field}' must be a string, got {type(text).__name__}")
                if not text.strip():
                    raise _Empty(f"{where}: empty text")
                rec = Record(src.name, where, "cpt", src.domain, text=text)
            else:
                rec = Record(src.name, where, "it", src.domain, messages=_messages(src, row, where))
        except _Empty as err:
            skipped[err.reason] += 1
            continue
        except DataError as err:
            if not skip_bad:
                raise
            reason = str(err).split(": ", 1)[-1].split(" (")[0]
            skipped[reason] += 1
            continue
        yield rec
        n += 1
        if src.max_documents and n >= src.max_documents:
            return
