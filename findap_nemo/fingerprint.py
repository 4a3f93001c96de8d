"""Fingerprints of what a stage consumed: JSON values by content, files by content (small) or size+mtime (large).

Used by ``findap-nemo run`` to decide whether a finished stage is still fresh. Large files (weights, datasets) are
identified by size and modification time, so fingerprinting a checkpoint costs a directory walk, not a read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

CONTENT_LIMIT = 1 << 20
"""Files up to this size are hashed by content; larger ones by (size, mtime)."""

_SKIP_DIRS = {".git", "__pycache__"}


def fingerprint_json(obj: Any) -> str:
    """sha256 (16 hex digits) of a JSON-serialisable value, keys sorted."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_entry(f: Path) -> list:
    st = f.stat()
    if st.st_size <= CONTENT_LIMIT:
        return [st.st_size, hashlib.sha256(f.read_bytes()).hexdigest()]
    return [st.st_size, st.st_mtime_ns]


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def fingerprint_files(paths: Iterable[str | os.PathLike]) -> str:
    """Fingerprint of files and folders (recursively): names, sizes and contents (mtime for large files).
    A missing path counts as "missing", so its later appearance changes the fingerprint."""
    entries = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            entries.append([str(p), _file_entry(p)])
        elif p.is_dir():
            entries.append([str(p), [[str(f.relative_to(p)), _file_entry(f)] for f in _walk(p) if f.is_file()]])
        else:
            entries.append([str(p), "missing"])
    return fingerprint_json(entries)
