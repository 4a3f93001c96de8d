"""Writing outputs so that a file that exists is complete: written beside under a temporary name, then renamed.

A reader (a resumed run, the report, a user's script) never sees half a file; a killed writer leaves only a
``.<name>.tmp-<pid>`` beside it. Folders that must appear complete at once use ``convert.output.atomic_dir`` and
the data build's ``.partial`` folder; checkpoints their ``iter_XXXXXXX.tmp-<stamp>`` folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional


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
