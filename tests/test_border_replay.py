"""NYU's border crop is replayed only on frames that can have NYU's white border: not on a 640x480 camera of your own.

Every 640x480 input got NYU's crop, so a SUN3D Xtion frame's first columns came out as one replicated value. `depthlib
predict --border-crop none` turns the replay off; evaluation, 04 and the explorer leave it off by themselves for frames
of a source without that border (the `pairs` reader, and prepared files written from it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.cli import main
from depthlib.data import open_source
from depthlib.data.prepared import PreparedDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.models.predict import predict
from depthlib.notebook import workbook

EDGE = 10  # frame columns: NYU's crop (7 left) resized 625 -> 96 puts the first input pixel's centre near column 10


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a pairs folder of two real 640x480 SUN3D frames, a tiny checkpoint trained with NYU's border crop)."""
    from _own_data import SUN3D

    src = SUN3D / "fragment-1-rgbd-frames"
    if not src.is_dir():
        pytest.skip(f"SUN3D study room frames not found at {src} (present in CI and developer checkouts)")
    root = tmp_path_factory.mktemp("border")
    folder = root / "sun3d"
    for sub in ("rgb", "depth"):
        (folder / sub).mkdir(parents=True)
    for color in sorted(src.glob("*.color.png"))[:2]:
        stem = color.name.split(".")[0]
        (folder / "rgb" / f"{stem}.png").write_bytes(color.read_bytes())
        (folder / "depth" / f"{stem}.png").write_bytes((src / f"{stem}.depth.png").read_bytes())
    ckpt = tiny_checkpoint(root / "nyu.pt", data={"image_size": [64, 96], "border_crop": "nyu"})
    return folder, ckpt


def _flat_edge(depth: np.ndarray) -> bool:
    """Whether the first EDGE columns of every row hold one value (a replicated edge, not a prediction)."""
    edge = depth[:, :EDGE]
    return bool(np.all(edge.max(axis=1) - edge.min(axis=1) == 0))


def test_predict_border_crop_none_predicts_the_edge_columns(capture, tmp_path) -> None:
    folder, ckpt = capture
    image = sorted((folder / "rgb").iterdir())[0]
    assert Image.open(image).size == (640, 480)
    out = {}
    for mode in ("auto", "none"):
        args = ["predict", str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / mode), "--no-flip"]
        assert main(args + ([] if mode == "auto" else ["--border-crop", mode])) == 0
        out[mode] = np.asarray(Image.open(tmp_path / mode / f"{image.stem}_depth.png")).astype(np.float64)
    assert _flat_edge(out["auto"])       # today's rule: NYU's crop, its edge replicated over columns 0-9
    assert not _flat_edge(out["none"])   # resized whole: the edge columns are predicted
    assert not np.array_equal(out["auto"][:, 100:540], out["none"][:, 100:540])  # another window, another prediction


def test_predict_help_says_the_border_crop_rule(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--border-crop {auto,none}" in text and "640x480 images only" in text


def test_evaluation_and_the_explorer_leave_the_crop_off_for_pairs_frames(capture, tmp_path) -> None:
    folder, ckpt = capture
    pairs = open_source("pairs", str(folder), depth_scale=0.001)
    prepared = PreparedDataset(str(write_prepared(pairs, tmp_path / "own.h5", split=["test", "test"], progress=False)))
    assert not prepared.nyu_border
    test = workbook.frames(str(tmp_path / "own.h5"), "test")
    x = test[0]["image"][None]
    model = workbook.inference_models({"current": str(ckpt)}, device="cpu", frames=test)["current"]
    assert not _flat_edge(predict(model, x, flip_average=False)[0, 0].numpy())
    nyu = workbook.inference_models({"current": str(ckpt)}, device="cpu")["current"]  # no frames given: today's rule
    assert _flat_edge(predict(nyu, x, flip_average=False)[0, 0].numpy())
    # evaluate() runs the model it is given: 04 hands it these models
    from depthlib.notebook.widgets import Explorer

    for source in (pairs, prepared):
        ex = Explorer(source, {"current": ckpt}, device="cpu", flip_average=False)
        assert not _flat_edge(ex.prediction("current", 0)), type(source).__name__


def test_nyu_forms_keep_the_crop(sample_dir) -> None:
    from depthlib.data.frame import has_nyu_border
    from depthlib.inference.load import border_crop_for

    nyu = workbook.eval_frames("", "", source="densedepth", path=str(sample_dir), options={"split": "test"})
    assert has_nyu_border(nyu) and border_crop_for(nyu) == "auto"
