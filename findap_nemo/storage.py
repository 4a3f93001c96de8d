"""Failures to write outputs (full disk, no permission, read-only or vanished folder) as one line a user can act on.

Writers deep in torch or megatron report these as ``OSError`` without a path, or not as an OSError at all (a full disk
during a dist-checkpoint save surfaces as ``unexpected pos 704 vs 598``). :func:`describe` finds the OSError in the
exception chain, or asks the file system what is wrong with the folder, and names the path and the cause.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_HINTS = {
    errno.ENOSPC: "no space left on the device: free space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free space or write elsewhere",
    errno.EACCES: "permission denied: fix the folder's permissions or write elsewhere",
    errno.EPERM: "operation not permitted: fix the folder's permissions or write elsewhere",
    errno.EROFS: "read-only file system: write elsewhere",
    errno.ENOENT: "the folder vanished while writing (deleted or unmounted?)",
}


class StorageError(RuntimeError):
    """An output could not be written; the message is one line naming the path and the cause."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def _os_error_in(err: BaseException) -> OSError | None:
    seen = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _HINTS:
            return e
        e = e.__cause__ or e.__context__
    return None


def _under(name, folder) -> bool:
    a, r = Path(os.path.abspath(name)), Path(os.path.abspath(folder))
    return a == r or r in a.parents


def probe(folder: str | os.PathLike, needed_bytes: int = 0) -> int | None:
    """What the file system says is wrong with writing ``needed_bytes`` into ``folder`` now (an errno), or None."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder:
        return errno.ENOENT
    try:
        st = os.statvfs(folder)
    except OSError as e:
        return e.errno
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return errno.EROFS
    if st.f_bavail * st.f_frsize < max(1 << 20, needed_bytes):
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def describe(err: BaseException, path: str | os.PathLike, what: str, needed_bytes: int = 0) -> StorageError | None:
    """A StorageError for ``err`` raised while writing ``what`` (about ``needed_bytes``) under ``path``, or None when
    it is not a storage failure (then the original error should propagate)."""
    os_err = _os_error_in(err)
    if os_err is not None and os_err.filename and not _under(os_err.filename, path):
        os_err = None  # e.g. a missing input file: not a failure to write the output
    code = os_err.errno if os_err is not None else probe(path, needed_bytes)
    if code is None:
        return None
    where = getattr(os_err, "filename", None) or path
    name = errno.errorcode.get(code, str(code))
    return StorageError(f"cannot write {what} to {where}: {_HINTS.get(code, os.strerror(code))} ({name})", code)
