"""Resume keeps the run it resumes: the settings it refuses to change, the LR schedule's length, the loader's draws."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from _train_helpers import Recorder, SynthDepth, cfg, tiny_model
from depthlib.core.errors import ConfigError
from depthlib.models.checkpoint import load_checkpoint
from depthlib.training import train
from depthlib.training.callbacks import Callback, TrainState
from depthlib.training.train import fit
from depthlib.training.train_setup import lr_factor


class GroupRates(Callback):
    """Records every parameter group's lr after each optimiser step."""

    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def on_step_end(self, state: TrainState) -> None:
        self.rows.append([g["lr"] for g in state.optimizer.param_groups])


@pytest.mark.parametrize("new", [0.5, 1.0])
def test_resume_refuses_a_changed_encoder_lr_mult(tmp_path, new):
    # 0.1 -> 0.5 resumed with the encoder at the old rate (the optimiser state restores it); 0.1 -> 1.0 (one
    # parameter group instead of two) failed in torch's load_state_dict with a bare ValueError.
    data, run = SynthDepth(4), tmp_path / "run"
    kw = dict(epochs=2, scheduler="none", resume=True)
    fit(tiny_model(), data, None, cfg(run, max_steps=1, encoder_lr_mult=0.1, **kw))
    with pytest.raises(ConfigError, match=rf"different run \(encoder_lr_mult: 0.1 there, {new} now\)\. "
                                          r"Fix: resume=False .*or use another out_dir"):
        fit(tiny_model(), data, None, cfg(run, encoder_lr_mult=new, **kw))
    rates = GroupRates()
    fit(tiny_model(), data, None, cfg(run, encoder_lr_mult=0.1, **kw), [rates])  # the same setting resumes
    assert rates.rows == [pytest.approx([1e-3, 1e-4])] * 3  # steps 2-4: decoder at lr, encoder at 0.1 x lr


def test_more_epochs_are_refused_where_they_would_relay_the_lr_schedule(tmp_path, capsys):
    # A finished 2-epoch cosine run resumed with epochs=4 restarted at half its base rate: the schedule was laid
    # again over 8 steps, and step 4 of 8 is its middle.
    data, run = SynthDepth(4), tmp_path / "run"  # 2 steps an epoch
    fit(tiny_model(), data, None, cfg(run, epochs=2))
    with pytest.raises(ConfigError, match=r"last.pt: its LR schedule \(cosine\) spans 4 optimiser steps \(2 epochs x 2\); "
                                          r"epochs=4 makes it 8 \(4 x 2\), which would move the lr after step 4 from "
                                          r"0.00e\+00 to 5.00e-04\. Fix: epochs=2 .*init_from=.*last.pt in a new out_dir"
                                          r".*resume=False"):
        fit(tiny_model(), data, None, cfg(run, epochs=4, resume=True))
    assert load_checkpoint(run / "last.pt")["extra"]["schedule_steps"] == 4
    # Decays every 3 steps whatever the run's length: more epochs continue the same curve.
    flat, rec = dict(scheduler="step", lr_step_size=3, lr_gamma=0.5), Recorder()
    fit(tiny_model(), data, None, cfg(tmp_path / "flat", epochs=1, **flat))
    capsys.readouterr()
    fit(tiny_model(), data, None, cfg(tmp_path / "flat", epochs=3, resume=True, **flat), [rec])
    assert [r[0] for r in rec.rows] == [3, 4, 5, 6] and "resumed from" in capsys.readouterr().out
    assert [r[2] for r in rec.rows] == pytest.approx([5e-4, 5e-4, 5e-4, 2.5e-4])
    assert load_checkpoint(tmp_path / "flat" / "last.pt")["extra"]["schedule_steps"] == 6


def test_max_steps_pauses_a_run_on_its_whole_schedule_and_says_so(tmp_path, capsys):
    # max_steps ends a session, not the run: the LR schedule spans `epochs`, so resuming continues its curve (train_cli
    # and bench_scale resume runs that max_steps stopped). Stopping there left the lr mid-curve without a word.
    data, whole, first, rest = SynthDepth(4), Recorder(), Recorder(), Recorder()
    fit(tiny_model(), data, None, cfg(tmp_path / "a", epochs=2), [whole])
    capsys.readouterr()
    h = fit(tiny_model(), data, None, cfg(tmp_path / "b", epochs=2, max_steps=3, resume=True), [first])
    out = capsys.readouterr().out
    lr3 = 1e-3 * lr_factor(3, 4, cfg(tmp_path))
    assert h.stopped_early == "max_steps" and first.rows[-1][2] == pytest.approx(lr3)
    assert (f"[depthlib notice] max_steps=3 paused the run at step 3 of its LR schedule's 4 (lr {lr3:.2e} now, "
            "0.00e+00 at its end)") in out
    assert "resuming (max_steps=0 or larger) continues the curve" in out and "fewer epochs" in out
    fit(tiny_model(), data, None, cfg(tmp_path / "b", epochs=2, resume=True), [rest])
    assert [r[2] for r in first.rows + rest.rows] == pytest.approx([r[2] for r in whole.rows])


class Drawing(SynthDepth):
    """SynthDepth whose samples carry their index and one draw of torch's global generator, as augmentation draws."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**super().__getitem__(i), "index": torch.tensor(i), "draw": torch.rand(())}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1])
def test_a_resumed_epoch_draws_what_an_unbroken_run_draws(tmp_path, monkeypatch, workers):
    # Only the main process's RNG is in last.pt: a resumed run's loader workers were seeded as at the start and
    # replayed the first epoch's augmentation draws.
    seen: list[tuple[int, float]] = []
    real = train.batch_to

    def recording(batch, *a, **k):
        seen.extend(zip(batch["index"].tolist(), batch["draw"].tolist()))
        return real(batch, *a, **k)

    monkeypatch.setattr(train, "batch_to", recording)
    data, kw = Drawing(8), dict(epochs=2, num_workers=workers, resume=True)  # 4 steps an epoch
    fit(tiny_model(), data, None, cfg(tmp_path / "a", **kw))
    unbroken = seen[:]
    first, second = dict(unbroken[:8]), dict(unbroken[8:])
    assert sorted(first) == sorted(second) == list(range(8))
    assert all(first[i] != second[i] for i in range(8))  # each epoch draws anew
    for stop in (4, 3):  # paused at the end of epoch 1, and inside it
        seen.clear()
        fit(tiny_model(), data, None, cfg(tmp_path / f"b{stop}", max_steps=stop, **kw))
        fit(tiny_model(), data, None, cfg(tmp_path / f"b{stop}", **kw))
        assert seen == unbroken, f"paused at step {stop}"


class _Capture:
    """A capture of n frames (32x32, two scenes), its content set by `seed`: another seed is another capture."""

    path = "synthetic://capture"

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        import numpy as np

        from depthlib.data.frame import Frame

        rng = np.random.default_rng([self.seed, i])
        rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        depth = (1.0 + 3.0 * rng.random((32, 32))).astype(np.float32)
        return Frame(rgb, depth, np.ones((32, 32), bool), f"s{i % 2}/f{i}", f"s{i % 2}")

    @property
    def names(self) -> list[str]:
        return [f"s{i % 2}/f{i}" for i in range(self.n)]

    @property
    def scenes(self) -> list[str]:
        return [f"s{i % 2}" for i in range(self.n)]


def _prepare(path, n: int, seed: int) -> dict[str, Any]:
    """01 on a capture: the prepared file rewritten in place (overwrite=True, as 01's default) -> 03's datasets."""
    from depthlib.core.config import DataConfig
    from depthlib.data.prepared_write import write_prepared
    from depthlib.training.train_setup import training_sets

    write_prepared(_Capture(n, seed), path, split=["val" if i == 0 else "train" for i in range(n)], overwrite=True,
                   progress=False)
    return training_sets(str(path), DataConfig(image_size=(32, 32), border_crop="none"))


@pytest.mark.parametrize("frames", [5, 7], ids=["same-count", "other-count"])
def test_a_resume_over_another_capture_is_refused_before_anything_is_written(tmp_path, capsys, frames):
    # Issue 25 trial: 01 on a second capture rewrote own.h5, then 03 said "this run already finished its 5 epochs ...
    # nothing to train" and 04 evaluated the first capture's model (same frame count); with another count it failed
    # on the LR schedule's length, naming neither capture, and history.csv / history.json were rewritten.
    prepared, run = tmp_path / "own.h5", tmp_path / "finetune"
    first = _prepare(prepared, 5, seed=0)
    kw = dict(epochs=2, batch_size=2, resume=True)
    fit(tiny_model(), first["train"], first["val"], cfg(run, **kw))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}
    capsys.readouterr()
    again = _prepare(prepared, 5, seed=0)  # the same frames prepared again: the same run, which resumes (finished)
    fit(tiny_model(), again["train"], again["val"], cfg(run, **kw))
    assert "already finished" in capsys.readouterr().out
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())} == before  # nothing rewritten
    second = _prepare(prepared, frames, seed=1)
    with pytest.raises(ConfigError, match=rf"last.pt: was trained on other train frames than this run's: 4 frames of "
                                          rf".*own.h5 \(split train, content [0-9a-f]{{12}}\) there, {frames - 1} frames "
                                          r"of .*own.h5 \(split train, content [0-9a-f]{12}\) now \(the prepared file was "
                                          r"rewritten since, e.g. by 01 on another capture\).*Fix: resume=False .*"
                                          r"--fresh\), or another out_dir for this data\.") as e:
        fit(tiny_model(), second["train"], second["val"], cfg(run, **kw))
    assert "already finished" not in capsys.readouterr().out and "LR schedule" not in str(e.value)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())} == before
    h = fit(tiny_model(), second["train"], second["val"], cfg(run, **{**kw, "resume": False}))  # the fix: --fresh
    assert len(h) == 2 and load_checkpoint(run / "last.pt")["extra"]["data_identity"]["train"]["frames"] == frames - 1
