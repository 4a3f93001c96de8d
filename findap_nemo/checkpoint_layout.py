"""The on-disk layout of megatron checkpoints, in one place (no torch import: login nodes and `slurm status` use it).

Megatron-LM's layout, so its tools recognise our checkpoints::

    <root>/iter_0000100/                      one checkpoint (dist_checkpointing: metadata.json + shards)
    <root>/latest_checkpointed_iteration.txt  the tracker: the iteration a resumed job loads

The tracker moves only after the iteration folder is complete (``train/checkpointing.py`` writes both), so "the
latest checkpoint" is the tracker's folder when it exists, else the highest complete ``iter_`` folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

TRACKER = "latest_checkpointed_iteration.txt"
_ITER_RE = re.compile(r"^iter_(\d{7})$")


def iter_dir(root: str | os.PathLike, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def is_iter_dir(path: str | os.PathLike) -> bool:
    """``path`` is named like one checkpoint (``iter_XXXXXXX``)."""
    return bool(_ITER_RE.match(Path(path).name))


def checkpoint_root(path: str | os.PathLike) -> Path:
    """The folder holding the checkpoints: ``path`` itself, or its parent when it names one ``iter_`` folder."""
    p = Path(path)
    return p.parent if is_iter_dir(p) else p


def write_tracker(root: str | os.PathLike, iteration: int) -> None:
    """Point the tracker at ``iteration`` (atomically: written beside, then renamed)."""
    tmp = Path(root) / (TRACKER + ".tmp")
    tmp.write_text(str(iteration))
    os.replace(tmp, Path(root) / TRACKER)


def tracked_iteration(root: str | os.PathLike) -> Optional[int]:
    """The iteration the tracker names, or None (no tracker, unreadable, or not a number)."""
    try:
        text = (Path(root) / TRACKER).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def list_checkpoints(root: str | os.PathLike) -> list[int]:
    """Iterations of the complete checkpoint folders under ``root`` (temporary ``.tmp-`` folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _ITER_RE.match(p.name)))


def latest_checkpoint(root: str | os.PathLike | None) -> Optional[Path]:
    """The newest complete checkpoint under ``root`` (the tracker's first, else the highest iter_ folder).

    ``root`` may also point at one ``iter_XXXXXXX`` folder directly (e.g. an intermediate checkpoint to export).
    """
    if root is None:
        return None
    root = Path(root)
    if is_iter_dir(root) and (root / "metadata.json").exists():
        return root
    it = tracked_iteration(root)
    if it is not None and iter_dir(root, it).is_dir():
        return iter_dir(root, it)
    its = list_checkpoints(root)
    return iter_dir(root, its[-1]) if its else None


def iteration_of(ckpt: str | os.PathLike) -> int:
    """The iteration of an ``iter_XXXXXXX`` folder."""
    m = _ITER_RE.match(Path(ckpt).name)
    if not m:
        raise ValueError(f"{ckpt}: not a checkpoint folder (expected iter_XXXXXXX)")
    return int(m.group(1))
