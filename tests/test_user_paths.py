"""The paths a user takes right after the demo (issue 25): a one-epoch run, Ctrl-C, the spellings --dry-run prints,
a profile's skip, predict on a folder as found, a capture's depth unit and its split. Each starts where the user
starts: the command line, the shipped profiles and notebooks, the embedded sample frames."""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from _own_data import resized, write_tum_folder
from _tiny_checkpoint import tiny_checkpoint
from conftest import ROOT, SAMPLE
from depthlib.core.errors import DataError
from depthlib.core.paths import project_root
from depthlib.data import open_source
from depthlib.models.checkpoint import load_checkpoint
from depthlib.notebook import workbook
from depthlib.notebook.pipeline import main, make_plan, notebook_parameters

INTERRUPTED = "[pipeline] interrupted: re-run the same command to resume"


def _project(tmp_path: Path, notebooks: Path = ROOT / "notebooks") -> Path:
    """An empty project root: `notebooks`, the checkout's code and embedded sample, no outputs of earlier runs."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    for part, target in (("notebooks", notebooks), ("depthlib", ROOT / "depthlib"), ("data/sample", SAMPLE)):
        (root / part).symlink_to(target, target_is_directory=True)
    return root


def _pipeline(root: Path, *args: str, **popen: object) -> subprocess.Popen:
    """`python -m depthlib pipeline ARGS` started in `root` (its project root), output as text pipes."""
    env = {**os.environ, "DEPTH_WORKBOOK_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "depthlib", "pipeline", *args], cwd=root, env=env, text=True, **popen)


def _finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _waiting_notebook(folder: Path) -> Path:
    """notebooks/01_data_prep.ipynb that prints a line and a notice, writes its pid to `ready`, then waits for `go`."""
    import nbformat

    params = nbformat.v4.new_code_cell('ready: str = ""\ngo: str = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os, pathlib, time\nfrom depthlib.core.notices import notice\n\n"
        "print('epoch 14/60: done')\nnotice('resumed from last.pt: epoch 14 of 60')\n"
        "pathlib.Path(ready).write_text(str(os.getpid()))\n"
        "while go and not pathlib.Path(go).exists():\n    time.sleep(0.1)")
    nb = nbformat.v4.new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "01_data_prep.ipynb")
    return folder


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.1)


def _gone(pid: int, timeout: float = 20) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


# --set 02:epochs=1 --fresh: the loss check compared the only epoch with itself, after best.pt had been replaced

def _prepare_ci(root: Path) -> None:
    """data/prepared/ci.h5 as 01 writes it for the ci profile (the sample frames, split by the sample's file)."""
    prep = make_plan("ci", only=["01"]).steps["01_data_prep"]
    src = open_source(prep["source"], str(SAMPLE), **prep["source_options"])
    labels = workbook.split_labels(src, split_file=str(SAMPLE / "splits.csv"))
    workbook.prepare(src, str(root / prep["prepared_path"]), labels=labels)


@pytest.mark.slow
def test_02_trains_one_epoch_and_fresh_keeps_the_old_model_until_training_replaces_it(tmp_path):
    root = _project(tmp_path)
    _prepare_ci(root)
    out = root / "checkpoints" / "ci" / "train"
    old = tiny_checkpoint(out / "best.pt").read_bytes()      # an earlier run's model
    args = ["--profile", "ci", "--only", "02", "--fresh", "--set", "02:epochs=1", "--set", "02:control_out_dir=''"]

    rc, _, err = _finished(_pipeline(root, *args, "--set", "02:prepared_path='data/prepared/none.h5'"))
    assert rc == 1 and "02_train FAILED" in err, err[-2000:]   # before training started: nothing replaced
    assert sorted(p.name for p in out.iterdir()) == ["best.pt"] and (out / "best.pt").read_bytes() == old

    rc, stdout, err = _finished(_pipeline(root, *args))
    assert rc == 0, err[-3000:]
    best = load_checkpoint(out / "best.pt")
    assert best["arch"] == "densedepth" and best["epoch"] == 1
    assert "  training loss not checked: a run of one epoch has no earlier epoch to compare with" in stdout, stdout


def test_the_loss_check_compares_epochs_of_training_only(capsys):
    from depthlib.training.history import History

    start = {"epoch": 0, "val_loss": 1.0}     # fit's epoch 0: the starting weights, validated before any step
    assert workbook.training_loss_fell(History(epochs=[start, {"epoch": 1, "train_loss": 0.5}]))
    assert "a run of one epoch has no earlier epoch" in capsys.readouterr().out
    assert workbook.training_loss_fell(History(epochs=[start, {"train_loss": 0.5}, {"train_loss": 0.4}]))
    assert not workbook.training_loss_fell(History(epochs=[{"train_loss": 0.5}, {"train_loss": 0.6}]))


# Ctrl-C during a notebook: a 17-frame papermill/asyncio traceback and no line of the project's own

@pytest.mark.slow
def test_ctrl_c_during_a_notebook_prints_one_line_and_exits_130(tmp_path):
    root = _project(tmp_path, _waiting_notebook(tmp_path / "notebooks"))
    ready, profile = tmp_path / "ready", tmp_path / "wait.toml"
    profile.write_text(f'[01_data_prep]\nready = "{ready}"\ngo = "{tmp_path / "never"}"\n')
    proc = _pipeline(root, "--profile", str(profile), "--run-name", "wait", start_new_session=True)
    try:
        _wait_for(ready, proc)
        os.killpg(proc.pid, signal.SIGINT)          # a terminal's Ctrl-C: the foreground process group
        rc, out, err = _finished(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, (rc, err)
    assert err.strip().splitlines()[-1] == INTERRUPTED and err.count("interrupted") == 1, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err
    assert _gone(int(ready.read_text())), "the notebook's kernel outlived the pipeline"


# a Ctrl-C lost in papermill's event loop (once in a full `make test`): the run went on waiting on its cell

_SWALLOWS = """
import os, signal, subprocess, sys, time
from depthlib.notebook import pipeline_kernel
from depthlib.notebook.pipeline import CtrlC

class Kernel:                    # what kill_kernels reads of a kernel manager: its provisioner's process
    pass

km = Kernel()
km.provisioner = Kernel()
km.provisioner.process = subprocess.Popen(["sleep", "60"], start_new_session=True, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
pipeline_kernel._LIVE.add(km)
print("kernel", km.provisioner.process.pid, flush=True)
signal.signal(signal.SIGINT, CtrlC("[pipeline] interrupted: re-run", grace_s=0.3, retries=2))
t0, sent = time.monotonic(), False
while time.monotonic() - t0 < 30:
    try:
        if not sent:
            sent = True
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.02)
    except KeyboardInterrupt:    # what the event loop did once in a while: caught it and went on
        print("swallowed", flush=True)
print("still running after 30 s", flush=True)
"""


def test_a_swallowed_ctrl_c_is_raised_again_then_the_run_exits_130_killing_its_kernel():
    res = subprocess.run([sys.executable, "-c", _SWALLOWS], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 130, (res.returncode, res.stdout, res.stderr)
    lines = res.stdout.split()
    assert res.stdout.count("swallowed") == 3, res.stdout      # the signal, then raised again twice
    assert res.stderr.strip().splitlines()[-1] == "[pipeline] interrupted: re-run", res.stderr
    assert _gone(int(lines[lines.index("kernel") + 1]), timeout=5), "the kernel outlived the pipeline"


# --set 03:freeze_encoder_bn=true, the spelling the profiles and --dry-run print, was refused

def test_set_takes_values_as_dry_run_prints_them(capsys):
    for profile in ("ci", "own"):
        assert main(["--profile", profile, "--dry-run"]) == 0
        steps = json.loads(capsys.readouterr().out)
        overrides = [f"{nb[:2]}:{k}={json.dumps(v)}" for nb, params in steps.items() for k, v in params.items()]
        assert make_plan(profile, overrides=overrides).steps == steps
    assert any(o.startswith("03:freeze_encoder_bn=") for o in overrides)     # own's, as --dry-run printed it
    for text, value in (("true", True), ("false", False), ("True", True)):
        assert make_plan("own", overrides=[f"03:freeze_encoder_bn={text}"]).steps["03_finetune"]["freeze_encoder_bn"] is value
    assert main(["--profile", "own", "--set", "03:freeze_encoder_bn=yes", "--dry-run"]) == 2
    assert "'freeze_encoder_bn' must be bool" in capsys.readouterr().err


# a --set for a notebook the profile skips blamed --only

def test_a_notebook_the_profile_skips_is_named_with_the_skip(capsys):
    assert main(["--profile", "own", "--set", "02:epochs=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--set 02:epochs=1: profile 'own' skips 02_train ([pipeline] skip" in err and "--only" not in err, err
    assert main(["--profile", "own", "--only", "02", "--dry-run"]) == 2      # a run of nothing at all
    assert "profile 'own' skips 02_train" in capsys.readouterr().err
    assert main(["--profile", "own", "--only", "02", "03", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert list(json.loads(out)) == ["03_finetune"] and "profile 'own' skips 02_train" in err


def test_a_profile_given_as_a_toml_path_runs_into_runs_its_name(tmp_path):
    profile = tmp_path / "mine.toml"
    profile.write_text("[02_train]\nepochs = 2\n")
    assert make_plan(str(profile)).run_dir == project_root() / "runs" / "mine"     # it was the .toml file itself


# a notebook's lines and the resume notice appeared only when the notebook finished

def _lines(stream) -> "queue.Queue[str]":
    """The lines of a text stream, as they come, read by a thread."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.mark.slow
def test_a_notebooks_lines_and_notices_stream_while_it_runs_and_quiet_silences_them(tmp_path):
    root = _project(tmp_path, _waiting_notebook(tmp_path / "notebooks"))
    ready, go, profile = tmp_path / "ready", tmp_path / "go", tmp_path / "wait.toml"
    profile.write_text(f'[01_data_prep]\nready = "{ready}"\ngo = "{go}"\n')
    proc = _pipeline(root, "--profile", str(profile), "--run-name", "wait", stderr=subprocess.DEVNULL)
    try:
        lines, seen = _lines(proc.stdout), []
        _wait_for(ready, proc)
        t0 = time.monotonic()                 # the notebook now waits for `go`: what it printed is shown already
        while "[pipeline] 01_data_prep: resumed from last.pt: epoch 14 of 60" not in seen:
            assert time.monotonic() - t0 < 30, f"not streamed while the notebook runs: {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert "  epoch 14/60: done" in seen
        go.touch()
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        while not lines.empty():
            seen.append(lines.get())
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sum("epoch 14 of 60" in ln for ln in seen) == 1, seen        # not repeated when the notebook ends

    profile.write_text(f'[01_data_prep]\nready = "{tmp_path / "ready2"}"\n')
    rc, out, err = _finished(_pipeline(root, "--profile", str(profile), "--run-name", "wait", "--quiet"))
    assert rc == 0, err
    assert "epoch 14/60" not in out and out.count("resumed from last.pt: epoch 14 of 60") == 1, out   # after it ran


# predict: a 7x7 image stopped it unnamed, a zero focal length gave a cloud of NaN points, a folder's other entries
# were skipped without a word

def test_predict_names_a_too_small_image_refuses_a_zero_focal_length_and_counts_what_it_skips(tmp_path, capsys):
    from depthlib.cli import main as cli

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    frame = Image.open(SAMPLE / "data" / "nyu2_test" / "00000_colors.png").convert("RGB")
    frame.resize((64, 48)).save(photos / "a.png")
    frame.resize((7, 7)).save(photos / "b.png")
    frame.resize((64, 48)).save(photos / "c.jpg")
    (photos / "notes.txt").write_text("taken on Tuesday")

    assert cli(["predict", str(photos), "--checkpoint", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert f"{photos / 'b.png'}: its 7x7 pixels (WxH) are too small; the minimum is 8x8" in err, err
    assert "skipped 2 entries that are not images: notes.txt, sub/" in err, err

    for k in ("0,500,320,240", "500,-1,320,240", "nan,500,320,240"):
        assert cli(["predict", str(photos / "a.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "ply"),
                    "--ply", "--intrinsics", k]) == 2
        err = capsys.readouterr().err
        assert f"--intrinsics {k}: the focal lengths FX, FY must be positive pixels" in err, err
    assert not (tmp_path / "ply").exists()


# the missing depth_scale message gave only the Python spelling, not the TOML of the profile the README edits

def test_a_capture_without_depth_scale_is_told_both_spellings(tmp_path):
    dd = open_source("densedepth", str(SAMPLE), split="test")
    write_tum_folder(tmp_path / "capture", [("room", *resized(dd[i], (64, 48))) for i in range(2)])
    with pytest.raises(DataError) as e:
        open_source("pairs", str(tmp_path / "capture"), files="*/associations.txt")
    msg = str(e.value)
    assert "in the profile's [01_data_prep], source_options = { depth_scale = 0.001 }" in msg, msg   # own.toml's line
    assert "source_options={'depth_scale': 0.001}" in msg and "never read in a guessed unit" in msg, msg


# issue 25 item 5: the hash split of 8 scenes sent 62 % of the frames to test without a word

def _sample_as_capture(folder: Path) -> None:
    """The 34 sample frames as a TUM capture, a folder per sample scene (its own name), 64x48, 1/5000 m PNGs."""
    with (SAMPLE / "splits.csv").open() as f:
        scene = {r["name"]: r["scene"] for r in csv.DictReader(f)}
    dd = open_source("densedepth", str(SAMPLE), split="test")
    write_tum_folder(folder, [(scene[dd.names[i]], *resized(dd[i], (64, 48))) for i in range(len(dd))])


@pytest.mark.slow
def test_own_profile_refuses_a_hash_split_that_sends_most_frames_to_test(tmp_path):
    root = _project(tmp_path)
    _sample_as_capture(root / "data" / "own")
    options = {"depth_scale": 0.0002, "files": "*/associations.txt"}
    sets = [f"01:source_options={json.dumps(options)}", "01:val_frac=0.2", "01:test_frac=0.2", "01:seed=0"]  # the trial's
    rc, _, err = _finished(_pipeline(root, "--profile", "own", "--only", "01", *(x for s in sets for x in ("--set", s))))
    assert rc == 1 and "01_data_prep FAILED" in err, err[-3000:]
    assert "the scene-hash split puts 21 of the 34 selected frames (62 %) in test (2 of 8 scenes)" in err, err[-3000:]
    for fix in ("split_file", "val_frac", "test_frac", "allow_uneven_split = true"):
        assert fix in err, fix
    assert not (root / "data" / "prepared" / "own.h5").exists()
    assert notebook_parameters(ROOT / "notebooks" / "01_data_prep.ipynb")["allow_uneven_split"] is False


def test_a_split_is_checked_on_the_frames_selected_and_can_be_accepted():
    src = open_source("densedepth", str(SAMPLE), split="test")
    hashed = workbook.split_labels(src, val_frac=0.2, test_frac=0.2, seed=0)
    everything = list(range(len(src)))
    with pytest.raises(DataError, match=r"62 %\) in test"):
        workbook.check_split(src, hashed, everything)
    assert workbook.check_split(src, hashed, everything, allow_uneven=True) == {"train": 9, "val": 4, "test": 21}
    filed = workbook.split_labels(src, split_file=str(SAMPLE / "splits.csv"))
    assert workbook.check_split(src, filed, everything, split_file="data/sample/splits.csv") == \
        {"train": 27, "val": 2, "test": 5}
    train_only, _ = workbook.select(src, scenes=sorted({s for s, k in zip(src.scenes, filed) if k == "train"}))
    with pytest.raises(DataError, match=r"no frames in val \(the selection keeps none of its scenes: run00045\)"):
        workbook.check_split(src, filed, train_only, split_file="data/sample/splits.csv")
    no_val = workbook.split_labels(src, val_frac=0.0, test_frac=0.0)
    with pytest.raises(DataError, match=r"no frames in val \(no scene is labelled so\)"):
        workbook.check_split(src, no_val, everything)
