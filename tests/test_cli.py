"""`python -m depthlib predict`: depth PNGs in mm, colour PNGs, PLY point clouds, errors that name the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.checkpoint import load_model
from depthlib.cli import NYU_INTRINSICS, backproject, main, scaled_intrinsics
from depthlib.predict import predict

ROOT = Path(__file__).resolve().parent.parent
_REL = Path("data/nyu2_test/00000_colors.png")
_CANDIDATES = [ROOT / "data" / "sample" / _REL,
               ROOT.parent / "shared" / "data" / "nyu_samples" / "densedepth_nyu2_test" / _REL]


@pytest.fixture(scope="module")
def frame_png() -> Path:
    """A real 640x480 NYU test frame (embedded sample, else the shared copy)."""
    for p in _CANDIDATES:
        if p.is_file():
            return p
    pytest.skip(f"no NYU sample frame at {[str(c) for c in _CANDIDATES]}")


@pytest.fixture(scope="module")
def odd_png(frame_png: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample frame resized to 333x250: not a multiple of anything the model likes."""
    p = tmp_path_factory.mktemp("odd") / "odd.jpg"
    Image.open(frame_png).convert("RGB").resize((333, 250), Image.BILINEAR).save(p, quality=95)
    return p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _rgb_tensor(path: Path) -> torch.Tensor:
    rgb = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def _read_ply(path: Path) -> tuple[str, np.ndarray]:
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii")
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    return header, np.frombuffer(raw[end:], dtype=dtype)


def test_nyu_intrinsics_scale_with_the_image() -> None:
    assert scaled_intrinsics(480, 640) == pytest.approx(NYU_INTRINSICS)
    # Half size: focal lengths halve, the principal point scales about the pixel-centre offset -0.5.
    fx, fy, cx, cy = scaled_intrinsics(240, 320)
    assert (fx, fy) == pytest.approx((259.42895, 259.7348))
    assert (cx, cy) == pytest.approx(((325.5824 + 0.5) / 2 - 0.5, (253.7362 + 0.5) / 2 - 0.5))
    assert scaled_intrinsics(250, 333)[0] == pytest.approx(518.8579 * 333 / 640)


def test_backproject_by_hand() -> None:
    depth = np.zeros((30, 20), np.float32)
    depth[20, 10] = 2.0
    pts = backproject(depth, (100.0, 200.0, 5.0, 10.0))
    assert pts.shape == (30, 20, 3)
    # x = (u - cx) z / fx = 5 * 2 / 100, y = (v - cy) z / fy = 10 * 2 / 200.
    assert pts[20, 10] == pytest.approx([0.1, 0.1, 2.0])
    assert np.all(pts[0, 0] == 0)


def test_predict_writes_mm_png_colour_and_ply(frame_png: Path, odd_png: Path, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["predict", str(frame_png), str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--ply",
                 "--device", "cpu"]) == 0
    model = load_model(ckpt)
    for src, stem in ((frame_png, "00000_colors"), (odd_png, "odd")):
        w, h = Image.open(src).size
        png = Image.open(out / f"{stem}_depth.png")
        assert png.mode.startswith("I;16") and png.size == (w, h)
        mm = np.array(png).astype(np.float64)
        expect = predict(model, _rgb_tensor(src), flip_average=True)[0, 0].double().numpy() * 1000.0
        assert np.abs(mm - expect).max() <= 0.5 + 1e-3  # rounding to whole millimetres only
        assert mm.std() > 10.0  # the tiny model's depth varies; a constant image would hide bugs
        colour = Image.open(out / f"{stem}_depth_color.png")
        assert colour.mode == "RGB" and colour.size == (w, h)
        header, pts = _read_ply(out / f"{stem}.ply")
        assert f"element vertex {w * h}" in header and len(pts) == w * h
        fx, fy, cx, cy = scaled_intrinsics(h, w)
        v, u = h // 3, w - 5
        p = pts[v * w + u]
        z = mm[v, u] / 1000.0
        assert p["z"] == pytest.approx(z, abs=6e-4)
        assert p["x"] == pytest.approx((u - cx) * z / fx, abs=1e-3)
        assert p["y"] == pytest.approx((v - cy) * z / fy, abs=1e-3)
        rgb = np.array(Image.open(src).convert("RGB"))
        assert (p["r"], p["g"], p["b"]) == tuple(rgb[v, u])


def test_given_intrinsics_and_no_flip(odd_png: Path, ckpt: Path, tmp_path: Path) -> None:
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--ply",
                 "--intrinsics", "100,50,0,0", "--no-flip"]) == 0
    mm = np.array(Image.open(tmp_path / "odd_depth.png")).astype(np.float64)
    expect = predict(load_model(ckpt), _rgb_tensor(odd_png), flip_average=False)[0, 0].double().numpy() * 1000.0
    assert np.abs(mm - expect).max() <= 0.5 + 1e-3
    _, pts = _read_ply(tmp_path / "odd.ply")
    p = pts[7 * 333 + 10]
    assert (p["x"], p["y"]) == pytest.approx((10 * p["z"] / 100, 7 * p["z"] / 50), abs=1e-5)


def test_recorded_training_size_is_replayed(odd_png: Path, tmp_path: Path) -> None:
    ck = tiny_checkpoint(tmp_path / "sized.pt", data={"image_size": [32, 48], "border_crop": "none"})
    assert main(["predict", str(odd_png), "--checkpoint", str(ck), "--out", str(tmp_path), "--no-flip"]) == 0
    mm = np.array(Image.open(tmp_path / "odd_depth.png")).astype(np.float64)
    assert mm.shape == (250, 333)
    # The model saw a 32x48 image: its prediction, upsampled, is what the file holds.
    small = torch.nn.functional.interpolate(_rgb_tensor(odd_png), size=(32, 48), mode="bilinear",
                                            align_corners=False, antialias=True)
    raw = predict(load_model(ck), small, flip_average=False, out_size="native")
    assert mm.min() >= raw.min().item() * 1000 - 1 and mm.max() <= raw.max().item() * 1000 + 1
    native = np.array(Image.open(tmp_path / "odd_depth.png"))  # differs from a full-size run
    assert main(["predict", str(odd_png), "--checkpoint", str(tiny_checkpoint(tmp_path / "full.pt")),
                 "--out", str(tmp_path / "full"), "--no-flip"]) == 0
    assert not np.array_equal(native, np.array(Image.open(tmp_path / "full" / "odd_depth.png")))


def test_unreadable_image_is_named(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.png"
    bad.write_text("not a png")
    assert main(["predict", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot decode image" in err and "Traceback" not in err
    assert not list((tmp_path / "o").glob("*"))  # nothing half-written


def test_missing_image_and_duplicate_names(odd_png: Path, ckpt: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "nope.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "nope.png: no such image file" in capsys.readouterr().err
    other = tmp_path / "sub" / odd_png.name
    other.parent.mkdir()
    other.write_bytes(odd_png.read_bytes())
    assert main(["predict", str(odd_png), str(other), "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "would overwrite each other" in capsys.readouterr().err


def test_foreign_checkpoint_is_refused(odd_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, foreign)
    assert main(["predict", str(odd_png), "--checkpoint", str(foreign), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(foreign) in err and "not a depthlib checkpoint" in err


def test_bad_intrinsics_text(odd_png: Path, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--ply",
                 "--intrinsics", "500,500,320"]) == 2
    assert "--intrinsics must be 4 comma-separated numbers" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "depthlib", "predict", "--help"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0 and "--intrinsics" in r.stdout and "--ply" in r.stdout
    r = subprocess.run([sys.executable, "-m", "depthlib", "export-onnx"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "--checkpoint" in r.stderr
