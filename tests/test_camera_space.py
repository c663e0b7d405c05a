"""The canonical camera space's bookkeeping on the data side (issue #22, steps 1-2), with hand-computed values: a
reader's focal length through the prepared file, the resize and the two zooms, the loss target, what a checkpoint
records, and a prepared file written before focal lengths were recorded."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.core.camera import NYU_KINECT
from depthlib.core.config import DataConfig, TrainConfig
from depthlib.core.errors import ConfigError, DataError
from depthlib.data import open_source
from depthlib.data.frame import Frame, frame_to_sample
from depthlib.data.prepared import PreparedDataset
from depthlib.data.prepared_loader import PreparedTorchDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.data.transforms import build_transforms
from depthlib.training.train_setup import data_settings, training_sets

KINECT_FX = 518.8579011745019   # NYU toolbox's fx_rgb at 640x480
XTION_FX = 570.342              # the SUN3D study room's Asus Xtion at 640x480


def _pairs(root: Path, focals: list[float | None], *, size: tuple[int, int] = (128, 96), depth_m: float = 2.0) -> Path:
    """A pairs folder of len(focals) frames (W x H, constant depth), scene a / b alternating, and list.txt naming
    each frame's focal length when given (a frame without one: no list column, so a list per case)."""
    lines = ["rgb depth focal"] if all(f is not None for f in focals) else ["rgb depth"]
    rng = np.random.default_rng(0)
    for i, f in enumerate(focals):
        scene = "ab"[i % 2]
        for kind in ("rgb", "depth"):
            (root / scene / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / scene / "rgb" / f"{i}.png")
        Image.fromarray(np.full((size[1], size[0]), round(depth_m * 1000), np.uint16)).save(root / scene / "depth" / f"{i}.png")
        lines.append(f"{scene}/rgb/{i}.png {scene}/depth/{i}.png" + (f" {f}" if f is not None else ""))
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def _prepared(tmp: Path, focals: list[float | None], **kw: object) -> Path:
    src = open_source("pairs", str(_pairs(tmp / "own", focals, **kw)), depth_scale=0.001, files="list.txt")  # type: ignore[arg-type]
    splits = ["train" if i % 2 == 0 else "val" for i in range(len(focals))]
    return write_prepared(src, tmp / "own.h5", split=splits, progress=False)


def _sample(w: int, h: int, fx: float | None, depth: float = 3.0) -> dict:
    return frame_to_sample(Frame(np.zeros((h, w, 3), np.uint8), np.full((h, w), depth, np.float32),
                                 np.ones((h, w), bool), "f", "s", fx=fx))


def test_a_readers_focal_length_reaches_the_prepared_file_and_its_samples(tmp_path: Path, sample_dir: Path) -> None:
    # NYU's forms report the Kinect's fx at the frame's own width (640: the toolbox's value itself)
    assert open_source("densedepth", str(sample_dir), split="test")[0].fx == KINECT_FX
    assert open_source("bts", str(sample_dir / "raw_depth"))[0].fx == KINECT_FX
    # pairs: the focal column of its list, per frame, through the prepared file (format 2) to the loader's samples
    path = _prepared(tmp_path, [100.0, 80.0, XTION_FX])
    with h5py.File(path) as f:
        assert f.attrs["format_version"] == 2 and f["fx"][()].tolist() == [100.0, 80.0, XTION_FX]
    assert [PreparedDataset(str(path))[i].fx for i in range(3)] == [100.0, 80.0, XTION_FX]
    assert [PreparedTorchDataset(str(path), split="train")[i]["fx"] for i in range(2)] == [100.0, XTION_FX]
    # declared once for every frame: intrinsics=[fx, fy, cx, cy]
    one = open_source("pairs", str(tmp_path / "own"), depth_scale=0.001, intrinsics=[XTION_FX, XTION_FX, 63.5, 47.5])
    assert one[0].fx == XTION_FX
    # unknown: no focal length anywhere -> None on the frame, NaN in the file and the sample
    (tmp_path / "none").mkdir()
    unknown = _prepared(tmp_path / "none", [None, None])
    assert PreparedDataset(str(unknown))[0].fx is None
    assert math.isnan(PreparedTorchDataset(str(unknown))[0]["fx"])
    with pytest.raises(DataError, match="focal length fx must be positive"):
        Frame(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32), np.ones((4, 4), bool), fx=0.0).check()


def test_resize_scales_the_focal_length_with_the_width_and_nyu_frames_keep_their_metres() -> None:
    # 640 -> 256 wide: fx 570.342 x 256 / 640 = 228.1368
    s = build_transforms(DataConfig(image_size=(192, 256), border_crop="none"), train=False)(_sample(640, 480, XTION_FX))
    assert s["fx"] == pytest.approx(228.1368, abs=1e-9)
    # NYU's border crop keeps the pixels' focal length (7 + 8 columns off: 625 wide), the resize scales it by
    # 256 / 625: 518.8579 x 0.4096 = 212.5242, which is the default canonical fx, so the target stays in metres
    cfg = DataConfig(image_size=(192, 256), border_crop="nyu", camera_space="canonical")
    s = build_transforms(cfg, train=False)(_sample(640, 480, KINECT_FX))
    assert s["fx"] == pytest.approx(212.52419632107598, rel=1e-12)
    assert data_settings(cfg)["canonical_fx"] == pytest.approx(212.52419632107598, rel=1e-12)
    assert torch.allclose(s["depth"], torch.full_like(s["depth"], 3.0), rtol=1e-6)


def test_the_lens_zoom_multiplies_the_focal_length_and_divides_the_target_and_zoom_max_keeps_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.rand -> 1.0: z = 1 + (2 - 1) x 1 = 2 exactly, a 320x240 window of the 640x480 frame, resized to 256x192
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor(1.0))
    no_flip = dict(image_size=(192, 256), border_crop="none", camera_space="canonical", flip_p=0.0, swap_p=0.0)
    # canonical fx (default, no border): 518.8579 x 256 / 640 = 207.5432
    plain = build_transforms(DataConfig(**no_flip), train=True)(_sample(640, 480, XTION_FX))
    lens = build_transforms(DataConfig(**no_flip, lens_zoom_max=2.0), train=True)(_sample(640, 480, XTION_FX))
    kept = build_transforms(DataConfig(**no_flip, zoom_max=2.0), train=True)(_sample(640, 480, XTION_FX))
    # unzoomed: fx 228.1368 at the input, target 3 m x 207.5432 / 228.1368 = 2.72919 m
    assert plain["fx"] == pytest.approx(228.1368) and float(plain["depth"].mean()) == pytest.approx(2.729194, abs=1e-5)
    # the lens: fx 570.342 x 256 / 320 = 456.2736 (times z), target 3 m x 207.5432 / 456.2736 = 1.36460 m (over z)
    assert lens["fx"] == pytest.approx(456.2736) and float(lens["depth"].mean()) == pytest.approx(1.364597, abs=1e-5)
    # zoom_max: the same window, labelled with the whole frame's focal length: fx and target as unzoomed
    assert kept["fx"] == pytest.approx(228.1368) and float(kept["depth"].mean()) == pytest.approx(2.729194, abs=1e-5)
    assert tuple(lens["image"].shape) == tuple(kept["image"].shape) == (3, 192, 256)
    # without a camera space the lens zoom would be zoom_max under another name: refused, naming both fixes
    with pytest.raises(ConfigError, match="camera_space='canonical'.*zoom_max instead"):
        build_transforms(DataConfig(lens_zoom_max=1.5), train=True)
    with pytest.raises(ConfigError, match="is not one of"):
        build_transforms(DataConfig(camera_space="metric"), train=False)


def test_the_loss_target_of_a_canonical_run_and_what_its_checkpoint_records(tmp_path: Path) -> None:
    from depthlib.inference import load_for_inference
    from depthlib.models import create_model
    from depthlib.models.checkpoint import load_checkpoint
    from depthlib.training.train import fit

    # frames 128x96 at fx 100, constant 2 m; image_size 32x64: fx at the input 100 x 64 / 128 = 50, so with
    # canonical_fx 40 every target pixel is 2 x 40 / 50 = 1.6 (a camera of fx 40 sees the room 1.25x nearer)
    path = _prepared(tmp_path, [100.0, 100.0, 100.0, 100.0])
    cfg = DataConfig(image_size=(32, 64), border_crop="none", camera_space="canonical", canonical_fx=40.0,
                     flip_p=0.0, swap_p=0.0)
    sets = training_sets(str(path), cfg)
    for split in ("train", "val"):
        s = sets[split][0]
        assert s["fx"] == 50.0 and torch.allclose(s["depth"], torch.full_like(s["depth"], 1.6))
    settings = data_settings(cfg)
    assert settings == {"image_size": [32, 64], "border_crop": "none", "camera_space": "canonical", "canonical_fx": 40.0}
    # camera_space "none" records what it always did: resuming an older run's last.pt is not refused
    assert data_settings(DataConfig(image_size=(32, 64), border_crop="none")) == {"image_size": [32, 64],
                                                                                   "border_crop": "none"}
    torch.manual_seed(0)
    out = tmp_path / "run"
    fit(create_model("unet", width=4, depth=2), sets["train"], sets["val"],
        TrainConfig(epochs=1, batch_size=2, device="cpu", out_dir=str(out), progress=False, data=settings))
    data = load_checkpoint(out / "best.pt")["extra"]["train_config"]["data"]
    assert (data["camera_space"], data["canonical_fx"]) == ("canonical", 40.0)
    assert load_for_inference(out / "best.pt").canonical_fx == 40.0


def test_a_prepared_file_without_focal_lengths_reads_as_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _prepared(tmp_path, [100.0, 100.0])
    new = PreparedTorchDataset(str(path))[0]
    with h5py.File(path, "a") as f:   # what a depthlib before format 2 wrote: no fx, format_version 1
        del f["fx"]
        f.attrs["format_version"] = 1
    old = PreparedTorchDataset(str(path))[0]
    assert PreparedDataset(str(path))[0].fx is None and math.isnan(old["fx"])
    assert all(torch.equal(old[k], new[k]) for k in ("image", "depth", "valid"))
    # camera_space "none" trains on it as before; "canonical" is refused before any work, naming the file and the fix
    cfg = DataConfig(image_size=(32, 64), border_crop="none")
    assert len(training_sets(str(path), cfg)["train"]) == 1
    with pytest.raises(DataError, match=r"own\.h5.*1 of the 1 train frames have no focal length \(a format-1 file.*"
                                        r"overwrite=True"):
        training_sets(str(path), DataConfig(image_size=(32, 64), border_crop="none", camera_space="canonical"))
    # 01 run again with the same source and settings reuses it, and says that its cameras read as unknown
    src = open_source("pairs", str(tmp_path / "own"), depth_scale=0.001, files="list.txt")
    assert write_prepared(src, path, split=["train", "val"], progress=False) == path
    assert "written before prepared files recorded each frame's focal length" in capsys.readouterr().out
    assert NYU_KINECT.fx == KINECT_FX
