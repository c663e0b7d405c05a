"""Source "pairs": real frames stored in other units and layouts, declared scales, refusals and warnings."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _own_data import TUM_SCALE, resized, write_tum_folder
from depthlib.core.errors import DataError
from depthlib.data import open_source
from depthlib.data.prepared import PreparedDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.data.select import select_frames
from depthlib.notebook.workbook import split_labels

LABELED_01MM = "labeled_full_depth_depth2hha_python/0.png"   # NYU labeled frame #1, uint16 in 0.1 mm


def _glob_layout(tmp_path: Path, sample_dir: Path, shared_nyu: Path) -> Path:
    root = tmp_path / "own"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    shutil.copy(sample_dir / "data/nyu2_test/00000_colors.png", root / "rgb/00000.png")
    shutil.copy(shared_nyu / LABELED_01MM, root / "depth/00000.png")
    return root


def test_labeled_frame_in_tenth_mm_equals_the_mm_png(tmp_path, sample_dir, shared_nyu) -> None:
    root = _glob_layout(tmp_path, sample_dir, shared_nyu)
    src = open_source("pairs", str(root), depth_scale=1e-4)
    f = src[0]
    ref = open_source("densedepth", str(sample_dir), split="test")[0]       # 00000_depth.png, millimetres
    assert src.names == ["rgb/00000"] and f.scene == "own" and src.depth_unit_m == 1e-4
    np.testing.assert_array_equal(f.rgb, ref.rgb)
    assert f.valid.all() and f.depth.dtype == np.float32
    diff = np.abs(f.depth.astype(np.float64) - ref.depth)
    assert diff.max() <= 1e-3 + 1e-6 and diff.mean() < 6e-4, (diff.max(), diff.mean())
    # The same file read as millimetres would be 10x too deep: the difference is not tolerance-sized.
    wrong = open_source("pairs", str(root), depth_scale=1e-3, check_frames=0)   # the unit check skipped on purpose
    assert np.abs(wrong[0].depth[f.valid] - ref.depth[f.valid]).mean() > 1.0
    # ...which the unit check refuses: a 29 m median is beyond the 10 m max_depth, nearly every pixel masked.
    with pytest.raises(DataError, match=r"uint16 depth's median is 29.4[0-9] m \(plausible: 0.1-10 m\).*"
                                        r"0.0001 \(0.1 mm\).*Fix: declare the unit"):
        open_source("pairs", str(root), depth_scale=1e-3)


def test_undeclared_integer_scale_is_refused_with_the_value_range(tmp_path, sample_dir, shared_nyu) -> None:
    root = _glob_layout(tmp_path, sample_dir, shared_nyu)
    raw = np.asarray(Image.open(root / "depth/00000.png"))
    with pytest.raises(DataError) as e:
        open_source("pairs", str(root))
    msg = str(e.value)
    assert f"stored values {raw.min()}..{raw.max()}" in msg and f"median {np.median(raw):g}" in msg
    assert "depth_scale=0.0001 (0.1 mm" in msg and "depth_scale=0.0002 (1/5000 m" in msg
    assert "00000.png" in msg and "never read in a guessed unit" in msg
    assert "depth_scale=1 (metres" not in msg     # 29 km median: not offered as a likely choice


@pytest.mark.parametrize("scale,word", [(1.0, "median is 2.942e\\+04 m"), (1e-7, "median is 0.00294[0-9] m")])
def test_implausible_scale_is_refused_and_a_plausible_one_is_not(tmp_path, sample_dir, shared_nyu, scale,
                                                                 word) -> None:
    root = _glob_layout(tmp_path, sample_dir, shared_nyu)
    with pytest.raises(DataError, match=word + r".*probably wrong.*0.0001 \(0.1 mm\)"):
        open_source("pairs", str(root), depth_scale=scale, max_depth=1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_source("pairs", str(root), depth_scale=1e-4).median_depth_m == pytest.approx(2.9415)


def test_a_scene_in_another_unit_is_found_among_good_ones(tmp_path, sample_dir) -> None:
    # A user trial stored one scene as 8-bit PNGs (0..255 = 0..10 m) and another as metres in uint16, declared as
    # millimetres like the rest: only the first 3 spread frames were checked, so both went through silently.
    root = tmp_path / "own"
    frames = sorted(sample_dir.glob("data/nyu2_test/*_depth.png"))[:6]
    for k, f in enumerate(frames):
        scene = root / f"scene{k // 2}"
        (scene / "rgb").mkdir(parents=True, exist_ok=True)
        (scene / "depth").mkdir(exist_ok=True)
        shutil.copy(str(f).replace("_depth", "_colors"), scene / "rgb" / f"{k}.png")
        mm = np.array(Image.open(f))
        out = (np.clip(mm / 10000 * 255, 0, 255).astype(np.uint8) if k // 2 == 2 else mm)   # scene2: 8-bit
        Image.fromarray(out).save(scene / "depth" / f"{k}.png")
    with pytest.raises(DataError, match=r"scene2/depth/4.png: with depth_scale 0.001 the uint8 depth's median is "
                                        r"0.0[0-9]+ m .*0.0392157 \(0..255 = 0..10 m\)"):
        open_source("pairs", str(root), depth_scale=1e-3)
    assert len(open_source("pairs", str(root), depth_scale=1e-3, check_frames=0)) == 6


def test_bts_frames_through_a_list_file(tmp_path, shared_nyu) -> None:
    root = shared_nyu / "bts_sync_metric3d"
    lst = tmp_path / "nyudepthv2_test_files_with_gt.txt"   # outside the data folder: entries are relative to it
    lst.write_text("/rgb/rgb_00000.jpg /depth/sync_depth_00000.png 518.8579\n"
                   "/rgb/rgb_00050.jpg None 518.8579\n"
                   "/rgb/rgb_00100.jpg /depth/sync_depth_00100.png 518.8579\n")
    src = open_source("pairs", str(root), files=str(lst), depth_scale=0.001)
    bts = open_source("bts", str(root))
    assert len(src) == 2 and src.skipped == 1 and src.names == ["rgb/rgb_00000", "rgb/rgb_00100"]
    for mine, theirs in ((src[0], bts[0]), (src[1], bts[2])):
        np.testing.assert_array_equal(mine.rgb, theirs.rgb)
        np.testing.assert_array_equal(mine.valid, theirs.valid)
        np.testing.assert_allclose(mine.depth, theirs.depth, atol=1e-6)
        assert mine.meta["focal"] == 518.8579 and 0.25 <= (~mine.valid).mean() <= 0.33
    with pytest.raises(DataError, match="integer depth \\(uint16\\) in undeclared units: stored values 0?[1-9]"):
        open_source("pairs", str(root), files=str(lst))
    lst.write_text("/rgb/rgb_00000.jpg /depth/sync_depth_00007.png 518.8579\n")
    with pytest.raises(DataError, match="sync_depth_00007.png: listed in .* but not found"):
        open_source("pairs", str(root), files=str(lst), depth_scale=0.001)


def test_tum_folder_round_trips(tmp_path, sample_dir) -> None:
    """TUM layout (1/5000 m, timestamps, associate.py lists, 400x300) -> frames -> prepared file, exactly."""
    dd = open_source("densedepth", str(sample_dir), split="test")
    frames = [(scene, *resized(dd[i], (400, 300))) for scene, i in (("fr1_desk", 0), ("fr1_desk", 1), ("fr2_xyz", 2))]
    root = tmp_path / "tum"
    written = write_tum_folder(root, frames)
    k = [525.0, 525.0, 319.5, 239.5]
    src = open_source("pairs", str(root), files="*/associations.txt", depth_scale=TUM_SCALE, intrinsics=k)
    assert len(src) == 3 and src.scenes == ["fr1_desk", "fr1_desk", "fr2_xyz"]
    assert src.names == [w["name"] for w in written] and src.depth_unit_m == TUM_SCALE
    for i, w in enumerate(written):
        f = src[i]
        assert f.depth.shape == (300, 400) and f.meta["intrinsics"] == k and f.meta["focal"] == 525.0
        np.testing.assert_array_equal(f.rgb, w["rgb"])
        np.testing.assert_array_equal(f.valid, w["codes"] > 0)
        assert 0.02 < (~f.valid).mean() < 0.04 and (f.depth[~f.valid] == 0).all()
        np.testing.assert_allclose(f.depth[f.valid], w["codes"][f.valid] * TUM_SCALE, rtol=1e-6)
        np.testing.assert_allclose(f.depth[f.valid], frames[i][2][f.valid], atol=TUM_SCALE / 2 + 1e-6)
    # Selection and splitting see the scenes; the prepared file stores the codes exactly.
    assert select_frames(src, scenes=["fr2_xyz"]).indices == [2]
    labels = split_labels(src, val_frac=0.5, seed=3)
    assert labels[0] == labels[1]                                # a scene never straddles splits
    out = write_prepared(src, tmp_path / "tum.h5", split=labels, depth_unit_m=src.depth_unit_m, progress=False)
    back = PreparedDataset(str(out))
    assert Counter(back.splits) == Counter(labels)
    for i in range(3):
        _, codes, valid = back.read_raw(i)
        np.testing.assert_array_equal(codes, written[i]["codes"])
        np.testing.assert_array_equal(valid, written[i]["codes"] > 0)


def test_naming_rule_with_a_key_and_its_refusals(tmp_path, shared_nyu) -> None:
    """BTS names in one folder per scene, paired by the number in the name; unpaired RGB is an error."""
    root = tmp_path / "mine"
    for scene, n in (("kitchen", "00000"), ("kitchen", "00050"), ("office", "00100")):
        (root / scene).mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_nyu / f"bts_sync_metric3d/rgb/rgb_{n}.jpg", root / scene / f"rgb_{n}.jpg")
        shutil.copy(shared_nyu / f"bts_sync_metric3d/depth/sync_depth_{n}.png", root / scene / f"sync_depth_{n}.png")
    rule = dict(rgb="rgb_*.jpg", depth="sync_depth_*.png", key=r"(\d+)$", depth_scale=0.001)
    src = open_source("pairs", str(root), **rule, invalid=[0, "max"], focal=518.8579)
    assert src.scenes == ["kitchen", "kitchen", "office"] and src.names[2] == "office/rgb_00100"
    np.testing.assert_array_equal(src[2].depth, open_source("bts", str(shared_nyu / "bts_sync_metric3d"))[2].depth)
    assert src[0].meta["focal"] == 518.8579 and "intrinsics" not in src[0].meta
    shutil.copy(shared_nyu / "bts_sync_metric3d/rgb/rgb_00000.jpg", root / "office" / "rgb_00007.jpg")
    with pytest.raises(DataError, match="rgb_00007.jpg: has no depth file with key '00007'"):
        open_source("pairs", str(root), **rule)
    (root / "office" / "rgb_00007.jpg").unlink()
    shutil.copy(shared_nyu / "bts_sync_metric3d/rgb/rgb_00000.jpg", root / "rgb_00001.jpg")
    shutil.copy(shared_nyu / "bts_sync_metric3d/depth/sync_depth_00000.png", root / "sync_depth_00001.png")
    with pytest.raises(DataError, match="both here and in scene sub-folders"):
        open_source("pairs", str(root), **rule)
    with pytest.raises(DataError, match="no RGB file matches 'rgb/\\*'"):
        open_source("pairs", str(root / "kitchen"), depth_scale=0.001)


def test_float_depth_files_invalid_values_and_exr(tmp_path) -> None:
    """float32 .npy and float TIFF are metres (NaN / declared value invalid); mm floats need depth_scale; EXR refused."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (30, 40)).astype(np.float32)
    depth[0, :5] = np.nan
    depth[1, :5] = 0.0
    depth[2, :5] = 12.0                   # beyond max_depth
    depth[3, :5] = -1.0                   # a declared invalid value
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    root = tmp_path / "floats"
    for sub in ("rgb", "depth"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(rgb).save(root / "rgb/a.png")
    Image.fromarray(rgb).save(root / "rgb/b.jpg", quality=95)
    np.save(root / "depth/a.npy", depth)
    Image.fromarray(depth).save(root / "depth/b.tif")
    src = open_source("pairs", str(root), invalid=-1.0)
    good = np.isfinite(depth) & (depth > 0) & (depth <= 10.0)
    for f in (src[0], src[1]):
        np.testing.assert_array_equal(f.valid, good)
        np.testing.assert_array_equal(f.depth[good], depth[good])
    assert src.depth_unit_m == 0.001       # float files: the prepared file stores millimetres
    np.save(root / "depth/a.npy", depth * 1000.0)
    (root / "depth/b.tif").unlink()
    (root / "rgb/b.jpg").unlink()
    with pytest.raises(DataError, match="undeclared \\(float files are read as metres\\).*0.001 \\(millimetres\\)"):
        open_source("pairs", str(root), max_depth=1e9)
    np.testing.assert_allclose(open_source("pairs", str(root), depth_scale=0.001)[0].depth[good], depth[good], rtol=1e-6)
    (root / "depth/a.npy").rename(root / "depth/a.exr")
    with pytest.raises(DataError, match="a.exr: OpenEXR depth cannot be read.*convert"):
        open_source("pairs", str(root))


def test_csv_list_with_header_scene_column_and_intrinsics(tmp_path, shared_nyu) -> None:
    root = shared_nyu / "bts_sync_metric3d"
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("time,rgb,depth,scene,fx,fy,cx,cy\n"
                        "1,rgb/rgb_00000.jpg,depth/sync_depth_00000.png,living,518.86,519.47,325.58,253.74\n"
                        "2,rgb/rgb_00050.jpg,depth/sync_depth_00050.png,study,518.86,519.47,325.58,253.74\n")
    src = open_source("pairs", str(root), files=str(csv_file), depth_scale=0.001)
    assert src.scenes == ["living", "study"] and src[1].meta["intrinsics"] == [518.86, 519.47, 325.58, 253.74]
    with pytest.raises(DataError, match="per-frame .* and a global focal/intrinsics"):
        open_source("pairs", str(root), files=str(csv_file), depth_scale=0.001, focal=500.0)
    csv_file.write_text("a b c d e\n")
    with pytest.raises(DataError, match="5 fields, a count with no default meaning.*columns="):
        open_source("pairs", str(root), files=str(csv_file), depth_scale=0.001)


def test_numbers_typed_as_text_are_refused_by_name(sample_dir) -> None:
    # '"0.001"' in source_options reached numpy as "'>' not supported between 'str' and 'int'".
    with pytest.raises(DataError, match=r"depth_scale must be a number, got '0.001'\. Fix: write it without quotes"):
        open_source("pairs", str(sample_dir / "raw_depth"), depth_scale="0.001")
    with pytest.raises(DataError, match=r"max_depth must be a number, got '10m'.*e\.g\. max_depth=10\."):
        open_source("pairs", str(sample_dir / "raw_depth"), depth_scale=0.001, max_depth="10m")


def _sun3d_frames(tmp_path: Path, n: int = 2) -> Path:
    """The first n frames of SUN3D's study room as shipped (frame-000935.color.png / .depth.png side by side)."""
    from _own_data import SUN3D

    src = SUN3D / "fragment-1-rgbd-frames"
    if not src.is_dir():
        pytest.skip(f"SUN3D study room frames not found at {src} (present in CI and developer checkouts)")
    root = tmp_path / "sun3d"
    root.mkdir()
    for color in sorted(src.glob("*.color.png"))[:n]:
        shutil.copy(color, root / color.name)
        depth = color.name.replace(".color.png", ".depth.png")
        shutil.copy(src / depth, root / depth)
    return root


def test_names_that_differ_only_by_a_suffix_get_the_key_that_pairs_them(tmp_path) -> None:
    # Issue 25 trial: rgb="*.color.png", depth="*.depth.png" said "has no depth file with key 'frame-000935.color' ...
    # Fix: add the depth, remove the RGB file, or list the pairs in a file", and the docs' example key '(\d+)$' fails
    # on these names (their stems end in ".color" / ".depth").
    root = _sun3d_frames(tmp_path)
    kw = dict(rgb="*.color.png", depth="*.depth.png", depth_scale=0.001)
    with pytest.raises(DataError, match=r"has no depth file with key 'frame-000935.color'.*Fix: the names differ only "
                                        r"around a shared part \(frame-000935.color.png and frame-000935.depth.png\): "
                                        r"key='\(\\\\d\+\)' pairs every RGB file here with a depth file \(in the "
                                        r"profile's source_options: key = '\(\\d\+\)'\); or add the depth"):
        open_source("pairs", str(root), **kw)
    # every key the docs show pairs both the docs' own example names and SUN3D's
    import re

    docs = (Path(__file__).resolve().parent.parent / "docs" / "own-data.md").read_text()
    keys = re.findall(r"key = '([^']+)'", docs)
    assert keys
    other = tmp_path / "other"
    for sub in ("rgb_0001.jpg", "sync_depth_0001.png", "rgb_0002.jpg", "sync_depth_0002.png"):
        (other / sub).parent.mkdir(exist_ok=True)
        shutil.copy(next(root.glob("*.color.png" if sub.startswith("rgb") else "*.depth.png")), other / sub)
    for key in keys:
        assert len(open_source("pairs", str(root), key=key, **kw)) == 2, key
        assert len(open_source("pairs", str(other), rgb="rgb_*.jpg", depth="sync_depth_*.png", key=key,
                               depth_scale=0.001)) == 2, key
