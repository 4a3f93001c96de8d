"""What a cached, resumable or finished output was made from, as comparable JSON values and digests.

One place for every cache key in the package: ``findap-nemo run`` decides whether a finished stage is still fresh
(:func:`fingerprint_files`, :func:`fingerprint_json`), and reference log-probs, GenRM progress, eval predictions and
tokenized data-build sources are keyed on all inputs that change their content, never on a path alone, so an
edited chat template or a re-converted checkpoint under the same path is noticed:

- tokenizer files are hashed by content: every non-weights file of the folder (tokenizer.json,
  tokenizer_config.json with its ``chat_template``, chat_template.jinja, special_tokens_map.json, vocab/merges);
- model weights are identified by each weights file's name, size and modification time (reading tens of GB per
  run is not affordable) plus the content hash of the small files that describe them (safetensors index,
  megatron's ``.metadata``/``common.pt``/``metadata.json``, config.json);
- other files by content when small, else by size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

CONTENT_LIMIT = 1 << 20
"""Files up to this size are hashed by content; larger ones by (size, mtime)."""

_SKIP_DIRS = {".git", "__pycache__", ".cache"}


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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".distcp", ".ckpt", ".gguf", ".npy", ".h5", ".msgpack")
"""Files identified by (size, mtime) rather than content. ``common.pt`` and other small metadata are hashed."""

SMALL_FILE = 8 << 20
"""Files up to this size are hashed by content; larger ones by size and mtime."""



TOKENIZER_FILE_MAX = 256 << 20
"""Tokenizer files are hashed whatever their size up to this (Llama 3's tokenizer.json is ~9 MB)."""


def digest(value: Any, length: Optional[int] = None) -> str:
    """sha256 of a JSON-serialisable value (keys sorted): the same inputs give the same key in any process."""
    h = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return h[:length] if length else h


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        return []
    return sorted(f for f in p.rglob("*") if f.is_file() and not (_SKIP_DIRS & set(f.relative_to(p).parts)))


def _rel(f: Path, root: Path) -> str:
    return f.name if root.is_file() else str(f.relative_to(root))


def file_states(path: Optional[str | os.PathLike]) -> list:
    """[name, size, mtime_ns] of every file at/under ``path`` (cheap: no reading). Missing path: []."""
    if not path:
        return []
    root = Path(path)
    return [[_rel(f, root), f.stat().st_size, f.stat().st_mtime_ns] for f in _files(root)]


def _is_weights(f: Path) -> bool:
    return f.suffix in WEIGHT_SUFFIXES and (f.stat().st_size > SMALL_FILE or f.suffix in (".safetensors", ".distcp"))


def tokenizer_identity(path: Optional[str | os.PathLike]) -> Optional[str]:
    """Content hash of a tokenizer folder's files (all of them except weights): the chat template, special
    tokens, vocabulary and merges all change the token ids. None when there is no such folder."""
    if not path or not Path(path).exists():
        return None
    root = Path(path)
    h = hashlib.sha256()
    for f in _files(root):
        if _is_weights(f) or f.stat().st_size > TOKENIZER_FILE_MAX:
            continue
        h.update(_rel(f, root).encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


def weights_identity(path: Optional[str | os.PathLike]) -> Optional[dict]:
    """Identity of a model checkpoint (HF folder or megatron ``iter_*`` folder): weights files by (size, mtime),
    every other file by content hash. None when the path does not exist."""
    if not path or not Path(path).exists():
        return None
    root = Path(path)
    weights, meta = [], {}
    for f in _files(root):
        if _is_weights(f) or f.stat().st_size > SMALL_FILE:
            st = f.stat()
            weights.append([_rel(f, root), st.st_size, st.st_mtime_ns])
        else:
            meta[_rel(f, root)] = file_sha256(f)
    return {"path": os.path.abspath(root), "weights": weights, "files": digest(meta)}
