"""Resume keeps the run it resumes: the settings it refuses to change, the LR schedule's length, the loader's draws."""

from __future__ import annotations

import pytest

from _train_helpers import SynthDepth, cfg, tiny_model
from depthlib.callbacks import Callback, TrainState
from depthlib.errors import ConfigError
from depthlib.train import fit


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
