"""Files in and out. Writing: a file that exists is complete (written beside under a temporary name, then
renamed), so a reader (a resumed run, the report, a user's script) never sees half a file; a killed writer leaves
only a ``.<name>.tmp-<pid>`` beside it. Folders that must appear complete at once use ``convert.output.atomic_dir``
and the data build's ``.partial`` folder; checkpoints their ``iter_XXXXXXX.tmp-<stamp>`` folder. Reading: JSONL
input line by line with every bad line located as ``path:line`` (:func:`jsonl_lines`); each stage decides whether
a bad line stops it (config errors) or is counted and skipped (the data build's ``skip_bad``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from findap_nemo.errors import ConfigError


def temp_path(path: str | os.PathLike) -> Path:
    """Where ``path`` is written before the rename: beside it (same file system), hidden, owned by this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_text_atomic(path: str | os.PathLike, text: str, *, mode: Optional[int] = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and a rename; ``mode`` sets its permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        if mode is not None:
            tmp.chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept as is)."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


class BadLine(str):
    """Why a JSONL line is not a record, located: ``"<path>:<line>: not valid JSON (...)"``."""


def jsonl_lines(path: str | os.PathLike, *, objects: bool = True,
                blanks: bool = False) -> Iterator[tuple[int, str, Any]]:
    """``(line number, where, record)`` for every non-blank line of a JSONL file, ``where`` being
    ``"<path>:<line>"``. A line
    that is not UTF-8, not JSON, or (``objects``) not a JSON object comes as a :class:`BadLine` instead of a
    record, for the caller to raise or count; ``blanks`` also gives blank lines, as ``None``. A UTF-8 byte order
    mark (Windows editors write one) is ignored."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, where, BadLine(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                                             f"re-encode the file as UTF-8")
                continue
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                if blanks:
                    yield lineno, where, None
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, where, BadLine(f"{where}: not valid JSON ({err.msg} at column {err.colno})")
                continue
            if objects and not isinstance(row, dict):
                yield lineno, where, BadLine(f"{where}: expected a JSON object per line, got "
                                             f"{type(row).__name__}")
                continue
            yield lineno, where, row


def read_json(path: str | os.PathLike, *, missing_ok: bool = False) -> Any:
    """A JSON file's value (``None`` for a missing file with ``missing_ok``); a file that is missing or not JSON is
    a ConfigError naming it, with the line and column."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise ConfigError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} line {err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None


def read_jsonl(path: str | os.PathLike, *, missing_ok: bool = False, torn_tail_ok: bool = False) -> list[dict]:
    """Every record of a JSONL file; a bad line is a ConfigError naming ``path:line``. ``torn_tail_ok``: a last
    line cut short (a writer killed mid-append, as metrics.jsonl can be) is left out instead; ``missing_ok``: a
    missing file has no records."""
    if missing_ok and not Path(path).is_file():
        return []
    if not Path(path).is_file():
        raise ConfigError(f"{path}: not found")
    rows: list[Any] = [row for _, _, row in jsonl_lines(path)]
    if torn_tail_ok and rows and isinstance(rows[-1], BadLine):
        rows.pop()
    bad = next((r for r in rows if isinstance(r, BadLine)), None)
    if bad is not None:
        raise ConfigError(str(bad))
    return rows
