"""The canonical camera space at inference (issue #22, step 3), with hand-computed values: predict's rescale by
f / canonical_fx after the adapter's crop and resize, `depthlib predict`'s PNG and PLY with a camera (given, EXIF or
assumed), evaluate and the explorer with the frames' own focal lengths, and the ONNX graph's fx input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.cli import main
from depthlib.core.camera import NO_CAMERA_SPACE_LINE, no_camera_space_line
from depthlib.inference import load_for_inference
from depthlib.models.predict import predict

KINECT_FX = 518.8579011745019
# a tiny U-Net trained (as it were) at 32x48 in a canonical space of fx 40 px there, with NYU's border crop
CANONICAL = {"image_size": [32, 48], "border_crop": "nyu", "camera_space": "canonical", "canonical_fx": 40.0}
METRES = {"image_size": [32, 48], "border_crop": "nyu"}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return {"canonical": tiny_checkpoint(d / "canonical.pt", data=CANONICAL),
            "none": tiny_checkpoint(d / "none.pt", data=METRES),
            "canonical30": tiny_checkpoint(d / "canonical30.pt", data={**CANONICAL, "canonical_fx": 30.0})}


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a / b).flatten(1).mean(1)


def test_predict_rescales_a_canonical_model_by_the_focal_length_at_its_input(ckpts: dict[str, Path]) -> None:
    model = load_for_inference(ckpts["canonical"])
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    base = predict(model, x)   # no fx: the canonical camera, unscaled
    # 96 wide, not NYU's frame size (no crop): fx 100 -> 100 x 48 / 96 = 50 px at the input -> x 50 / 40 = 1.25;
    # per image, NaN = unknown -> 1
    got = _ratio(predict(model, x, fx=torch.tensor([100.0, math.nan], dtype=torch.float64)), base)
    assert got.tolist() == pytest.approx([1.25, 1.0], abs=1e-6)
    assert _ratio(predict(model, x, fx=100.0, out_size="native"), predict(model, x, out_size="native")).tolist() == \
        pytest.approx([1.25, 1.25], abs=1e-6)
    # a 640x480 frame loses NYU's border (625 columns stay): 518.858 x 48 / 625 = 39.848 px -> x 0.996207
    frame = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(1))
    assert _ratio(predict(model, frame, fx=KINECT_FX), predict(model, frame)).item() == pytest.approx(0.996207, abs=1e-6)
    # a model trained on metres ignores every focal length
    metres = load_for_inference(ckpts["none"])
    assert metres.canonical_fx is None and torch.equal(predict(metres, x, fx=100.0), predict(metres, x))


def _photo(path: Path, *, f35: int | None = None, size: tuple[int, int] = (120, 80)) -> Path:
    """A JPEG of smooth random colour, with FocalLengthIn35mmFilm when given."""
    small = np.random.default_rng(0).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    if f35 is not None:
        exif.get_ifd(0x8769)[0xA405] = f35
    Image.fromarray(small).resize(size, Image.BICUBIC).save(path, format="JPEG", quality=95, exif=exif)
    return path


def _ply(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    return np.frombuffer(raw[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])


def _predict(ckpt: Path, image: Path, out: Path, *extra: str) -> tuple[np.ndarray, np.ndarray]:
    assert main(["predict", str(image), "--out", str(out), "--ply", "--checkpoint", str(ckpt), "--device", "cpu",
                 *extra]) == 0
    return np.array(Image.open(out / f"{image.stem}_depth.png")).astype(np.float64) / 1000, _ply(out / f"{image.stem}.ply")


def test_depthlib_predict_scales_the_png_and_the_ply_by_the_camera(ckpts: dict[str, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    # 120x80, FocalLengthIn35mmFilm 30 mm: f = 30 / 43.2666 x hypot(120, 80) = 100.0 px
    exif, plain = _photo(tmp_path / "a" / "room.jpg", f35=30), _photo(tmp_path / "b" / "room.jpg")
    ckpt = ckpts["canonical30"]
    png_exif, ply_exif = _predict(ckpt, exif, tmp_path / "o1")
    png_k, ply_k = _predict(ckpt, plain, tmp_path / "o2", "--intrinsics", "100,100,59.5,39.5")
    png_none, ply_none = _predict(ckpt, plain, tmp_path / "o3")
    said = capsys.readouterr().err
    # the EXIF camera and the equivalent --intrinsics: the same depth, the same cloud
    assert np.array_equal(png_exif, png_k) and np.array_equal(ply_exif, ply_k)
    # without a camera: NYU's Kinect at 120 wide, fx 518.858 x 120 / 640 = 97.2859, said once, depth and PLY following it
    assert said.count("no camera given") == 1 and "the depth and the PLY follow it" in said
    # fx at the input: 100 x 48 / 120 = 40 -> x 40 / 30; 97.2859 x 48 / 120 = 38.914 -> x 1.29714; ratio 1.027899
    z_k, z_none = ply_k["z"].astype(np.float64), ply_none["z"].astype(np.float64)
    assert np.allclose(z_k / z_none, 1.0278986, rtol=2e-6)
    # the PNG holds the PLY's depth (millimetres, rounded), and the PLY's x follows the camera: (u - cx) z / fx
    assert np.abs(png_k.ravel() - z_k).max() <= 0.0005 + 1e-9
    u = np.tile(np.arange(120, dtype=np.float64), 80)
    assert np.allclose(ply_k["x"], (u - 59.5) * z_k / 100.0, rtol=1e-5, atol=1e-6)
    # the same image without rescaling: the ratio of the depth to what the canonical model predicts is 40 / 30
    base = predict(load_for_inference(ckpt), torch.from_numpy(np.array(Image.open(plain))).permute(2, 0, 1)[None] / 255.0,
                   out_size=(80, 120))[0, 0].double().numpy()
    assert np.allclose(z_k.reshape(80, 120) / base, 40 / 30, rtol=2e-6)


def test_a_model_trained_on_metres_says_once_that_the_camera_changes_only_the_ply(ckpts: dict[str, Path], tmp_path: Path,
                                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    a, b = _photo(tmp_path / "in" / "a.jpg"), _photo(tmp_path / "in" / "b.jpg", size=(96, 64))
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o1"), "--checkpoint", str(ckpts["none"]),
                 "--device", "cpu", "--fov", "90"]) == 0
    err = capsys.readouterr().err
    # no --ply: no point cloud is written, so the camera changes nothing in the run (and says so)
    assert err.count(no_camera_space_line(ply=False)) == 1 and "no camera given" not in err
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--checkpoint", str(ckpts["none"]),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert NO_CAMERA_SPACE_LINE not in err and no_camera_space_line(ply=False) not in err
    for p in (a, b):
        name = f"{p.stem}_depth.png"
        assert np.array_equal(np.array(Image.open(tmp_path / "o1" / name)), np.array(Image.open(tmp_path / "o2" / name)))


def test_evaluate_and_the_explorer_use_each_frames_focal_length(ckpts: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from depthlib.data.frame import Frame
    from depthlib.evaluation.evaluate import _batches, evaluate, prepare_batch
    from depthlib.evaluation.protocols import get_protocol
    from depthlib.notebook.widgets import Explorer

    model = load_for_inference(ckpts["canonical"])

    class Frames:   # a FrameSource of two 96x64 frames, the first at fx 100, the second of unknown camera
        path, names, scenes = str(tmp_path / "frames"), ["a", "b"], ["s", "s"]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Frame:
            rgb = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            return Frame(rgb, np.full((64, 96), 2.0, np.float32),
                         np.ones((64, 96), bool), self.names[i], "s", fx=(100.0, None)[i])

    from depthlib.data.dataset import DepthDataset

    frames = Frames()
    data = DepthDataset(frames)
    batch = next(_batches(data, 2))
    proto = get_protocol("no_crop_valid")
    scaled = prepare_batch(model, batch, proto, flip_average=False, alignment="none", device=torch.device("cpu"))[0]
    plain = prepare_batch(model, batch | {"fx": torch.tensor([math.nan, math.nan], dtype=torch.float64)}, proto,
                          flip_average=False, alignment="none", device=torch.device("cpu"))[0]
    assert _ratio(scaled, plain).tolist() == pytest.approx([1.25, 1.0], abs=1e-6)   # 100 x 48 / 96 / 40; unknown
    evaluate(model, data, protocol="no_crop_valid", progress=False, desc="canonical")
    assert "1 of the 2 frames" in capsys.readouterr().out
    ex = Explorer(frames, {"c": ckpts["canonical"]}, device="cpu", flip_average=False)
    for i, expected in ((0, 1.25), (1, 1.0)):
        f = frames[i]
        x = torch.from_numpy(f.rgb).permute(2, 0, 1)[None].float() / 255
        base = predict(model, x, flip_average=False)[0, 0].numpy()
        assert float(np.mean(ex.prediction("c", i, flip_average=False) / base)) == pytest.approx(expected, abs=1e-5)
    assert capsys.readouterr().out.count("has no focal length") == 1


@pytest.mark.slow  # one torch.export-based ONNX export (~6 s): run once, not again in each kernel pass of `make test`
def test_the_onnx_graph_of_a_canonical_model_takes_fx(ckpts: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    from depthlib.inference.export import ExportError, export_onnx, onnx_metadata, run_onnx

    model = load_for_inference(ckpts["canonical"])
    path = export_onnx(model, tmp_path / "c.onnx", height=64, width=96, dynamic=False)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image", "fx"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["depthlib.camera_space"].startswith("canonical: trained in a canonical camera space of fx 40.0000 px "
                                                    "at 32x48")
    rgb = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    at100, at50 = run_onnx(path, rgb, torch.tensor([100.0])), run_onnx(path, rgb, np.array([50.0]))
    # fx 100 -> x 1.25, fx 50 -> x 0.625: twice; and what predict gives with fx 100, within float32
    assert _ratio(at100, at50).item() == pytest.approx(2.0, abs=1e-5)
    expected = predict(model, rgb.permute(0, 3, 1, 2).float() / 255, flip_average=False, fx=100.0)
    assert float((at100 - expected).abs().max()) < 1e-5
    with pytest.raises(ExportError, match="Fix: pass fx"):
        run_onnx(path, rgb)
    # a model trained on metres: no fx input, and the metadata says why
    assert onnx_metadata(load_for_inference(ckpts["none"]))["depthlib.camera_space"].startswith("none: trained on metres")
