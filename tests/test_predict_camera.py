"""`depthlib predict` with a camera (--intrinsics, --focal-35mm, --fov, EXIF, else the training camera, said once)
and known distances (--known, --known-file): the outputs, the printed residuals and every refusal."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _photo(path: Path, *, f35: int | None = None, size: tuple[int, int] = (120, 80), seed: int = 0) -> Path:
    """A JPEG of smooth random colour (the tiny model's depth varies over it), with FocalLengthIn35mmFilm if given."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BICUBIC)
    exif = Image.Exif()
    if f35 is not None:
        exif.get_ifd(0x8769)[0xA405] = f35
    img.save(path, format="JPEG", quality=95, exif=exif)
    return path


def _mm(path: Path) -> np.ndarray:
    return np.array(Image.open(path)).astype(np.float64)


def _ply_points(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    return np.frombuffer(raw[end:], dtype=dtype)


def _run(args: list[str], ckpt: Path) -> int:
    return main(["predict", *args, "--checkpoint", str(ckpt), "--device", "cpu"])


def test_exif_focal_length_gives_the_ply_of_the_equivalent_intrinsics(ckpt: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # 120x80 pixels, diagonal 144.22 px; 35 mm-equivalent 30 mm: f = 30 / 43.2666 x 144.222 = 100.0 px
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exif, plain = _photo(tmp_path / "a" / "room.jpg", f35=30), _photo(tmp_path / "b" / "room.jpg")
    assert np.array_equal(np.array(Image.open(exif)), np.array(Image.open(plain)))   # EXIF aside, one image
    f = 30 / math.hypot(36, 24) * math.hypot(120, 80)
    assert _run([str(exif), "--out", str(tmp_path / "o1"), "--ply"], ckpt) == 0
    assert _run([str(plain), "--out", str(tmp_path / "o2"), "--ply", "--intrinsics", f"{f!r},{f!r},59.5,39.5"],
                ckpt) == 0
    assert _run([str(plain), "--out", str(tmp_path / "o3"), "--ply", "--focal-35mm", "30"], ckpt) == 0
    assert "no camera given" not in capsys.readouterr().err
    ply = (tmp_path / "o1" / "room.ply").read_bytes()
    assert ply == (tmp_path / "o2" / "room.ply").read_bytes() == (tmp_path / "o3" / "room.ply").read_bytes()
    assert np.array_equal(_mm(tmp_path / "o1" / "room_depth.png"), _mm(tmp_path / "o2" / "room_depth.png"))
    pts = _ply_points(tmp_path / "o1" / "room.ply")
    p = pts[10 * 120 + 90]                      # row 10, column 90
    assert (p["x"], p["y"]) == pytest.approx(((90 - 59.5) * p["z"] / f, (10 - 39.5) * p["z"] / f), rel=1e-5)


def test_an_image_without_a_camera_says_once_which_was_assumed(ckpt: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "b.jpg", seed=1)
    _photo(tmp_path / "in" / "c.jpg", seed=2, size=(96, 64))
    assert _run([str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--ply"], ckpt) == 0
    err = capsys.readouterr().err
    assert err.count("no camera given") == 1
    assert ("no camera given and no EXIF focal length in a.jpg: assumed the training camera (NYU Kinect), "
            "63.3° horizontal field of view (fx 97.3 px at 120x80)") in err
    # with a camera given, nothing is assumed
    assert _run([str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--fov", "60"], ckpt) == 0
    assert "no camera given" not in capsys.readouterr().err


ROW = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$")


def test_three_known_points_print_a_numpy_fit_and_rescale_every_output(ckpt: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    img = _photo(tmp_path / "room.jpg")
    assert _run([str(img), "--out", str(tmp_path / "plain")], ckpt) == 0
    plain = _mm(tmp_path / "plain" / "room_depth.png")
    pts = [(10, 12, 1.5), (100, 40, 2.5), (60, 70, 4.0)]
    known = [a for x, y, m in pts for a in ("--known", f"{x},{y},{m}")]
    capsys.readouterr()
    assert _run([str(img), "--out", str(tmp_path / "k"), "--ply", *known], ckpt) == 0
    out = capsys.readouterr().out.splitlines()
    # the numpy fit, from the plain run's PNG: depths to 0.5 mm, so each ratio to 0.5 mm / depth
    p = np.array([plain[y, x] for x, y, _ in pts]) / 1000.0
    assert p.min() > 0.2                         # the tiny model's depth here (a 0.5 mm rounding is < 0.25 %)
    m = np.array([mm for _, _, mm in pts])
    s = math.exp(np.mean(np.log(m / p)))
    tol = s * float(np.max(0.0005 / p))         # how far the PNG's rounding can move the scale
    head = next(i for i, line in enumerate(out) if line.startswith("known distances in room.jpg: scale "))
    printed = float(re.search(r"scale (\S+) fitted in log depth from 3 points$", out[head]).group(1))
    assert printed == pytest.approx(s, abs=tol + 5e-5)
    for (x, y, given), line, pi in zip(pts, out[head + 2:head + 5], p):
        cells = [float(c) for c in ROW.match(line).groups()]
        assert cells[:3] == [x, y, given]
        assert cells[3] == pytest.approx(pi, abs=0.0005 + 0.0005)
        assert cells[4] == pytest.approx(pi * s, abs=0.0005 + s * 0.0005 + pi * tol)
        assert cells[5] == pytest.approx(cells[4] - given, abs=0.0011)
        assert cells[6] == pytest.approx(100 * (cells[4] - given) / given, abs=0.05 + 0.1 / given)
    # the depth PNG is the plain one times the fitted factor, to their millimetre rounding
    scaled = _mm(tmp_path / "k" / "room_depth.png")
    assert np.abs(scaled - plain * printed).max() <= 0.5 + 0.5 * printed + plain.max() * 5e-5
    # and the PLY holds the same rescaled depths
    z = _ply_points(tmp_path / "k" / "room.ply")["z"].reshape(scaled.shape).astype(np.float64)
    assert np.abs(z * 1000.0 - scaled).max() <= 0.5 + 1e-3


def test_a_known_file_calibrates_the_images_it_names(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "b.jpg", seed=1)
    (tmp_path / "pts.csv").write_text("image,x,y,metres\nin/b.jpg,5,5,2.0\n")
    assert _run(["in", "--out", "o", "--known-file", "pts.csv"], ckpt) == 0
    out = capsys.readouterr().out
    assert "known distances in b.jpg: scale " in out and "a.jpg:" not in out
    assert _run(["in", "--out", "plain"], ckpt) == 0
    a, b = _mm(tmp_path / "o" / "a_depth.png"), _mm(tmp_path / "o" / "b_depth.png")
    assert np.array_equal(a, _mm(tmp_path / "plain" / "a_depth.png"))
    assert b[5, 5] == 2000.0                     # one point: the scale puts it on the given distance


@pytest.mark.parametrize("args, message", [
    (["--known", "1,2,3", "--known-file", "pts.csv"], "--known and --known-file both give known distances"),
    (["--known", "1,2,0"], "--known 1,2,0: the distance must be positive metres, got 0"),
    (["--known", "1,2"], "--known 1,2: it needs 3 comma-separated numbers X,Y,METRES"),
    (["--known", "120,5,2"], "room.jpg: --known 120,5,2: pixel (120, 5) is outside the image's 120x80 pixels"),
    (["--known-file", "pts.csv"], "pts.csv: row 2: image 'other.jpg' is not among the 1 input image(s)"),
    (["--known-file", "bad.csv"], "bad.csv: row 3 has 3 fields, not 4"),
    (["--known-file", "far.csv"], "room.jpg: far.csv row 2: pixel (-1, 0) is outside the image's 120x80 pixels"),
    (["--focal-35mm", "26", "--fov", "60"], "--focal-35mm and --fov each state the camera. Fix: give one of them"),
    (["--intrinsics", "100,100,50,40", "--fov", "60"], "--intrinsics and --fov each state the camera"),
    (["--focal-35mm", "0"], "--focal-35mm 0: a 35 mm-equivalent focal length must be positive millimetres"),
    (["--fov", "200"], "--fov 200: the horizontal field of view must be between 0 and 180 degrees"),
])
def test_refusals_name_the_fix_and_write_nothing(args: list[str], message: str, ckpt: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "room.jpg")
    (tmp_path / "pts.csv").write_text("image,x,y,metres\nother.jpg,1,2,3\n")
    (tmp_path / "bad.csv").write_text("image,x,y,metres\nroom.jpg,1,2,3\nroom.jpg,1,2\n")
    (tmp_path / "far.csv").write_text("image,x,y,metres\nroom.jpg,-1,0,3\n")
    assert _run(["room.jpg", "--out", "o", *args], ckpt) == 2
    err = capsys.readouterr().err
    assert message in err and "Fix:" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_known_is_for_one_image(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _photo(tmp_path / "a.jpg"), _photo(tmp_path / "b.jpg", seed=1)
    assert _run([str(a), str(b), "--out", str(tmp_path / "o"), "--known", "1,2,3"], ckpt) == 2
    assert "--known is for one input image, and 2 were given" in capsys.readouterr().err
