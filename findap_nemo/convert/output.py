"""Output folders that appear only when complete: write into a temporary sibling, then rename."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from findap_nemo.config import ConfigError


def check_output(out: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing output unless ``force``; refuse paths that are files."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"--out {out}: already exists; choose a new folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove ``.<out>.tmp-<pid>-*`` / ``.old-*`` siblings left by killed runs (their process is gone); a live
    process's folder is left alone. Returns what was removed."""
    removed = []
    for p in out.parent.glob(f".{out.name}.*-*-*"):
        kind, _, rest = p.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        print(f"[convert] removed {len(removed)} temporary folder(s) of killed runs next to {out}", flush=True)
    return removed


@contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``, on failure it is removed."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{int(time.time())}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time())}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
