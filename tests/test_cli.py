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
from depthlib.cli import NYU_INTRINSICS, backproject, main, scaled_intrinsics
from depthlib.core.errors import ConfigError, DataError
from depthlib.figures.viz import colorize
from depthlib.models.checkpoint import load_model
from depthlib.models.predict import predict

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
        colour = Image.open(out / f"{stem}_depth_color_0-5m.png")  # the default fixed range, in the name
        assert colour.mode == "RGB" and colour.size == (w, h)
        _same_colours(colour, colorize(mm / 1000.0, vmin=0.0, vmax=5.0))
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
    assert "nope.png: no such image file or folder" in capsys.readouterr().err
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
    assert "--intrinsics must be 4 comma-separated numbers, got '500,500,320'. Fix: e.g. --intrinsics 518.9," \
        in capsys.readouterr().err


def test_a_bad_device_setting_says_the_fix_as_a_setting() -> None:
    # Notebooks and profiles pass device=...: the fix is a setting there, not a command-line flag.
    from depthlib.core.distributed import resolve_device
    with pytest.raises(ConfigError, match=r"device='tpu' is not a device depthlib runs on\. "
                                          r"Fix: set device='auto' or 'cpu' or 'cuda' or 'cuda:N'"):
        resolve_device("tpu")


def test_python_dash_m_entry_point_answers_help_and_usage_errors_without_loading_torch() -> None:
    # --help and a usage error once took 5-8 s each: building the parser imported torch for four constants
    r = subprocess.run([sys.executable, "-m", "depthlib", "predict", "--help"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0 and "--intrinsics" in r.stdout and "--ply" in r.stdout
    assert "8..4096" in " ".join(r.stdout.split()) or "--border-crop {auto,none}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "depthlib", "export-onnx"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 2 and "--checkpoint" in r.stderr
    code = "import sys; from depthlib.cli import build_parser; build_parser(); print(sorted({'torch', 'timm'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_numbers_given_with_spaces_get_the_comma_form_in_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse takes the first number as --intrinsics' value and calls the rest "unrecognized arguments"
    for argv, hint in ((["--intrinsics", "570.342", "570.342", "320", "240"], "--intrinsics 570.342,570.342,320,240"),
                       (["--known", "320", "240", "2.5"], "--known 320,240,2.5")):
        with pytest.raises(SystemExit) as e:
            main(["predict", "a.png", "--checkpoint", "c.pt", "--out", "o", *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "unrecognized arguments:" in err and hint in err and "no spaces" in err, err
    with pytest.raises(SystemExit):   # other leftovers: argparse's own message, no hint
        main(["predict", "a.png", "--checkpoint", "c.pt", "--out", "o", "--intrinsics", "1,2,3,4", "--bogus", "5"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus 5" in err and "no spaces" not in err, err


def _same_colours(png: Image.Image, expect: np.ndarray) -> None:
    """Colours equal up to the PNG's millimetre rounding (a colour-map step or two), and far from any other range."""
    diff = np.abs(np.array(png, dtype=np.int16) - expect.astype(np.int16))
    assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_bad_settings_are_refused_before_anything_is_written(odd_png: Path, ckpt: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--cmap", "nocmap"]) == 2
    assert "--cmap 'nocmap' is not a matplotlib colour map" in capsys.readouterr().err
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--range", "5,1"]) == 2
    assert "--range needs 0 <= LO < HI" in capsys.readouterr().err
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert "--device tpu is not a device depthlib runs on. Fix: --device auto or --device cpu" in err
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--range", "0,abc"]) == 2
    assert "--range must be 2 comma-separated numbers, got '0,abc'. Fix: e.g. --range 0,5" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cuda"]) == 2
        assert "--device cuda but no CUDA GPU is visible. Fix: --device auto or --device cpu." in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("depthlib.models.fastpath.cpu_has_native_bf16", lambda: False)
        assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out), "--bf16"]) == 2
    assert "has no native bfloat16" in capsys.readouterr().err
    assert not out.exists()
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert f"{taken}: --out names an existing file" in err and "Traceback" not in err
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("name", ["empty.pt", "evil.pt"])
def test_empty_or_code_carrying_checkpoint_through_the_cli(name: str, odd_png: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path / name
    if name == "empty.pt":
        ck.write_bytes(b"")
    else:
        torch.save({"hook": _Mkdir(str(tmp_path / "ran"))}, ck)
    for argv in (["predict", str(odd_png), "--out", str(tmp_path / "o")], ["export-onnx", "--out", str(tmp_path / "m.onnx")]):
        assert main([*argv, "--checkpoint", str(ck)]) == 2
        err = capsys.readouterr().err
        assert str(ck) in err and "Traceback" not in err and "weights_only=False" not in err
        assert ("is empty (0 bytes)" if name == "empty.pt" else "holds Python objects that are refused") in err
    assert _outputs(tmp_path) == [name]


class _Mkdir:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_folders_globs_and_relative_paths_from_the_working_directory(odd_png: Path, ckpt: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in ("a.jpg", "b.png"):
        Image.open(odd_png).save(photos / n)
    (photos / "notes.txt").write_text("not an image")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.pt").write_bytes(ckpt.read_bytes())
    monkeypatch.chdir(tmp_path)  # every relative path below is relative to here, the checkpoint too
    assert main(["predict", "photos", "--checkpoint", "models/tiny.pt", "--out", "out1", "--no-flip"]) == 0
    assert _outputs(tmp_path / "out1") == ["a_depth.png", "a_depth_color_0-5m.png", "b_depth.png",
                                           "b_depth_color_0-5m.png"]
    assert main(["predict", "photos/*.jpg", "--checkpoint", "models/tiny.pt", "--out", "out2", "--no-flip"]) == 0
    assert _outputs(tmp_path / "out2") == ["a_depth.png", "a_depth_color_0-5m.png"]
    assert main(["predict", "photos/*.gif", "--checkpoint", "models/tiny.pt", "--out", "out3"]) == 2


def test_auto_range_is_named_and_stretches_each_image(odd_png: Path, ckpt: Path, tmp_path: Path) -> None:
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--range", "auto"]) == 0
    (colour,) = tmp_path.glob("odd_depth_color_*m.png")
    mm = np.array(Image.open(tmp_path / "odd_depth.png")).astype(np.float64)
    lo, hi = (float(v) for v in colour.name[len("odd_depth_color_"):-len("m.png")].split("-"))
    assert mm.min() / 1000 - 0.0105 < lo <= mm.min() / 1000 + 5e-4  # whole centimetres around the depth
    assert mm.max() / 1000 - 5e-4 <= hi < mm.max() / 1000 + 0.0105
    _same_colours(Image.open(colour), colorize(mm / 1000.0, vmin=lo, vmax=hi))


def test_photos_are_turned_upright_and_converted(odd_png: Path, ckpt: Path, tmp_path: Path) -> None:
    rgb = Image.open(odd_png).convert("RGB")  # 333 x 250
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, show rotated 90 degrees clockwise
    rgb.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.convert("LA").save(tmp_path / "grey_alpha.png")
    rgb.convert("1").save(tmp_path / "bits.png")
    rgb.convert("P").save(tmp_path / "palette.png")
    Image.fromarray((np.array(rgb.convert("L"), dtype=np.uint16) * 257)).save(tmp_path / "grey16.png")
    names = ["phone.jpg", "cmyk.jpg", "grey_alpha.png", "bits.png", "palette.png", "grey16.png"]
    out = tmp_path / "out"
    assert main(["predict", *(str(tmp_path / n) for n in names), "--checkpoint", str(ckpt), "--out", str(out),
                 "--no-flip"]) == 0
    assert Image.open(out / "phone_depth.png").size == (250, 333)  # upright: width and height swapped
    for n in names[1:]:
        assert Image.open(out / f"{Path(n).stem}_depth.png").size == (333, 250)


def test_disk_full_names_the_file_and_keeps_nothing_partial(odd_png: Path, ckpt: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    import depthlib.data.io as io_mod

    def full(path, depth_m, *, encoding="mm16"):
        Path(path).write_bytes(b"half a png")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod, "write_depth_png", full)
    out = tmp_path / "o"
    assert main(["predict", str(odd_png), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'odd_depth.png'}: could not be written (No space left on device)" in err
    assert _outputs(out) == []


def test_tiny_images_get_a_clear_minimum(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (7, 5), (120, 80, 40)).save(tmp_path / "tiny.png")
    assert main(["predict", str(tmp_path / "tiny.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "7x5 pixels (WxH) are too small; the minimum is 8x8" in err and "Traceback" not in err


def test_a_folder_is_predicted_in_batches_with_decoding_in_a_thread(odd_png: Path, frame_png: Path, ckpt: Path,
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from depthlib import cli
    from depthlib.data import io

    photos = tmp_path / "photos"
    photos.mkdir()
    small = Image.open(odd_png)
    for n in ("a", "b", "c"):  # three of one size, then one of another: batches [a, b], [c], [d]
        small.save(photos / f"{n}.png")
    Image.open(frame_png).convert("RGB").resize((200, 150)).save(photos / "d.png")
    decoded_on, batches = [], []
    real_read = io.read_photo
    monkeypatch.setattr(io, "read_photo", lambda p, *a, **kw: (decoded_on.append(threading.current_thread().name),
                                                               real_read(p, *a, **kw))[1])

    def counting_predict(model, x, **kw):
        batches.append(len(x))
        return predict(model, x, **kw)

    monkeypatch.setattr("depthlib.models.predict.predict", counting_predict)
    one = cli.predict_images([str(photos)], checkpoint=str(ckpt), out=str(tmp_path / "one"), progress=False,
                             batch_size=1)
    assert batches == [1, 1, 1, 1]
    batches.clear()
    two = cli.predict_images([str(photos)], checkpoint=str(ckpt), out=str(tmp_path / "two"), progress=False,
                             batch_size=2)
    assert batches == [2, 1, 1]
    assert decoded_on and all(name.startswith("decode") for name in decoded_on)  # never on the main thread
    assert [p.name for p in one] == [p.name for p in two]
    for p in one:
        if p.name.endswith("_depth.png"):  # mm: batching changes nothing beyond float noise
            a = np.array(Image.open(p)).astype(np.int64)
            b = np.array(Image.open(tmp_path / "two" / p.name)).astype(np.int64)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_an_unreadable_image_in_a_batch_keeps_the_images_read_before_it(odd_png: Path, ckpt: Path, tmp_path: Path) -> None:
    from depthlib import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    for n in ("a", "b"):
        Image.open(odd_png).save(photos / f"{n}.png")
    (photos / "c.png").write_bytes(b"not a png")   # same batch as a and b (batch size 4)
    with pytest.raises(DataError, match="c.png"):
        cli.predict_images([str(photos)], checkpoint=str(ckpt), out=str(tmp_path / "out"), progress=False, batch_size=4)
    assert sorted(p.name for p in (tmp_path / "out").glob("*_depth.png")) == ["a_depth.png", "b_depth.png"]


def test_transparent_pixels_are_composited_on_white_and_said_once(odd_png: Path, ckpt: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 25 trial: an RGBA PNG's alpha was dropped without a word, the model shown the colours stored under it.
    from depthlib.data.io import read_photo

    rgba = Image.open(odd_png).convert("RGBA")
    a = np.array(rgba)
    a[:, :100, 3] = 0           # the left 100 columns transparent, stored black under the alpha
    a[:, :100, :3] = 0
    Image.fromarray(a).save(tmp_path / "cut.png")
    Image.fromarray(a).save(tmp_path / "cut2.png")
    rgba.save(tmp_path / "opaque.png")    # an alpha channel, every pixel opaque: nothing to say
    rgb, transparent = read_photo(tmp_path / "cut.png")
    assert transparent and (rgb[:, :100] == 255).all() and np.array_equal(rgb[:, 100:], a[:, 100:, :3])
    assert read_photo(tmp_path / "opaque.png")[1] is False
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "cut.png"), str(tmp_path / "cut2.png"), str(tmp_path / "opaque.png"),
                 "--checkpoint", str(ckpt), "--out", str(out), "--no-flip"]) == 0
    err = capsys.readouterr().err
    assert err.count("has transparent pixels") == 1
    assert "cut.png has transparent pixels: predict reads RGB, so they are composited on white" in err
    white = np.array(Image.open(tmp_path / "cut.png").convert("RGB"))
    white[:, :100] = 255
    Image.fromarray(white).save(tmp_path / "white.png")
    assert main(["predict", str(tmp_path / "white.png"), "--checkpoint", str(ckpt), "--out", str(out), "--no-flip"]) == 0
    assert np.array_equal(np.array(Image.open(out / "cut_depth.png")), np.array(Image.open(out / "white_depth.png")))


def test_camera_lines_fit_what_the_run_does(odd_png: Path, ckpt: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # --known given: the assumed-camera line still suggested "--known distances to rescale the depth"; --fov without
    # --ply on a model trained on metres: the focal length changes nothing in such a run.
    base = ["predict", str(odd_png), "--checkpoint", str(ckpt), "--no-flip"]
    assert main([*base, "--out", str(tmp_path / "a"), "--known", "100,100,2.0"]) == 0
    err = capsys.readouterr().err
    assert "no camera given" in err and "--known distances" not in err
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    assert "or --known distances to rescale the depth" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--fov", "60"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "the focal length changes only the point cloud (--ply), not the depth" in err
    assert "changes nothing in this run" in err
    assert main([*base, "--out", str(tmp_path / "d"), "--fov", "60", "--ply"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "changes only the point cloud, not the depth" in err and "changes nothing" not in err


@pytest.mark.parametrize("typed, usage", [(["/home/u/.venv/bin/python", "/home/u/.venv/bin/depthlib"], "usage: depthlib "),
                                          (["python3", "-u", "-m", "depthlib"], "usage: python -m depthlib ")])
def test_help_names_the_command_the_user_typed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                               typed: list[str], usage: str) -> None:
    # `depthlib --help` said "usage: python -m depthlib"
    monkeypatch.setattr(sys, "orig_argv", [*typed, "--help"])
    for argv in (["--help"], ["pipeline", "--help"], ["train", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(usage + (f"{argv[0]} " if argv[0] != "--help" else "")), out[:80]
