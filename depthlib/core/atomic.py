"""Atomic file output, the one way depthlib puts a finished file in place: write beside the target, fsync it, rename
it over the target, fsync the folder. After a crash the name holds the old file or the new one, whole, and the
rename itself is on disk (without the folder's fsync a power cut can forget it).

Every writer goes through here: atomic_path / atomic_write_text / atomic_write_bytes for a file written in one go,
publish for one built under a name of its own first (the prepared file's resumable .partial).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make the names in `folder` durable (POSIX; Windows cannot open a folder to fsync it)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Put the finished file `tmp` in place as `path` (same folder): fsync it, rename it over `path`, fsync the folder.

    An existing file at `path` keeps its permission bits; a new one has the umask's.
    """
    tmp, out = Path(tmp), Path(path)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if out.exists():
        os.chmod(tmp, out.stat().st_mode & 0o7777)
    os.replace(tmp, out)
    fsync_folder(out.parent)
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is published as `path`, on any error it is removed.

    The temporary name is pid-based rather than mkstemp's, so the result gets the umask's mode (not 0600).
    The suffix is kept so writers that infer the format from it (PIL, matplotlib) still work.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        yield tmp
        publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically -> path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically -> path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
