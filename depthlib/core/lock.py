"""One writer at a time: an exclusive lock file that names its holder's pid.

The lock is `fcntl.flock` on the file, so the operating system releases it when the holder exits,
however it exits: a lock file left by a process that died is simply taken over (and rewritten with
the new holder's pid). The file's text is only there to tell a refused process who holds it.
POSIX only (Linux, macOS), on a local file system: flock does not reach across NFS clients.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from .errors import DepthlibError


class LockError(DepthlibError, RuntimeError):
    """Another live process holds the lock; the message names it, the lock file and what to do."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 256).decode("utf-8", "replace").strip()
    return text or "a process that has not written its pid yet"


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike[str], what: str) -> Iterator[str]:
    """Hold the lock file `path` for the block -> what it said before (a dead holder's pid, or "").

    Raises LockError naming the holder when a live process holds it; `what` says what is locked.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LockError(f"{p}: {what} is in use by another process ({holder}). Fix: wait for it to finish, "
                            "or stop that process; a lock left by a process that died is taken over.") from None
        try:  # a holder that was releasing may have removed the file we locked: then lock the new one
            if os.stat(p).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        before = os.read(fd, 256).decode("utf-8", "replace").strip()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield before
    finally:
        p.unlink(missing_ok=True)  # still holding it: nobody can have locked the file in between
        os.close(fd)
