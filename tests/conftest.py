"""Shared fixtures: paths to the embedded sample and to the shared real NYU files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

# nbformat (imported by test_browser, test_viz, test_user_paths) imports jsonschema, which would build the IRI grammar
# of rfc3987_syntax for 4.4 s in every worker: no test uses jsonschema's "iri" format (depthlib.notebook.pipeline.
# import_papermill does the same for the pipeline process and says why).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED_NYU = ROOT.parent / "shared" / "data" / "nyu_samples"

# Under pytest-xdist (`make test` runs 2 workers) each worker gets its share of the cores: two workers of two
# threads each on 2 cores spin against each other (a tiny test's convolution then takes several times as long).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))
# The same for what the tests start (pipelines and their kernels, scripts): with two threads spinning against the
# other worker and the background pipeline, the own-data test's 03 alone took 118 s (the whole test 62-73 s before).
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


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


from _sample_project import SAMPLE_RUN_OVERRIDES, STARTED, run_locked, wait_model  # noqa: E402,F401  (tests import the overrides from here)


def _shared_base(config: pytest.Config) -> Path:
    """The temp folder every pytest-xdist worker of this run shares (the run's own one without xdist)."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


_background: list[subprocess.Popen] = []


@pytest.hookimpl(trylast=True)   # after -m / -k deselection: a run without the sample model's tests never starts it
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The shared sample pipeline starts now, in the background; its tests are ordered around it.

    pytest-xdist hands tests out in this order (make test passes --maxschedchunk 2, so a worker is never handed the
    last tests long before it reaches them). First the test marked `early` (the own-data run, 90 s): one worker takes
    it at once and waits for the model (`sample_model`: 01-03, two thirds of the run) while the pipeline and the
    other worker keep both cores busy, then fine-tunes while 04 and 05 run; last, it ran after the whole pipeline
    on one core. Last the other tests of the run (`sample_model`, `sample_project`). Only the first worker to
    collect starts the run. (Two tests first, one on each worker, left both waiting: 443 s against 393 s.)
    (Tried and dropped, 23d621d: every slow test first with the workers niced below the pipeline: 471 s against
    398-416 s; the kernel's per-session scheduling, on here, already gives the pipeline, a session of its own, its
    share.)
    """
    def rank(it: pytest.Item) -> int:
        names = getattr(it, "fixturenames", ())
        if "sample_model" not in names and "sample_project" not in names:
            return 1
        return 0 if it.get_closest_marker("early") else 2

    if all(rank(it) == 1 for it in items):
        return
    items.sort(key=rank)   # stable: the order is kept otherwise
    _start_sample_pipeline(config)


def _start_sample_pipeline(config: pytest.Config) -> None:
    base = _shared_base(config)
    try:
        os.close(os.open(base / STARTED, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    # One torch thread: the workers have the cores' other share. Float sums then group differently from `make
    # pipeline`'s two threads, so this model is the recipe's model as another CPU would make it, not this one's
    # bit for bit (README block 0.1539 AbsRel here; 0.1447 with one thread): the tests of it must hold for either.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}
    with open(base / "sample_project.out", "w") as out:
        _background.append(subprocess.Popen([sys.executable, str(ROOT / "tests" / "_sample_project.py"), str(base)],
                                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run stopped early (-x, Ctrl-C) stops the background pipeline with it."""
    for proc in _background:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def sample_project(request: pytest.FixtureRequest) -> Path:
    """`make pipeline` once per test run, in a fresh project root -> that root.

    The sample profile's five notebooks on the embedded frames, as a new user runs them (README block, figures,
    checkpoints, executed notebooks, all under the root); what they printed is in <root>/pipeline.log. Every test of
    the model a user has after the demo (transfer, own data, the pipeline's outputs) shares this one run: it starts
    in the background at collection (pytest_collection_modifyitems) and this waits for it on its lock, or runs it
    here when nothing started it.
    """
    try:
        return run_locked(_shared_base(request.config))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


def _kernels() -> str:
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return f"{torch.backends.cpu.get_cpu_capability()}{f', oneDNN at most {isa}' if isa else ''}"


def pytest_configure(config: pytest.Config) -> None:
    """A pass asked for other CPUs' kernels (make test-kernels: one node per kernel set) checks that torch took them."""
    asked = os.environ.get("ATEN_CPU_CAPABILITY")
    if asked and torch.backends.cpu.get_cpu_capability().lower() != asked.lower():
        raise pytest.UsageError(f"ATEN_CPU_CAPABILITY={asked} did not take effect: torch runs "
                                f"{torch.backends.cpu.get_cpu_capability()} kernels")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failure says which CPU kernels it ran under (make test-kernels runs the suite under two sets at once)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("CPU kernels", _kernels()))


@pytest.fixture(scope="session")
def sample_model(request: pytest.FixtureRequest) -> Path:
    """The root of the shared run (sample_project) as soon as its model is made: 01-03 done, 04 and 05 maybe not.

    For the tests of checkpoints/sample/finetune/best.pt and data/prepared/sample.h5 alone.
    """
    try:
        return wait_model(_shared_base(request.config))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


def pytest_report_header(config) -> str:
    """Which CPU kernels this run uses: results differ between them, so a report says which it had."""
    from depthlib.models.fastpath import cpu_flags

    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx512f", "avx512_bf16", "amx", "avx2"))))
    return f"torch {torch.__version__} CPU kernels: {_kernels()}; CPU flags: {flags or 'unknown'}"
