"""InputAdapter replays the training crop and resolution on whole frames; load_for_inference builds it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthlib.checkpoint import save_checkpoint
from depthlib.config import TrainConfig, to_dict
from depthlib.errors import CheckpointError
from depthlib.models import create_model
from depthlib.models.adapter import InputAdapter, load_for_inference
from depthlib.predict import predict


def test_adapter_equals_manual_crop_resize_and_placement():
    torch.manual_seed(0)
    m = create_model("unet", width=4, depth=2, head="log").eval()
    a = InputAdapter(m, input_size=(32, 48), border=(6, 6, 8, 8))
    x = torch.rand(2, 3, 96, 128)
    inner = F.interpolate(x[..., 6:90, 8:120], size=(32, 48), mode="bilinear", antialias=True, align_corners=False)
    raw = m(inner)  # [2, 1, 16, 24] for the 84x112 region at stride 2 -> 42x56
    expect = F.pad(F.interpolate(raw, size=(42, 56), mode="bilinear", align_corners=False), (4, 4, 3, 3), mode="replicate")
    out = a(x)
    assert out.shape == (2, 1, 48, 64)
    assert torch.allclose(out, expect)
    d = predict(a, x, flip_average=False)
    assert d.shape == (2, 1, 96, 128) and torch.isfinite(d).all()


def test_load_for_inference_uses_the_recorded_settings(tmp_path):
    m = create_model("unet", width=4, depth=2)
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, model=m)
    assert not isinstance(load_for_inference(plain), InputAdapter)
    rec = tmp_path / "rec.pt"
    save_checkpoint(rec, model=m, extra={"train_config": to_dict(TrainConfig(data={"image_size": [64, 96], "border_crop": "nyu"}))})
    a = load_for_inference(rec)
    assert isinstance(a, InputAdapter) and a.input_size == (64, 96) and a.border == (6, 6, 7, 8)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model=m, extra={"train_config": to_dict(TrainConfig(data={"image_size": [64, 96], "border_crop": "detect"}))})
    with pytest.raises(CheckpointError, match="border_crop='detect'"):
        load_for_inference(bad)
