"""Shared fixtures: paths to the embedded sample and to the shared real NYU files."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED_NYU = ROOT.parent / "shared" / "data" / "nyu_samples"

# Under pytest-xdist (`make test` runs 2 workers) each worker gets its share of the cores: two workers of two
# threads each on 2 cores spin against each other (a tiny test's convolution then takes several times as long).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def shared_nyu() -> Path:
    if not SHARED_NYU.is_dir():
        pytest.skip(f"shared NYU samples not found at {SHARED_NYU} (present in CI and developer checkouts)")
    return SHARED_NYU


def fresh_project(root: Path) -> Path:
    """An empty project root at `root`: the checkout's notebooks, code and embedded sample, no outputs of any run."""
    (root / "data").mkdir(parents=True)
    for part in ("notebooks", "depthlib", "data/sample"):  # depthlib: the kernel (cwd = root) imports this code
        (root / part).symlink_to(ROOT / part, target_is_directory=True)
    (root / "README.md").write_text((ROOT / "README.md").read_text())
    return root


@contextlib.contextmanager
def project_at(root: Path) -> Iterator[Path]:
    """Resolve every relative path (here and in the notebooks' kernels) from `root` while inside."""
    before = os.environ.get("DEPTH_WORKBOOK_ROOT")
    os.environ["DEPTH_WORKBOOK_ROOT"] = str(root)
    try:
        yield root
    finally:
        if before is None:
            os.environ.pop("DEPTH_WORKBOOK_ROOT", None)
        else:
            os.environ["DEPTH_WORKBOOK_ROOT"] = before


# What `make pipeline` runs, but for the scratch control's length: the control trains from random weights after
# 02's model and touches nothing 03-05 read, and 20 epochs of it cost a third of the run. 2 epochs keep every code
# path (its checkpoint, 04's four-way table and require_beat_control) at a tenth of the cost.
SAMPLE_RUN_OVERRIDES = ("02:control_epochs=2",)


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory) -> Path:
    """`make pipeline` once per test run, in a fresh project root -> that root.

    The sample profile's five notebooks on the embedded frames, as a new user runs them (README block, figures,
    checkpoints, executed notebooks, all under the root); what they printed is in <root>/pipeline.log. Every test of
    the model a user has after the demo (transfer, own data, the pipeline's outputs) shares this one run: under
    pytest-xdist the first worker to ask runs it while holding a lock, and the others wait and take its root.
    """
    from depthlib.notebook.pipeline import make_plan, run

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                       # the folder every worker of this run shares
    home, root = base / "sample_project", base / "sample_project" / "project"
    with open(base / "sample_project.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "done").is_file():
            shutil.rmtree(home, ignore_errors=True)    # a run that failed part-way: start it over
            fresh_project(root)
            log = io.StringIO()
            with project_at(root), contextlib.redirect_stdout(log):
                run(make_plan("sample", overrides=list(SAMPLE_RUN_OVERRIDES)), progress=False)
            (root / "pipeline.log").write_text(log.getvalue())
            (home / "done").write_text("")
    return root


def pytest_report_header(config) -> str:
    """Which CPU kernels this run uses: results differ between them, so a report says which it had."""
    flags = ""
    with contextlib.suppress(OSError):
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
        flags = " ".join(f for f in line.split() if f.startswith(("avx512f", "avx512_bf16", "amx", "avx2")))
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return (f"torch {torch.__version__} CPU kernels: {torch.backends.cpu.get_cpu_capability()}"
            f"{f', oneDNN at most {isa}' if isa else ''}; CPU flags: {flags or 'unknown'}")
