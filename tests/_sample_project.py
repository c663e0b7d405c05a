"""`make pipeline` once per test run, shared by every test of the model a user has (conftest.sample_project).

Run as a script, it is the background run conftest starts at collection: it takes the lock, runs the sample
profile in a fresh project root and leaves `done` (or `failed` with the log) beside it, so the tests that need the
model wait on the lock while the others use the cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import shutil
import sys
import time
import traceback
from pathlib import Path

# What `make pipeline` runs, but for the scratch control's length: the control trains from random weights after
# 02's model and touches nothing 03-05 read, and 20 epochs of it cost a third of the run. 2 epochs keep every code
# path (its checkpoint, 04's four-way table and require_beat_control) at a tenth of the cost.
SAMPLE_RUN_OVERRIDES = ("02:control_epochs=2",)
# 01-03 make the model (the prepared file and checkpoints/sample/finetune/best.pt); 04 and 05 evaluate and explore it.
# The run leaves `model_ready` beside it between the two, so the tests of the model alone (own data, transfer) start
# while 04 and 05 still run. The same notebooks, parameters and root as one `make pipeline`; the log has two reports.
MODEL_STEPS, REST_STEPS = ("01", "02", "03"), ("04", "05")
STARTED = "sample_project.started"   # left in the shared base temp folder by the worker that starts the pipeline


def paths(base: Path) -> tuple[Path, Path, Path]:
    """(home, project root, lock file) of the shared run under a test run's base temp folder."""
    home = base / "sample_project"
    return home, home / "project", base / "sample_project.lock"


def run_locked(base: Path) -> Path:
    """Run the sample profile under the lock unless a run already finished; -> the project root.

    Raises RuntimeError with the log's tail when this run or an earlier one of this test run failed.
    """
    from conftest import fresh_project, project_at
    from depthlib.notebook.pipeline import make_plan, run

    home, root, lock_path = paths(base)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "done").is_file():
            return root
        if (home / "failed").is_file():
            raise RuntimeError("the shared sample pipeline failed (log in "
                               f"{root / 'pipeline.log'}):\n{(home / 'failed').read_text()[-4000:]}")
        shutil.rmtree(home, ignore_errors=True)
        fresh_project(root)
        log = io.StringIO()
        try:
            with project_at(root), contextlib.redirect_stdout(log):
                for steps in (MODEL_STEPS, REST_STEPS):
                    sets = [o for o in SAMPLE_RUN_OVERRIDES if o.split(":")[0] in steps]
                    run(make_plan("sample", only=list(steps), overrides=sets), progress=False)
                    if steps == MODEL_STEPS:
                        (home / "model_ready").write_text("")
        except BaseException:
            (root / "pipeline.log").write_text(log.getvalue())
            (home / "failed").write_text(log.getvalue()[-4000:] + "\n" + traceback.format_exc())
            raise
        (root / "pipeline.log").write_text(log.getvalue())
        (home / "done").write_text("")
    return root


def wait_model(base: Path, *, start_grace_s: float = 60.0) -> Path:
    """The project root once the shared run has made its model (01-03 done; 04 and 05 may still be running).

    Waits on the run that holds the lock; runs the whole pipeline here when none does (none was started, or the one
    started in the background has not taken the lock within `start_grace_s`). Raises RuntimeError as run_locked.
    """
    home, root, lock_path = paths(base)
    t0 = time.monotonic()
    while True:
        if (home / "model_ready").is_file() or (home / "done").is_file():
            return root
        if (home / "failed").is_file():
            return run_locked(base)                     # raises with the log
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:                     # running: wait for its model
                time.sleep(0.5)
                continue
            fcntl.flock(lock, fcntl.LOCK_UN)
        if not (base / STARTED).is_file() or time.monotonic() - t0 > start_grace_s:
            return run_locked(base)
        time.sleep(0.5)                                 # the background run is starting: it takes the lock first


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        run_locked(Path(sys.argv[1]))
    except Exception:          # the waiting tests report it, with the log
        sys.exit(1)
