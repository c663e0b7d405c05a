"""InputAdapter replays the training crop and resolution on whole frames; load_for_inference builds it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from depthlib.core.config import TrainConfig, to_dict
from depthlib.core.errors import CheckpointError, ConfigError
from depthlib.inference import load_for_inference
from depthlib.models import create_model
from depthlib.models.adapter import InputAdapter, place
from depthlib.models.checkpoint import save_checkpoint
from depthlib.models.predict import predict


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
    assert a.border_frame == (480, 640)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model=m, extra={"train_config": to_dict(TrainConfig(data={"image_size": [64, 96], "border_crop": "detect"}))})
    with pytest.raises(CheckpointError, match="border_crop='detect'"):
        load_for_inference(bad)


def test_border_crop_replays_only_on_the_frame_size_it_belongs_to():
    torch.manual_seed(0)
    m = create_model("unet", width=4, depth=2, head="log").eval()
    a = InputAdapter(m, input_size=(32, 48), border=(6, 6, 7, 8), border_frame=(480, 640))
    plain = InputAdapter(m, input_size=(32, 48))
    small = torch.rand(1, 3, 240, 320)  # not an NYU frame: no border to remove, resized whole
    assert torch.equal(a(small), plain(small))
    frame = torch.rand(1, 3, 480, 640)
    # the NYU frame: its border is cut as in training, the prediction placed over the window's exact span (the
    # placement is checked by hand in test_flip_crop)
    inner = F.interpolate(frame[..., 6:474, 7:632], size=(32, 48), mode="bilinear", antialias=True, align_corners=False)
    assert not torch.equal(a(frame), plain(frame))
    torch.testing.assert_close(a(frame), place(m(inner), (480, 640), (6, 6, 7, 8), 2))
    for h, w in ((5, 7), (1, 1)):  # tiny images: a clear refusal, never a crash inside torch
        with pytest.raises(ConfigError, match=rf"{w}x{h} pixels .* the minimum is 8x8"):
            predict(a, torch.rand(1, 3, h, w))
    assert predict(a, torch.rand(1, 3, 8, 9)).shape == (1, 1, 8, 9)


def test_the_networks_do_not_import_the_file_format_or_the_inference_path():
    """Inside depthlib.models, the networks never import the checkpoint file or predict / fastpath (those are built on
    them); depthlib.inference and everything else above models is checked by tests/test_layers.py."""
    root = Path(__file__).resolve().parent.parent / "depthlib" / "models"

    def imported(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    on_top = {"checkpoint", "predict", "fastpath"}
    for f in sorted(root.glob("*.py")):
        if f.stem in on_top | {"__init__", "registry"}:
            continue
        bad = {n for n in imported(f) if n.split(".")[-1] in on_top}
        assert not bad, f"{f.name} imports {bad}"
