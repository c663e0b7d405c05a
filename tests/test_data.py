"""Foundation data layer: DenseDepth reader (folder and zip), units, transforms, splits, bad input."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.core.config import DataConfig
from depthlib.data import Frame, frame_to_sample, open_source
from depthlib.data.dataset import DepthDataset, make_loader, read_split_file, split_indices
from depthlib.data.io import read_depth_png, write_depth_png
from depthlib.data.synthetic import box_scene, plane_depth, plane_scene
from depthlib.data.transforms import (BorderCrop, RandomChannelSwap, RandomHorizontalFlip, Resize, build_transforms,
                                      detect_white_border)
from depthlib.core.errors import ConfigError, DataError


def _zip_of(folder: Path, out: Path, skip: set[str] = frozenset()) -> Path:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and rel.startswith("data/") and rel not in skip:
                z.write(f, rel)
    return out


def _tiny_layout(root: Path, split: str, frames: list[tuple[np.ndarray, np.ndarray]], enc: str) -> Path:
    rows = []
    for n, (rgb, depth) in enumerate(frames):
        if split == "train":
            sub = root / "data" / "nyu2_train" / "kitchen_0001_out"
            rgb_rel, d_rel = f"data/nyu2_train/kitchen_0001_out/{n}.jpg", f"data/nyu2_train/kitchen_0001_out/{n}.png"
        else:
            sub = root / "data" / "nyu2_test"
            rgb_rel, d_rel = f"data/nyu2_test/{n:05d}_colors.png", f"data/nyu2_test/{n:05d}_depth.png"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / rgb_rel)
        write_depth_png(root / d_rel, depth, encoding=enc)
        rows.append(f"{rgb_rel},{d_rel}")
    (root / "data" / f"nyu2_{split}.csv").write_text("\n".join(rows) + "\n")
    return root


# ---- the embedded sample ------------------------------------------------------------------------------------

def test_frame_00000_is_metres_and_dense(sample_dir):
    src = open_source("densedepth", sample_dir)
    assert len(src) == 34 and src.names[0] == "00000"
    f = src[0]
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == np.float32 and f.valid.all()
    assert f.depth.min() == pytest.approx(1.80, abs=0.005) and f.depth.max() == pytest.approx(3.62, abs=0.01)
    s = frame_to_sample(f)
    assert s["image"].shape == (3, 480, 640) and 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["depth"].shape == (1, 480, 640) and s["valid"].dtype == torch.bool


def test_zip_and_folder_give_identical_samples(sample_dir, tmp_path):
    folder = open_source("densedepth", sample_dir)
    zipped = open_source("densedepth", _zip_of(sample_dir, tmp_path / "nyu_data.zip"))
    assert zipped.names == folder.names and zipped.scenes == folder.scenes
    for i in range(len(folder)):
        a, b = folder[i], zipped[i]
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth) and np.array_equal(a.valid, b.valid)


def test_inner_data_folder_also_opens(sample_dir):
    assert open_source("densedepth", sample_dir / "data").names == open_source("densedepth", sample_dir).names


def test_train_8bit_and_test_16bit_decode_to_same_metres(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.9, size=(24, 32)).astype(np.float32)
    rgb = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    tr = open_source("densedepth", _tiny_layout(tmp_path / "tr", "train", [(rgb, depth)], "u8_10m"), split="train")
    te = open_source("densedepth", _tiny_layout(tmp_path / "te", "test", [(rgb, depth)], "mm16"), split="test")
    d8, d16 = tr[0].depth, te[0].depth
    assert np.abs(d16 - depth).max() <= 0.0005 + 1e-6          # half a millimetre
    assert np.abs(d8 - depth).max() <= 10 / 255 / 2 + 1e-6      # half an 8-bit step of 10 m
    assert np.abs(d8 - d16).max() <= 10 / 255 / 2 + 0.0005 + 1e-6
    assert tr.scenes == ["kitchen_0001"]


def test_split_file_is_by_scene(sample_dir):
    src = open_source("densedepth", sample_dir)
    table = read_split_file(sample_dir / "splits.csv")
    parts = {s: split_indices(src, s, split_file=sample_dir / "splits.csv") for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [27, 2, 5]
    scenes = {s: {src.scenes[i] for i in idx} for s, idx in parts.items()}
    assert not scenes["train"] & scenes["val"] and not scenes["train"] & scenes["test"] and not scenes["val"] & scenes["test"]
    assert table["00058"] == "test"
    hashed = {s: set(split_indices(src, s, val_frac=0.3, test_frac=0.2)) for s in ("train", "val", "test")}
    assert sum(map(len, hashed.values())) == 34
    for a in hashed:
        for b in hashed:
            if a != b:
                assert not {src.scenes[i] for i in hashed[a]} & {src.scenes[i] for i in hashed[b]}


# ---- transforms keep image, depth and valid aligned ----------------------------------------------------------

def _red_metres(s, max_depth=10.0):
    return s["image"][0] * max_depth


def test_transforms_keep_alignment_on_synthetic_scene():
    f = box_scene(96, 128, hole=(10, 20, 30, 50))
    s = frame_to_sample(f)
    out = Resize((64, 96))(BorderCrop((4, 4, 8, 8))(s))
    assert out["image"].shape == (3, 64, 96) and out["depth"].shape == out["valid"].shape == (1, 64, 96)
    v = out["valid"][0]
    # interior pixels (away from the box edge where blur mixes depths): red channel == depth
    err = (_red_metres(out) - out["depth"][0]).abs()[v]
    assert (err < 0.05).float().mean() > 0.9
    assert not out["valid"].all()  # the hole survives
    torch.manual_seed(0)
    flipped = RandomHorizontalFlip(1.0)(out)
    for k in ("image", "depth", "valid"):
        assert torch.equal(flipped[k], out[k].flip(-1))
    swapped = RandomChannelSwap(1.0)(out)
    assert torch.equal(swapped["depth"], out["depth"]) and torch.equal(swapped["valid"], out["valid"])
    assert not torch.equal(swapped["image"], out["image"])
    assert torch.equal(swapped["image"].sort(0).values, out["image"].sort(0).values)


def test_resize_never_mixes_holes_into_depth():
    f = box_scene(64, 64, wall=4.0, box_depth=4.0, hole=(0, 64, 0, 32))
    out = Resize((32, 32))(frame_to_sample(f))
    d, v = out["depth"][0], out["valid"][0]
    assert v[:, :15].sum() == 0 and v[:, 17:].all()
    assert torch.allclose(d[v], torch.full_like(d[v], 4.0))


def test_plane_depth_is_analytic():
    f = plane_scene(48, 64, normal=(0.0, 0.0, 1.0), offset=2.5)
    assert np.allclose(f.depth, 2.5) and f.valid.all()
    z = plane_depth(4, 4, normal=(0.0, -1.0, 1.0), offset=1.0)
    assert np.isinf(z[:2]).any() or (z[np.isfinite(z)] > 0).all()


def test_nyu_border_crop_and_detection(sample_dir):
    s = frame_to_sample(open_source("densedepth", sample_dir)[0])
    out = BorderCrop("nyu")(s)
    assert out["image"].shape[-2:] == (468, 625) and out["border"] == (6, 6, 7, 8)
    t, b, l, r = detect_white_border(s["image"])
    assert (t, b, l, r) == (6, 6, 7, 8)  # the documented NYU border, found by detection
    assert detect_white_border(out["image"]) == (0, 0, 0, 0)
    with pytest.raises(DataError, match="640x480"):
        BorderCrop("nyu")(frame_to_sample(box_scene(64, 64)))
    with pytest.raises(ConfigError):
        BorderCrop("guess")


def test_build_transforms_and_multiple_check():
    cfg = DataConfig(image_size=(64, 96), border_crop="none", flip_p=0.5, swap_p=0.25)
    assert "RandomHorizontalFlip" in repr(build_transforms(cfg, train=True))
    assert "RandomHorizontalFlip" not in repr(build_transforms(cfg, train=False))
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_transforms(DataConfig(image_size=(100, 96)), train=False)


def test_loader_seeding_is_reproducible_and_per_worker():
    frames = [box_scene(32, 32, name=str(i)) for i in range(8)]

    class Src:
        path = "mem"
        names = [f.name for f in frames]
        scenes = ["s"] * 8
        def __len__(self): return 8  # noqa: E704
        def __getitem__(self, i): return frames[i]  # noqa: E704

    cfg = DataConfig(image_size=(32, 32), border_crop="none", flip_p=0.5, swap_p=0.5)
    ds = DepthDataset(Src(), transform=build_transforms(cfg, train=True))

    def run(seed):
        return [b["image"].clone() for b in make_loader(ds, batch_size=1, shuffle=True, num_workers=2, seed=seed)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


# ---- bad input -------------------------------------------------------------------------------------------------

def test_missing_path_names_it(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_source("densedepth", tmp_path / "nope")


def test_zip_without_csv(sample_dir, tmp_path):
    z = _zip_of(sample_dir, tmp_path / "a.zip", skip={"data/nyu2_test.csv"})
    with pytest.raises(DataError, match=r"nyu2_test\.csv.*missing"):
        open_source("densedepth", z)


def test_csv_row_naming_missing_member(sample_dir, tmp_path):
    z = _zip_of(sample_dir, tmp_path / "b.zip", skip={"data/nyu2_test/00008_depth.png"})
    with pytest.raises(DataError, match="00008_depth.png"):
        open_source("densedepth", z)
    folder = tmp_path / "f"
    shutil.copytree(sample_dir / "data", folder / "data")
    (folder / "data" / "nyu2_test" / "00001_colors.png").unlink()
    src = open_source("densedepth", folder)
    with pytest.raises(DataError, match=r"00001_colors\.png.*missing"):
        src[1]


def test_truncated_image(sample_dir, tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(sample_dir / "data", folder / "data")
    p = folder / "data" / "nyu2_test" / "00000_colors.png"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"00000_colors\.png.*(truncated|decode)"):
        open_source("densedepth", folder)[0]


def test_depth_size_differs_from_rgb(tmp_path):
    rgb = np.zeros((24, 32, 3), np.uint8)
    root = _tiny_layout(tmp_path / "s", "test", [(rgb, np.ones((24, 32), np.float32))], "mm16")
    write_depth_png(root / "data/nyu2_test/00000_depth.png", np.ones((12, 16), np.float32))
    with pytest.raises(DataError, match="not an aligned pair"):
        open_source("densedepth", root)[0]


def test_wrong_units_both_ways(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    d = np.full((8, 8), 2.0, np.float32)
    as8 = _tiny_layout(tmp_path / "a", "test", [(rgb, d)], "u8_10m")  # 8-bit where 16-bit mm is expected
    with pytest.raises(DataError, match="expected a 16-bit depth PNG"):
        open_source("densedepth", as8, split="test")[0]
    as16 = _tiny_layout(tmp_path / "b", "train", [(rgb, d)], "mm16")  # 16-bit where 8-bit is expected
    with pytest.raises(DataError, match="expected an 8-bit depth PNG"):
        open_source("densedepth", as16, split="train")[0]
    with pytest.raises(DataError, match="not found"):
        read_depth_png(tmp_path / "missing.png", encoding="mm16")


def test_frame_check_rejects_misaligned():
    with pytest.raises(DataError, match="not an aligned pair"):
        Frame(rgb=np.zeros((4, 6, 3), np.uint8), depth=np.zeros((4, 5), np.float32),
              valid=np.ones((4, 5), bool)).check("x")


def test_photometric_jitter_changes_colour_only_and_stays_in_range():
    from depthlib.data.transforms import RandomPhotometric

    g = torch.Generator().manual_seed(0)
    s = {"image": torch.rand(3, 16, 16, generator=g), "depth": torch.rand(1, 16, 16, generator=g) + 1,
         "valid": torch.ones(1, 16, 16, dtype=torch.bool)}
    assert RandomPhotometric(0.0)(s) is s
    torch.manual_seed(0)
    outs = [RandomPhotometric(0.4)(s) for _ in range(8)]
    assert all(torch.equal(o["depth"], s["depth"]) and torch.equal(o["valid"], s["valid"]) for o in outs)
    assert all(0.0 <= float(o["image"].min()) and float(o["image"].max()) <= 1.0 for o in outs)
    assert all(not torch.allclose(o["image"], s["image"], atol=1e-3) for o in outs)
    means = [float(o["image"].mean()) for o in outs]
    assert max(means) - min(means) > 0.02  # brightness really varies between draws
    with pytest.raises(ConfigError, match="color_jitter"):
        RandomPhotometric(1.5)

def _coded_scene() -> dict[str, torch.Tensor]:
    """A 480x640 sample whose pixels say where they are: red = column / 1000, green = row / 1000,
    depth = 1 + column / 100 + row / 10000 m, valid = odd columns."""
    rows = torch.arange(480, dtype=torch.float32).view(480, 1).expand(480, 640)
    cols = torch.arange(640, dtype=torch.float32).view(1, 640).expand(480, 640)
    image = torch.stack([cols / 1000, rows / 1000, torch.zeros_like(rows)])
    return {"image": image, "depth": (1 + cols / 100 + rows / 10000)[None], "valid": (cols % 2 == 1)[None]}


def test_nyu_border_crop_keeps_image_depth_and_valid_exactly_aligned():
    out = BorderCrop("nyu")(_coded_scene())
    t, b, l, r = 6, 6, 7, 8  # the documented NYU border (rows 0-5 / 474-479, cols 0-6 / 632-639)
    assert out["image"].shape == (3, 480 - t - b, 640 - l - r)
    col = out["image"][0] * 1000  # the source column of each image pixel
    row = out["image"][1] * 1000
    assert float(col[0, 0]) == pytest.approx(l) and float(row[0, 0]) == pytest.approx(t)
    assert float(col[-1, -1]) == pytest.approx(640 - r - 1) and float(row[-1, -1]) == pytest.approx(480 - b - 1)
    # Depth and valid come from exactly the same pixel as the image, at every pixel (no 1-pixel shift).
    torch.testing.assert_close(out["depth"][0], 1 + col / 100 + row / 10000, rtol=0, atol=1e-5)
    assert torch.equal(out["valid"][0], col.round().long() % 2 == 1)


def test_random_zoom_crops_image_depth_and_valid_together_and_keeps_the_metres():
    from depthlib.data.transforms import RandomZoom

    s = _coded_scene()
    assert RandomZoom(1.0)(s) is s
    torch.manual_seed(0)
    sizes = set()
    for _ in range(20):
        out = RandomZoom(1.5)(s)
        h, w = out["image"].shape[-2:]
        sizes.add((h, w))
        assert out["depth"].shape == (1, h, w) and out["valid"].shape == (1, h, w)
        assert 320 <= h <= 480 and 426 <= w <= 640 and abs(w / h - 640 / 480) < 0.01  # 1/z of each side, 4:3 kept
        col, row = out["image"][0] * 1000, out["image"][1] * 1000
        # One window of the source: image, depth (metres unchanged, not divided by z) and valid all come from it.
        torch.testing.assert_close(out["depth"][0], 1 + col / 100 + row / 10000, rtol=0, atol=1e-5)
        assert torch.equal(out["valid"][0], col.round().long() % 2 == 1)
        assert float(col[0, 0]) + w <= 640 and float(row[0, 0]) + h <= 480
    assert len(sizes) > 10  # z really is drawn each time
    with pytest.raises(ConfigError, match="zoom_max"):
        RandomZoom(0.8)


def test_zoom_is_a_training_step_only():
    names = lambda c: [type(t).__name__ for t in c.transforms]  # noqa: E731
    assert names(build_transforms(DataConfig(zoom_max=1.3), train=True))[:3] == ["BorderCrop", "RandomZoom", "Resize"]
    assert "RandomZoom" not in names(build_transforms(DataConfig(zoom_max=1.3), train=False))
    assert "RandomZoom" not in names(build_transforms(DataConfig(), train=True))  # off by default: no draw taken
    with pytest.raises(ConfigError, match="zoom_max must be in"):
        build_transforms(DataConfig(zoom_max=0.5), train=True)  # a value that would never zoom is refused, not ignored
    torch.manual_seed(0)
    out = build_transforms(DataConfig(zoom_max=1.3), train=True)(_coded_scene())
    assert out["image"].shape[-2:] == (192, 256)  # resized back to the training size after the crop


def test_8bit_train_depth_decodes_to_hand_computed_metres(tmp_path):
    """A grey 8-bit PNG written byte by byte (not by the project's writer): 0..255 = 0..10 m, value * 10 / 255."""
    import struct
    import zlib

    values = [0, 1, 51, 128, 254, 255]
    raw = b"".join(b"\x00" + bytes([v]) for v in values)  # 6 rows of one pixel, filter byte 0 each

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, len(values), 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path = tmp_path / "depth_u8.png"
    path.write_bytes(png)
    got = read_depth_png(path, encoding="u8_10m")[:, 0]
    hand = [0.0, 0.0392157, 2.0, 5.0196078, 9.9607843, 10.0]  # v * 10 / 255, by hand
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-6)


def test_8bit_train_depth_of_a_real_frame(tmp_path, sample_dir):
    """A real NYU depth frame stored as DenseDepth stores train depth (8-bit): its bytes, read by hand, give the metres."""
    mm = np.asarray(Image.open(Path(sample_dir) / "data/nyu2_test/00000_depth.png"), dtype=np.float64)
    u8 = np.clip(np.round(mm / 1000 * 25.5), 0, 255).astype(np.uint8)  # 1 level = 10/255 m
    path = tmp_path / "00000_u8.png"
    Image.fromarray(u8, mode="L").save(path)
    got = read_depth_png(path, encoding="u8_10m")
    assert got.shape == (480, 640)
    for v, u in ((0, 0), (240, 320), (479, 639), (100, 500)):
        assert float(got[v, u]) == pytest.approx(int(u8[v, u]) * 10 / 255, abs=1e-6)
    # Frame 00000 spans 1.80-3.62 m (data/sample/README.md): the decoded 8-bit copy is within one level.
    assert float(got.min()) == pytest.approx(1.80, abs=0.04) and float(got.max()) == pytest.approx(3.62, abs=0.04)


def test_a_reader_option_it_lacks_is_refused_by_name(sample_dir):
    # 01's source_options once reached a reader as a TypeError traceback (split="test" for bts, a typo for pairs).
    with pytest.raises(ConfigError, match=r"'bts' has no option 'split'; its options: files, max_depth\. "
                                          r"Fix: drop split: this reader has no splits"):
        open_source("bts", sample_dir / "raw_depth", split="test")
    with pytest.raises(ConfigError, match=r"'pairs' has no option 'deph_scale'.*\(deph_scale -> depth_scale\)"):
        open_source("pairs", sample_dir, deph_scale=0.001)
    assert len(open_source("bts", sample_dir / "raw_depth", max_depth=10.0)) == 3
