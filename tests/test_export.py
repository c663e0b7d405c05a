"""ONNX export: ONNX Runtime gives depthlib.predict's depth within 1e-4 m on real frames and odd sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.checkpoint import load_model
from depthlib.cli import main
from depthlib.errors import ConfigError
from depthlib.export import ExportError, check_onnx, export_onnx, run_onnx, training_size
from depthlib.predict import predict

ROOT = Path(__file__).resolve().parent.parent
_DIRS = [ROOT / "data" / "sample" / "data" / "nyu2_test",
         ROOT.parent / "shared" / "data" / "nyu_samples" / "densedepth_nyu2_test" / "data" / "nyu2_test"]


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Two real 640x480 NYU test frames as float[2,3,480,640] in [0,1]."""
    for d in _DIRS:
        files = sorted(d.glob("*_colors.png"))[:2]
        if len(files) == 2:
            rgb = np.stack([np.array(Image.open(f).convert("RGB")) for f in files])
            return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    pytest.skip(f"no NYU sample frames in {[str(d) for d in _DIRS]}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, model.onnx) written through the CLI, which also runs its own ONNX Runtime check."""
    d = tmp_path_factory.mktemp("onnx")
    ck = tiny_checkpoint(d / "tiny.pt")
    assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(d / "model.onnx"),
                 "--height", "64", "--width", "64"]) == 0
    return ck, d / "model.onnx"


@pytest.mark.slow  # one torch.export-based ONNX export: ~10-30 s on 2 busy cores
def test_onnx_matches_pytorch_on_sample_frames(exported: tuple[Path, Path], frames: torch.Tensor) -> None:
    ck, onnx_path = exported
    model = load_model(ck)
    # Exported at 64x64, run at 480x640 with a batch of 2: batch, H and W are dynamic.
    got = run_onnx(onnx_path, frames)
    assert got.shape == (2, 1, 480, 640)
    assert 0.1 <= float(got.min()) and float(got.max()) <= 10.0 and float(got.std()) > 0.01
    want = predict(model, frames, flip_average=False)
    assert float((got - want).abs().max()) <= 1e-4
    assert check_onnx(model, onnx_path, frames) <= 1e-4


@pytest.mark.slow  # one torch.export-based ONNX export: ~10-30 s on 2 busy cores
def test_onnx_on_an_arbitrary_size_by_padding(exported: tuple[Path, Path], frames: torch.Tensor) -> None:
    ck, onnx_path = exported
    model = load_model(ck)
    x = F.interpolate(frames[:1], size=(250, 333), mode="bilinear", align_corners=False, antialias=True)
    m = model.input_multiple
    padded = F.pad(x, (0, -333 % m, 0, -250 % m), mode="replicate")  # the recipe the README gives deployers
    got = run_onnx(onnx_path, padded)[..., :250, :333]
    want = predict(model, x, flip_average=False)
    assert got.shape == want.shape == (1, 1, 250, 333)
    assert float((got - want).abs().max()) <= 1e-4


@pytest.mark.slow  # one torch.export-based ONNX export: ~10-30 s on 2 busy cores
def test_check_onnx_catches_a_different_model(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, onnx_path = exported
    other = load_model(tiny_checkpoint(tmp_path / "other.pt", seed=1))
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx(other, onnx_path, torch.rand(1, 3, 32, 32))


def test_export_refuses_sizes_off_the_multiple(tmp_path: Path) -> None:
    model = load_model(tiny_checkpoint(tmp_path / "t.pt"))
    with pytest.raises(ConfigError, match="not a positive multiple of 4"):
        export_onnx(model, tmp_path / "x.onnx", height=30, width=64)
    assert not list(tmp_path.glob("*.onnx"))
    with pytest.raises(ExportError, match="no such ONNX file"):
        run_onnx(tmp_path / "missing.onnx", torch.rand(1, 3, 8, 8))


def test_training_size_comes_from_the_checkpoint(tmp_path: Path) -> None:
    assert training_size(tiny_checkpoint(tmp_path / "a.pt")) is None
    ck = tiny_checkpoint(tmp_path / "b.pt", data={"image_size": [192, 256], "border_crop": "nyu"})
    assert training_size(ck) == (192, 256)


@pytest.mark.slow
def test_flip_averaged_fixed_size_export(tmp_path: Path, frames: torch.Tensor) -> None:
    model = load_model(tiny_checkpoint(tmp_path / "t.pt"))
    x = F.interpolate(frames[:1], size=(64, 96), mode="bilinear", align_corners=False, antialias=True)
    path = export_onnx(model, tmp_path / "flip.onnx", height=64, width=96, flip_average=True, dynamic=False)
    assert check_onnx(model, path, x, flip_average=True) <= 1e-4
    assert float((run_onnx(path, x) - predict(model, x, flip_average=False)).abs().max()) > 1e-4
