"""ONNX export: ONNX Runtime alone, fed the RGB bytes a user has, gives `depthlib predict`'s depth within 1 mm."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.cli import main
from depthlib.core.errors import ConfigError
from depthlib.inference import load_for_inference
from depthlib.inference.export import ExportError, check_onnx, export_onnx, run_onnx
from depthlib.models.checkpoint import load_model
from depthlib.models.predict import predict

ROOT = Path(__file__).resolve().parent.parent
FRAME = ROOT / "data" / "sample" / "data" / "nyu2_test" / "00000_colors.png"  # a real 640x480 NYU frame
# Both record the same training size and differ only in the crop, so a graph that drops the crop differs only
# on 640x480 frames.
TRAINED = {crop: {"image_size": [64, 96], "border_crop": crop} for crop in ("nyu", "none")}
MM = 1e-3  # metres: the export's promise, and predict's depth PNGs' unit


def _rgb() -> dict[str, np.ndarray]:
    """uint8 [1,H,W,3] images as a user has them: the NYU frame as decoded, and odd-sized real regions of it (8x9:
    predict's smallest)."""
    frame = np.array(Image.open(FRAME).convert("RGB"))
    return {"frame 480x640": frame[None], "odd 251x333": np.ascontiguousarray(frame[None, 10:261, 20:353]),
            "odd 8x9": np.ascontiguousarray(frame[None, 100:108, 200:209])}


def _predict(checkpoint: Path, rgb: np.ndarray, flip: bool) -> np.ndarray:
    """What `depthlib predict` computes for uint8 rgb [B,H,W,3]: metres [B,1,H,W]."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    return predict(load_for_inference(checkpoint), x, flip_average=flip).numpy()


def _onnxruntime(path: Path, rgb: np.ndarray) -> np.ndarray:
    """The file run by ONNX Runtime alone, no depthlib code: uint8 [B,H,W,3] -> metres [B,1,H,W]."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: rgb})[0]


def _metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory):
    """get(crop, flip) -> (checkpoint, dynamic model.onnx), each exported once, through the CLI as the README says
    (which also runs its own ONNX Runtime check)."""
    d = tmp_path_factory.mktemp("onnx")
    made: dict[tuple[str, bool], tuple[Path, Path]] = {}

    def get(crop: str, flip: bool) -> tuple[Path, Path]:
        if (crop, flip) not in made:
            ck = d / f"{crop}.pt"
            if not ck.exists():
                tiny_checkpoint(ck, data=TRAINED[crop])
            out = d / f"{crop}_flip{int(flip)}.onnx"
            assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(out)] + ["--flip"] * flip) == 0
            made[crop, flip] = ck, out
        return made[crop, flip]

    return get


@pytest.mark.slow  # one torch.export-based ONNX export per case: ~10-20 s each on 2 busy cores
@pytest.mark.parametrize("flip", [False, True], ids=["no-flip", "flip"])
@pytest.mark.parametrize("crop", ["nyu", "none"])
def test_onnx_runtime_alone_equals_predict(graphs, crop: str, flip: bool) -> None:
    ck, path = graphs(crop, flip)
    for what, rgb in _rgb().items():
        got, want = _onnxruntime(path, rgb), _predict(ck, rgb, flip)
        assert got.shape == want.shape == (1, 1, *rgb.shape[1:3]), what
        # the tiny model's depth varies over the frame, so a misplaced or uncropped pixel shows
        assert what != "frame 480x640" or float(want.std()) > 0.1
        err = float(np.abs(got - want).max())
        assert err <= MM, f"{crop}, flip={flip}, {what}: ONNX Runtime differs from predict by {err:.4g} m"


@pytest.mark.slow  # one export: ~5-10 s
def test_checkpoint_without_training_input_pads_inside_the_graph(tmp_path: Path) -> None:
    # no recorded training input: predict runs the network on the image as given, padded to its multiple (4)
    ck = tiny_checkpoint(tmp_path / "bare.pt")
    assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(tmp_path / "bare.onnx"), "--flip"]) == 0
    frame = _rgb()["frame 480x640"]
    for h, w in ((480, 640), (61, 451), (8, 9)):  # 451 and 9 stay themselves; 8x9 is predict's smallest
        rgb = np.ascontiguousarray(frame[:, 100 : 100 + h, : w]) if h < 480 else frame
        got, want = _onnxruntime(tmp_path / "bare.onnx", rgb), _predict(ck, rgb, True)
        assert got.shape == want.shape == (1, 1, h, w)
        assert float(np.abs(got - want).max()) <= MM, (h, w)
    assert "8..4096" in _metadata(tmp_path / "bare.onnx")["depthlib.input"]


@pytest.mark.slow  # reuses the exports above
def test_dynamic_metadata_describes_the_graph(graphs) -> None:
    _, path = graphs("nyu", False)
    meta = _metadata(path)
    assert meta["depthlib.units"] == "metres"
    assert meta["depthlib.input"].startswith("image: uint8[B,H,W,3] RGB")
    assert "H, W in 8..4096" in meta["depthlib.input"]
    # followed by hand, the old recipe (crop, resize, run, resize back) missed predict by up to 77 mm: now the
    # graph does it all and the metadata says so, and what it does
    prep = meta["depthlib.preprocessing"]
    assert prep.startswith("in the graph: feed the image as decoded")
    for step in ("divides by 255", "6 rows top", "only when the input is 480x640", "64x96", "mean [0.485, 0.456, 0.406]",
                 "to the input's size"):
        assert step in prep, step
    assert "mirror" not in prep and meta["depthlib.flip_average"] == "false"
    assert "mirror" in _metadata(graphs("nyu", True)[1])["depthlib.preprocessing"]
    assert "crop" not in _metadata(graphs("none", False)[1])["depthlib.preprocessing"]


@pytest.mark.slow  # reuses the exports above
def test_check_onnx_compares_with_predict_on_the_same_input(graphs) -> None:
    ck, nyu = graphs("nyu", False)
    _, none = graphs("none", False)
    frame, odd, _ = _rgb().values()
    model = load_for_inference(ck)
    assert check_onnx(model, nyu, frame) <= MM
    assert check_onnx(model, none, odd) <= MM  # off NYU's frame size the two graphs agree
    with pytest.raises(ExportError, match="differs from predict"):
        check_onnx(model, none, frame)  # a graph without the crop
    other = load_for_inference(tiny_checkpoint(ck.parent / "other.pt", seed=1, data=TRAINED["nyu"]))
    with pytest.raises(ExportError, match="differs from predict"):
        check_onnx(other, nyu, odd)


@pytest.mark.slow  # one fixed-shape export: a few seconds
def test_fixed_graph_states_its_shape_and_crops_the_nyu_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --no-dynamic wrote "any H, W in 8..4096" into a graph fixed at one shape
    ck = tiny_checkpoint(tmp_path / "t.pt", data=TRAINED["nyu"])
    out = tmp_path / "fixed.onnx"
    assert main(["export-onnx", "--checkpoint", str(ck), "--out", str(out), "--no-dynamic",
                 "--height", "480", "--width", "640"]) == 0
    printed = capsys.readouterr()
    assert "fixed 1x480x640x3 uint8 input" in printed.err and "ONNX Runtime matches predict" in printed.out
    assert f"wrote {out}: uint8 RGB [1,480,640,3] -> depth in metres [1,1,480,640]" in printed.out
    assert "[B," not in printed.out
    meta = _metadata(out)
    assert meta["depthlib.output"].startswith("depth: float32[1,1,480,640]") and "only this shape" in meta["depthlib.output"]
    assert meta["depthlib.input"].startswith("image: uint8[1,480,640,3] RGB") and "any" not in meta["depthlib.input"]
    assert "only this shape" in meta["depthlib.input"]
    assert "6 rows top" in meta["depthlib.preprocessing"]
    rgb = _rgb()["frame 480x640"]
    assert float(np.abs(_onnxruntime(out, rgb) - _predict(ck, rgb, False)).max()) <= MM


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
        run_onnx(tmp_path / "missing.onnx", np.zeros((1, 8, 8, 3), np.uint8))


def test_run_onnx_refuses_float_images_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    with pytest.raises(ExportError, match=r"uint8 \[B,H,W,3\].*Fix: pass the decoded image"):
        run_onnx(path, torch.rand(1, 3, 32, 32))


def test_export_disk_full_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(tiny_checkpoint(tmp_path / "t.pt"))

    def disk_full(module, args, f, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", disk_full)
    with pytest.raises(ExportError, match=r"model\.onnx: could not be written \(No space left on device\)"):
        export_onnx(model, tmp_path / "out" / "model.onnx", height=32, width=32, dynamic=False)
    assert not list((tmp_path / "out").iterdir())


def test_a_fixed_graphs_metadata_and_wrote_line_give_its_fixed_shapes(tmp_path: Path) -> None:
    # --no-dynamic: the "wrote" line and depthlib.output still said [B,H,W,3] -> [B,1,H,W] for a 1x3x480x640 graph
    from depthlib.inference.export import graph_shapes, onnx_metadata

    model = load_for_inference(tiny_checkpoint(tmp_path / "t.pt", data=TRAINED["nyu"]))
    fixed = onnx_metadata(model, fixed=(480, 640))
    assert fixed["depthlib.output"] == "depth: float32[1,1,480,640], depth in metres at the input's size; fixed: only this shape"
    assert fixed["depthlib.input"].startswith("image: uint8[1,480,640,3]")
    assert not any("[B," in v for v in fixed.values()), fixed
    assert graph_shapes(model, (480, 640)) == ("uint8 RGB [1,480,640,3]", "depth in metres [1,1,480,640]")
    dynamic = onnx_metadata(model)
    assert dynamic["depthlib.output"] == "depth: float32[B,1,H,W], depth in metres at the input's H, W"
    assert graph_shapes(model) == ("uint8 RGB [B,H,W,3]", "depth in metres [B,1,H,W]")
