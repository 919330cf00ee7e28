"""Output folders checked before long work: writable, with the free space the files will need.

A read-only or full folder would otherwise be found only at the first save (an epoch, or hours, later)
with a message that may name neither the path nor the condition.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["check_writable"]


def check_writable(folder: str | os.PathLike, need_bytes: int = 0, what: str = "output folder",
                   hint: str = "choose another folder") -> Path:
    """Create ``folder`` if needed and write / remove a probe file there; fail now, naming the folder, if it
    cannot be written or has less than ``need_bytes`` free.

    Raises:
        OSError: with ``errno`` EROFS / EACCES / … (not writable) or ENOSPC (too little space).
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"{what} {path} is not writable ({exc.strerror or exc}); {hint}") from None
    if need_bytes:
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise OSError(errno.ENOSPC, f"{what} {path} has {free / 1e6:.1f} MB free, but about {need_bytes / 1e6:.1f} MB "
                                        f"are needed; free some space or {hint}")
    return path
