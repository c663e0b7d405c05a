"""ONNX export: ONNX Runtime gives depthlib.predict's depth within 1e-4 m on real frames and odd sizes."""

from __future__ import annotations

import errno
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
    ck = tiny_checkpoint(d / "tiny.pt", data={"image_size": [64, 96], "border_crop": "nyu"})
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
def test_onnx_on_arbitrary_sizes_pads_and_crops_inside_the_graph(exported: tuple[Path, Path],
                                                                 frames: torch.Tensor) -> None:
    ck, onnx_path = exported
    model = load_model(ck)
    for h, w in ((250, 333), (61, 451), (8, 9)):  # none a multiple of the model's input_multiple (4)
        x = F.interpolate(frames[:1], size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        got = run_onnx(onnx_path, x)
        want = predict(model, x, flip_average=False)
        assert got.shape == want.shape == (1, 1, h, w)  # 451 stays 451
        assert float((got - want).abs().max()) <= 1e-4


@pytest.mark.slow  # reuses the export above
def test_onnx_metadata_states_units_input_and_training_preprocessing(exported: tuple[Path, Path]) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(exported[1])).metadata_props}
    assert meta["depthlib.units"] == "metres"
    assert "RGB" in meta["depthlib.input"] and "[0, 1]" in meta["depthlib.input"]
    assert "ImageNet" in meta["depthlib.input_normalisation"]
    assert meta["depthlib.training_image_size"] == "64x96" and meta["depthlib.training_border_crop"] == "nyu"
    assert "not in the graph" in meta["depthlib.preprocessing"] and "64x96" in meta["depthlib.preprocessing"]


@pytest.mark.slow  # one torch.export-based ONNX export: ~10-30 s on 2 busy cores
def test_check_onnx_catches_a_different_model(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, onnx_path = exported
    other = load_model(tiny_checkpoint(tmp_path / "other.pt", seed=1))
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx(other, onnx_path, torch.rand(1, 3, 32, 32))


def test_export_refuses_sizes_outside_the_graph_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = tiny_checkpoint(tmp_path / "t.pt")
    model = load_model(ck)
    with pytest.raises(ConfigError, match=r"export size 8192x64 \(HxW\) is outside 8\.\.4096 pixels"):
        export_onnx(model, tmp_path / "x.onnx", height=8192, width=64)
    assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(tmp_path / "y.onnx"), "--height", "8192"]) == 2
    err = capsys.readouterr().err
    assert "4096" in err and "\x1b" not in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.onnx"))
    with pytest.raises(ExportError, match="no such ONNX file"):
        run_onnx(tmp_path / "missing.onnx", torch.rand(1, 3, 8, 8))


def test_export_disk_full_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(tiny_checkpoint(tmp_path / "t.pt"))

    def disk_full(module, args, f, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", disk_full)
    with pytest.raises(ExportError, match=r"model\.onnx: could not be written \(No space left on device\)"):
        export_onnx(model, tmp_path / "out" / "model.onnx", height=32, width=32)
    assert not list((tmp_path / "out").iterdir())


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


@pytest.mark.slow
def test_cli_fixed_size_export_checks_with_its_own_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --no-dynamic was checked with a batch of 2 against its batch-1 graph: an ONNX Runtime traceback, every time,
    # and the file left behind.
    ck = tiny_checkpoint(tmp_path / "t.pt", data={"image_size": [64, 96], "border_crop": "nyu"})
    assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(tmp_path / "fixed.onnx"), "--no-dynamic"]) == 0
    out = capsys.readouterr()
    assert "ONNX Runtime matches PyTorch" in out.out and "fixed 1x3x64x96 input" in out.err
    assert run_onnx(tmp_path / "fixed.onnx", torch.rand(1, 3, 64, 96)).shape[0] == 1
