"""One writer at a time: pipeline runs of one profile and writers of one prepared file refuse a second one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT
from depthlib.core.lock import LockError, hold_lock

HOLDER = "import sys, time; from depthlib.core.lock import hold_lock\nwith hold_lock(sys.argv[1], 'x'):\n    print('held', flush=True); time.sleep(120)"


@pytest.fixture()
def holder() -> Iterator:
    """Start a process that holds a lock file (given to the returned function) until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(lock: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path: Path, holder) -> None:
    lock = tmp_path / "out" / ".x.lock"
    p = holder(lock)
    with pytest.raises(LockError, match=rf"\.x\.lock: the thing is in use by another process \(pid {p.pid} on .*\)\. Fix: wait"):
        with hold_lock(lock, "the thing"):
            pass
    p.kill()
    p.wait()  # died holding it: its file is still there, with its pid
    assert f"pid {p.pid}" in lock.read_text()
    with hold_lock(lock, "the thing") as before:
        assert f"pid {p.pid}" in before and lock.read_text().startswith(f"pid {os.getpid()} ")
    assert not lock.exists()  # released: nothing left behind


def test_a_second_pipeline_run_of_a_profile_is_refused(tmp_path: Path, holder, capsys) -> None:
    from depthlib.notebook import pipeline

    plan = pipeline.make_plan("ci", only=["05"])
    plan.run_dir = tmp_path / "runs" / "ci"
    plan.outputs = {"figures": str(tmp_path / "figures/ci"), "metrics": str(tmp_path / "figures/ci/metrics.json"),
                    "checkpoints": str(tmp_path / "checkpoints/ci")}
    folders = pipeline.output_folders(plan)
    assert folders == sorted([tmp_path / "checkpoints/ci", tmp_path / "figures/ci", tmp_path / "runs/ci"])
    p = holder(tmp_path / "checkpoints/ci" / pipeline.LOCK_NAME)
    plan.steps = {}  # nothing to execute: the locks alone are under test
    with pytest.raises(LockError, match=rf"checkpoints/ci/\.pipeline\.lock: the output folder of profile 'ci' .*pid {p.pid}"):
        pipeline.run(plan, progress=False)
    assert not (tmp_path / "figures/ci" / pipeline.LOCK_NAME).exists()  # the locks it did take were let go
    p.kill()
    p.wait()
    pipeline.run(plan, progress=False)
    assert "took over" in capsys.readouterr().out and not any((f / pipeline.LOCK_NAME).exists() for f in folders)


def test_a_second_writer_of_a_prepared_file_is_refused(sample_dir: Path, tmp_path: Path) -> None:
    from depthlib.data import open_source
    from depthlib.data.prepared_write import write_prepared

    src = open_source("bts", sample_dir / "raw_depth")
    out = tmp_path / "p.h5"
    with hold_lock(tmp_path / "p.h5.lock", "x"):  # another writer of the same file, mid-way
        with pytest.raises(LockError, match=r"p\.h5\.lock: this prepared dataset \(being written\) is in use"):
            write_prepared(src, out, progress=False)
    assert not out.exists() and not (tmp_path / "p.h5.partial").exists()
    write_prepared(src, out, progress=False)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.h5"]
