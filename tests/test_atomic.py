"""One helper writes files atomically (depthlib.core.atomic): the data fsynced, renamed over the target, the folder
fsynced, so after a crash the name holds the old file or the new one, whole, and the rename itself is on disk."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Callable

import pytest
import torch

import depthlib
from depthlib.core.atomic import atomic_path, atomic_write_text
from depthlib.data import open_source
from depthlib.data.prepared_write import write_prepared
from depthlib.data.standin import StandinSettings, write_standin
from depthlib.models import create_model
from depthlib.models.checkpoint import save_checkpoint

PACKAGE = Path(depthlib.__file__).parent
OWNER = PACKAGE / "core" / "atomic.py"
# calls that rename a finished file into place or make it durable: only the owner makes them
RENAMES = {("os", "replace"), ("os", "rename"), ("os", "fsync"), ("tempfile", "mkstemp"),
           ("tempfile", "NamedTemporaryFile")}


def test_only_core_atomic_renames_into_place_or_fsyncs():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            f = getattr(node, "func", None)
            if isinstance(node, ast.Call) and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and (f.value.id, f.attr) in RENAMES:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {f.value.id}.{f.attr}")
    assert offenders == [], "write through depthlib.core.atomic (atomic_path / publish) instead"


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths os.fsync was called on, in order (Linux: an fd's path from /proc/self/fd)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name an fd's file")
    seen: list[Path] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def _text(out: Path) -> Path:
    return atomic_write_text(out / "a.json", "{}\n")


def _checkpoint(out: Path) -> Path:
    return save_checkpoint(out / "last.pt", model=create_model("unet", width=4, depth=2))


def _prepared(out: Path) -> Path:
    src = open_source("densedepth", str(Path(depthlib.__file__).parent.parent / "data" / "sample"), split="test")
    return write_prepared(src, out / "p.h5", indices=[0, 1], progress=False)


def _standin(out: Path) -> Path:
    return write_standin(out / "nyu_data.zip", n_frames=4, n_test=2, n_scenes=1, settings=StandinSettings(size=(48, 64)),
                         workers=0, progress=False).path


def _figure(out: Path) -> Path:
    with atomic_path(out / "f.bin") as tmp:
        torch.save({}, tmp)
    return out / "f.bin"


@pytest.mark.parametrize("write", [_text, _checkpoint, _prepared, _standin, _figure], ids=lambda f: f.__name__[1:])
def test_every_writer_fsyncs_its_file_then_the_folder(tmp_path: Path, fsynced: list[Path],
                                                     write: Callable[[Path], Path]) -> None:
    out = write(tmp_path / "out")
    folder = out.parent.resolve()
    assert out.is_file() and sorted(p.name for p in folder.iterdir()) == [out.name]  # no temporary left
    files = [p for p in fsynced if p.parent == folder]
    assert files, f"the data of {out.name} was never fsynced"
    assert fsynced[-1] == folder, f"{out.name}: the folder was not fsynced after the rename (fsynced: {fsynced})"
