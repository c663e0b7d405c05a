"""Faults: SIGKILL mid-epoch + resume, NaN/Inf loss, a failed checkpoint write, deterministic mode."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_helpers import KILLABLE, Recorder, SynthDepth, cfg, on_device, tiny_model, weights
from depthlib.core.errors import CheckpointError
from depthlib.models.checkpoint import load_checkpoint
from depthlib.training.callbacks import Callback, TrainState
from depthlib.training.train import NonFiniteLossError, fit

HELPER = Path(__file__).with_name("_train_helpers.py")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as the killable child runs: a tiny model gains nothing from two, and on 2 shared cores two
    threads spin against any other process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _steps(path: Path) -> list[int]:
    return [int(s) for s in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_epoch_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    log = out / "steps.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HELPER), "killable", str(out), "0.3"], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(_steps(log)) < 5:  # checkpoint_every=3: step 3 is on disk, step 6 not yet
            assert proc.poll() is None and time.monotonic() < deadline, "worker died or hung before step 5"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = _steps(log)[-1]
    ck = load_checkpoint(out / "last.pt")
    assert 0 < killed_at - ck["step"] <= KILLABLE["checkpoint_every"]
    assert ck["extra"]["batch_in_epoch"] == ck["step"]  # mid-epoch 1 (12 batches per epoch)

    log.rename(out / "steps_before_kill.txt")
    subprocess.run([sys.executable, str(HELPER), "killable", str(out), "0"], env=env, check=True, timeout=300)
    after = _steps(log)
    assert after[0] == ck["step"] + 1 and after[-1] == 24  # 2 epochs x 12 steps, none repeated or lost
    assert after == list(range(ck["step"] + 1, 25))

    ref = tiny_model()
    fit(ref, SynthDepth(24), SynthDepth(4, seed=1), cfg(tmp_path / "ref", **KILLABLE))
    resumed = load_checkpoint(out / "last.pt")["model"]
    for k, v in weights(ref).items():  # the killed-and-resumed run ends where an unbroken run does
        torch.testing.assert_close(resumed[k], v, rtol=1e-5, atol=1e-6, msg=k)


class _PoisonAfter(SynthDepth):
    """Samples turn to NaN (or Inf) images after `good` loads."""

    def __init__(self, good: int, value: float) -> None:
        super().__init__(16)
        self.good, self.value, self.loads = good, value, 0

    def __getitem__(self, i: int) -> dict:
        self.loads += 1
        s = super().__getitem__(i)
        if self.loads > self.good:
            s = {**s, "image": torch.full_like(s["image"], self.value)}
        return s


class _HashLast(Callback):
    def __init__(self) -> None:
        self.digest: dict[int, str] = {}

    def on_step_end(self, state: TrainState) -> None:
        p = state.out_dir / "last.pt"
        if p.exists():
            self.digest[state.step] = hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path, value):
    data = _PoisonAfter(good=10, value=value)  # batch 2: steps 1-5 clean, step 6 poisoned
    spy = _HashLast()
    with pytest.raises(NonFiniteLossError, match=r"at step 6 \(epoch 1, batch 6\).*step 4\) is untouched"):
        fit(tiny_model(), data, None, cfg(tmp_path, checkpoint_every=2), [spy])
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 4 and all(torch.isfinite(v).all() for v in ck["model"].values())
    assert hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest() == spy.digest[5]


def test_failed_checkpoint_write_leaves_previous_loadable(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def disk_full(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the second save: write a little, then the disk is full
            f.write(b"\x80partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left.*previous file there is intact"):
        fit(tiny_model(), SynthDepth(12), None, cfg(tmp_path, checkpoint_every=2))
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 2 and ck["extra"]["batch_in_epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_deterministic_mode_same_seed_same_losses(tmp_path):
    def losses(seed: int, name: str) -> list[float]:
        rec = Recorder()
        kw = dict(deterministic=True, seed=seed, gpu_augment=True)
        fit(tiny_model(), on_device(SynthDepth(8, holes=True)), None, cfg(tmp_path / name, **kw), [rec])
        return [r[1] for r in rec.rows]

    first = losses(3, "a")
    assert len(first) == 4 and first == losses(3, "b")  # bit-identical
    assert first != losses(4, "c")  # the seed matters (data order and augmentation)
    assert not torch.are_deterministic_algorithms_enabled()  # fit restores the global setting
