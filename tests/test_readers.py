"""Every NYU form: real-file checks on ../shared/data/nyu_samples, plus bad input that must fail clearly."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from depthlib.core.errors import DataError
from depthlib.data import open_source
from depthlib.data.frame import Frame
from depthlib.data.holes import fill_holes
from depthlib.data.io import read_depth_png
from depthlib.data.kinect import disparity_to_metres, register_depth
from depthlib.data.labeled_mat import read_splits
from depthlib.data.raw_kinect import read_pgm_disparity, read_raw_pair
from depthlib.data.select import SubsetSource, select_frames

RAW = "raw_kinect_open3d"


def _agreement(depth: np.ndarray, valid: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    both = valid & (ref > 0)
    err = np.abs(depth - ref)[both]
    return float(np.median(err)), float((err < 0.05).mean()), float((valid == (ref > 0)).mean())


# ---------------------------------------------------------------- raw Kinect

def test_disparity_to_metres_hand_values() -> None:
    d = np.array([[0, 600, 1060, 1092, 1093, 2047]], dtype=np.uint16)
    z, v = disparity_to_metres(d)
    assert v.tolist() == [[True, True, True, True, False, False]]
    np.testing.assert_allclose(z[0, :4], [351.3 / 1092.5, 351.3 / 492.5, 10.0, 10.0], rtol=1e-6)
    assert (z[~v] == 0).all()


def test_registration_reproduces_toolbox_output(shared_nyu: Path) -> None:
    """Registering the raw Open3D frame must reproduce BTS sync_depth_00000.png (the toolbox's output)."""
    f = read_raw_pair(shared_nyu / RAW / "NYU_color.ppm", shared_nyu / RAW / "NYU_depth.pgm")
    ref = read_depth_png(shared_nyu / "bts_sync_metric3d/depth/sync_depth_00000.png", encoding="mm16")
    med, within, agree = _agreement(f.depth, f.valid, ref)
    # Measured 2026-11-25: median 0.27 mm, 99.97 % within 5 cm, valid masks agree on 99.67 % of pixels.
    assert med < 0.002 and within > 0.995 and agree > 0.99, (med, within, agree)
    # The same thresholds reject depth that was converted but not registered (median 6.8 cm, 41 % within 5 cm).
    z, v = disparity_to_metres(read_pgm_disparity(shared_nyu / RAW / "NYU_depth.pgm"))
    med0, within0, _ = _agreement(z, v, ref)
    assert med0 > 0.02 and within0 < 0.6
    # The toolbox's undistorted RGB is what BTS stored as rgb_00000.jpg (mean abs diff ~4 levels = JPEG noise).
    ref_rgb = np.asarray(Image.open(shared_nyu / "bts_sync_metric3d/rgb/rgb_00000.jpg"), dtype=np.float32)
    assert np.abs(f.rgb - ref_rgb).mean() < 8 < np.abs(np.asarray(Image.open(shared_nyu / RAW / "NYU_color.ppm"),
                                                                   dtype=np.float32) - ref_rgb).mean()


def test_register_depth_projects_a_plane_consistently() -> None:
    """A fronto-parallel wall stays at its depth after registration (rotation ~ -I with the toolbox sign)."""
    disp = np.full((480, 640), 1092.5 - 351.3 / 2.0, dtype=np.float64).round().astype(np.uint16)
    depth, valid = register_depth(disp)
    z = 351.3 / (1092.5 - float(disp[0, 0]))
    assert valid.mean() > 0.6
    np.testing.assert_allclose(depth[valid], z, atol=0.01)


def _scene(tmp: Path, shared: Path, depth_names: list[str], rgb_names: list[str], index: list[str] | None = None) -> Path:
    d = tmp / "bedroom_0001"
    d.mkdir(parents=True)
    for n in rgb_names:
        shutil.copy(shared / RAW / "NYU_color.ppm", d / n)
    for n in depth_names:
        shutil.copy(shared / RAW / "NYU_depth.pgm", d / n)
    if index is not None:
        (d / "INDEX.txt").write_text("\n".join(index) + "\n")
    return d


def test_raw_scene_pairs_by_nearest_timestamp(shared_nyu: Path, tmp_path: Path) -> None:
    rgbs = ["r-100.000000-1.ppm", "r-100.040000-2.ppm", "r-105.000000-3.ppm"]
    depths = ["d-100.030000-1.pgm", "d-103.000000-2.pgm"]   # the second has no RGB within 50 ms
    _scene(tmp_path, shared_nyu, depths, rgbs)
    src = open_source("raw_kinect", str(tmp_path))
    assert len(src) == 1 and src.scenes == ["bedroom_0001"]
    f = src[0]
    assert f.meta["rgb_file"].endswith("r-100.040000-2.ppm") and abs(f.meta["dt"] - 0.01) < 1e-9
    assert f.rgb.shape == (480, 640, 3) and f.depth.shape == (480, 640)


def test_raw_scene_pairs_with_the_nearest_rgb_before_the_depth(shared_nyu: Path, tmp_path: Path) -> None:
    """Depth at 100.01 s pairs with the RGB frame at 100.00 s (10 ms before), not 100.04 s (30 ms after)."""
    rgbs = ["r-99.900000-1.ppm", "r-100.000000-2.ppm", "r-100.040000-3.ppm"]
    _scene(tmp_path, shared_nyu, ["d-100.010000-1.pgm"], rgbs)
    src = open_source("raw_kinect", str(tmp_path))
    assert src.names == ["bedroom_0001/d-100.010000-1"]
    f = src[0]
    # dt = RGB time - depth time; 100.00 - 100.01 in float64 is -0.01 within 1e-13.
    assert f.meta["rgb_file"].endswith("r-100.000000-2.ppm") and abs(f.meta["dt"] + 0.01) < 1e-9, f.meta


def test_raw_scene_missing_depth_frames(shared_nyu: Path, tmp_path: Path) -> None:
    names = ["r-1.0-1.ppm", "d-1.01-1.pgm", "d-1.05-2.pgm"]
    _scene(tmp_path, shared_nyu, names[1:2], names[:1], index=names)
    with pytest.raises(DataError, match=r"d-1\.05-2\.pgm.*INDEX\.txt"):
        open_source("raw_kinect", str(tmp_path))
    shutil.rmtree(tmp_path / "bedroom_0001")
    _scene(tmp_path, shared_nyu, [], ["r-1.0-1.ppm"])
    with pytest.raises(DataError, match="no depth frames"):
        open_source("raw_kinect", str(tmp_path))


def test_pgm_byte_order_and_size_errors(shared_nyu: Path, tmp_path: Path) -> None:
    raw = (shared_nyu / RAW / "NYU_depth.pgm").read_bytes()
    head, payload = raw[:-640 * 480 * 2], raw[-640 * 480 * 2:]
    good = read_pgm_disparity(shared_nyu / RAW / "NYU_depth.pgm")
    assert good.max() == 2047 and abs((good == 2047).mean() - 0.072) < 0.005
    swapped = tmp_path / "big.pgm"
    swapped.write_bytes(head + np.frombuffer(payload, "<u2").astype(">u2").tobytes())
    with pytest.raises(DataError, match="byte order.*byte_order='big'"):
        read_pgm_disparity(swapped)
    np.testing.assert_array_equal(read_pgm_disparity(swapped, byte_order="big"), good)
    short = tmp_path / "short.pgm"
    short.write_bytes(raw[:-1000])
    with pytest.raises(DataError, match="truncated"):
        read_pgm_disparity(short)
    small = tmp_path / "small.pgm"
    small.write_bytes(b"P5\n# comment\n320 240\n65535\n" + np.zeros((240, 320), "<u2").tobytes())
    assert read_pgm_disparity(small).shape == (240, 320)
    with pytest.raises(DataError, match="320x240.*640x480"):
        read_raw_pair(shared_nyu / RAW / "NYU_color.ppm", small)


# ---------------------------------------------------------------- labeled .mat

def _labeled_mat(path: Path, n: int = 2, w: int = 8, h: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A small file in the real v7.3 layout as h5py shows it: images (N, 3, W, H), depths (N, W, H)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, w, h), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.0, (n, w, h)).astype(np.float32)
    raw = depths.copy()
    raw[:, :2, :] = 0  # a projection border of holes (columns 0-1 in HxW terms)
    with h5py.File(path, "w") as f:
        f["images"], f["depths"], f["rawDepths"] = images, depths, raw
        refs = [f.create_dataset(f"#refs#/s{i}", data=np.array([[ord(c)] for c in f"office_{i:04d}"], np.uint16)).ref
                for i in range(n)]
        f.create_dataset("scenes", data=np.array([refs], dtype=h5py.ref_dtype))
        trefs = [f.create_dataset(f"#refs#/t{i}", data=np.array([[ord(c)] for c in "office"], np.uint16)).ref
                 for i in range(n)]
        f.create_dataset("sceneTypes", data=np.array([trefs], dtype=h5py.ref_dtype))
    return images, depths


def test_labeled_mat_transposes_and_scenes(tmp_path: Path) -> None:
    p = tmp_path / "labeled.mat"
    images, depths = _labeled_mat(p)
    src = open_source("labeled_mat", str(p))
    f = src[1]
    assert f.rgb.shape == (6, 8, 3) and f.depth.shape == (6, 8)
    assert f.rgb[5, 7, 2] == images[1, 2, 7, 5] and f.rgb[1, 3, 0] == images[1, 0, 3, 1]
    assert f.depth[4, 2] == depths[1, 2, 4]
    assert f.scene == "office_0001" and f.meta["scene_type"] == "office" and f.name == "00001" and f.valid.all()
    r = open_source("labeled_mat", str(p), depth="raw")[0]
    assert not r.valid[:, :2].any() and r.valid[:, 2:].all() and (r.depth[:, :2] == 0).all()


def test_labeled_mat_real_layout_file_matches_depth2hha_png(shared_nyu: Path) -> None:
    p = shared_nyu / "converted_h5/labeled_mat_layout_index0001.h5"
    with h5py.File(p) as f:
        assert f["images"].shape == (1, 3, 640, 480)
    filled = open_source("labeled_mat", str(p))[0]
    raw = open_source("labeled_mat", str(p), depth="raw")[0]
    full = read_depth_png(shared_nyu / "labeled_full_depth_depth2hha_python/0.png", encoding="dmm16")
    full_raw = read_depth_png(shared_nyu / "labeled_full_depth_depth2hha_python/0_raw.png", encoding="dmm16")
    np.testing.assert_allclose(filled.depth, full, atol=1e-4)
    np.testing.assert_allclose(raw.depth, full_raw, atol=1e-4)
    assert abs((~raw.valid).mean() - 0.239) < 0.01
    dd = open_source("densedepth", str(shared_nyu / "densedepth_nyu2_test"))[0]  # labeled #1 = test 00000
    np.testing.assert_array_equal(filled.rgb, dd.rgb)


def _rewritable(path: Path) -> bool:
    """True when this process holds no HDF5 handle on `path`: HDF5 refuses to truncate a file it has open."""
    try:
        with h5py.File(path, "w"):
            return True
    except OSError:
        return False


def test_labeled_mat_releases_its_file(tmp_path: Path) -> None:
    """Opening, close() and the with-block leave no HDF5 handle: the .mat can be rewritten in this process."""
    p = tmp_path / "labeled.mat"
    _labeled_mat(p)
    src = open_source("labeled_mat", str(p))
    assert _rewritable(p)                      # reading the frame list holds no handle
    _labeled_mat(p)
    first = src[1]
    assert not _rewritable(p)                  # a frame read holds one (the check is not vacuous)
    src.close()
    assert _rewritable(p)
    _labeled_mat(p)
    with open_source("labeled_mat", str(p)) as src:
        again = src[1]
    assert _rewritable(p)
    np.testing.assert_array_equal(again.rgb, first.rgb)
    np.testing.assert_array_equal(again.depth, first.depth)


def test_official_splits(shared_nyu: Path, tmp_path: Path) -> None:
    s = read_splits(shared_nyu / "metadata/splits.mat")
    assert len(s["train"]) == 795 and len(s["test"]) == 654
    assert s["train"][:3].tolist() == [2, 3, 4] and s["test"][:3].tolist() == [0, 1, 8]
    assert len(np.union1d(s["train"], s["test"])) == 1449
    p = tmp_path / "labeled.mat"
    _labeled_mat(p)
    with pytest.raises(DataError, match="indexes frame 1449 but .* holds 2"):
        open_source("labeled_mat", str(p), split="test", splits_file=str(shared_nyu / "metadata/splits.mat"))
    with pytest.raises(DataError, match="splits.mat"):
        open_source("labeled_mat", str(p), split="train")


def test_truncated_mat_and_h5(tmp_path: Path, shared_nyu: Path) -> None:
    p = tmp_path / "labeled.mat"
    _labeled_mat(p, n=4, w=64, h=48)
    cut = tmp_path / "cut.mat"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.mat.*(truncated|re-download)"):
        src = open_source("labeled_mat", str(cut))
        src[3]
    good = shared_nyu / "converted_h5/fastdepth_layout/val/official/00001.h5"
    bad = tmp_path / "00001.h5"
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"00001\.h5.*truncated"):
        open_source("fastdepth_h5", str(bad))[0]


# ---------------------------------------------------------------- FastDepth h5, BTS, nyu_test.zip

def test_fastdepth_h5_real_file(shared_nyu: Path) -> None:
    src = open_source("fastdepth_h5", str(shared_nyu / "converted_h5/fastdepth_layout"), split="val")
    f = src[0]
    assert src.names == ["official/00001"] and f.scene == "official" and f.valid.all()
    dd = open_source("densedepth", str(shared_nyu / "densedepth_nyu2_test"))[0]
    np.testing.assert_array_equal(f.rgb, dd.rgb)
    assert np.abs(f.depth - dd.depth).max() <= 0.0011
    with pytest.raises(DataError, match="labeled_mat"):
        open_source("fastdepth_h5", str(shared_nyu / "converted_h5/labeled_mat_layout_index0001.h5"))[0]


def test_bts_sync_real_files(shared_nyu: Path, tmp_path: Path) -> None:
    src = open_source("bts", str(shared_nyu / "bts_sync_metric3d"))
    assert len(src) == 3
    f = src[0]
    holes = (~f.valid).mean()
    assert 0.25 <= holes <= 0.33 and (f.depth[~f.valid] == 0).all()
    p5, p50, p95 = np.percentile(f.depth[f.valid], [5, 50, 95])
    assert abs(p5 - 2.35) < 0.05 and abs(p50 - 3.26) < 0.05 and abs(p95 - 6.1) < 0.15
    tiny = open_source("bts", str(shared_nyu / "bts_sync_tiny_mmsegmentation"))[0]
    assert tiny.depth.shape == (120, 160) and tiny.scene == "bookstore_0001d" and abs((~tiny.valid).mean() - 0.338) < 0.01
    lst = tmp_path / "files.txt"
    lst.write_text("/rgb/rgb_00050.jpg /depth/sync_depth_00050.png 518.8579\n/rgb/rgb_00100.jpg None 518.8579\n")
    listed = open_source("bts", str(shared_nyu / "bts_sync_metric3d"), files=str(lst))
    assert len(listed) == 1 and listed.skipped == 1
    np.testing.assert_array_equal(listed[0].depth, src[1].depth)
    d = tmp_path / "sync" / "kitchen_0001"
    d.mkdir(parents=True)
    shutil.copy(shared_nyu / "bts_sync_metric3d/rgb/rgb_00000.jpg", d / "rgb_00007.jpg")
    with pytest.raises(DataError, match="sync_depth_00007.png.*missing"):
        open_source("bts", str(tmp_path / "sync"))


def _npy_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_nyu_test_npy_zip_memory_mapped(shared_nyu: Path, tmp_path: Path) -> None:
    dd = open_source("densedepth", str(shared_nyu / "densedepth_nyu2_test"))
    rgb = np.stack([dd[i].rgb for i in range(2)])
    depth = np.stack([dd[i].depth for i in range(2)])
    members = {"eigen_test_rgb.npy": rgb, "eigen_test_depth.npy": depth,
               "eigen_test_crop.npy": np.array([20, 459, 24, 615])}
    zp = tmp_path / "nyu_test.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_STORED) as z:
        for k, v in members.items():
            z.writestr(k, _npy_bytes(v))
    src = open_source("nyu_test_npy", str(zp))
    assert isinstance(src.rgb, np.memmap) and src.crop == [20, 459, 24, 615]
    np.testing.assert_array_equal(src[1].rgb, rgb[1])
    np.testing.assert_array_equal(src[1].depth, depth[1])
    folder = tmp_path / "extracted"
    folder.mkdir()
    for k, v in members.items():
        np.save(folder / k, v)
    np.testing.assert_array_equal(open_source("nyu_test_npy", str(folder))[0].depth, depth[0])
    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in members.items():
            z.writestr(k, _npy_bytes(v))
    with pytest.raises(DataError, match="deflated.*extract"):
        open_source("nyu_test_npy", str(deflated))
    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as z:
        z.writestr("eigen_test_rgb.npy", _npy_bytes(rgb))
    with pytest.raises(DataError, match=r"partial\.zip.*eigen_test_depth\.npy"):
        open_source("nyu_test_npy", str(partial))


def test_densedepth_zip_without_csv(shared_nyu: Path, tmp_path: Path) -> None:
    zp = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.write(shared_nyu / "densedepth_nyu2_test/data/nyu2_test/00000_colors.png", "data/nyu2_test/00000_colors.png")
    with pytest.raises(DataError, match=r"nyu_data\.zip.*nyu2_test\.csv"):
        open_source("densedepth", str(zp), split="test")


# ---------------------------------------------------------------- selection and hole filling

class _Fake:
    path = "fake"

    def __init__(self, scenes: list[str]) -> None:
        self._scenes = scenes

    def __len__(self) -> int:
        return len(self._scenes)

    def __getitem__(self, i: int) -> Frame:
        z = np.full((4, 4), i + 1.0, np.float32)
        return Frame(np.zeros((4, 4, 3), np.uint8), z, np.ones((4, 4), bool), f"f{i}", self._scenes[i])

    @property
    def names(self) -> list[str]:
        return [f"f{i}" for i in range(len(self))]

    @property
    def scenes(self) -> list[str]:
        return list(self._scenes)


def test_select_by_scene_fraction_and_stride() -> None:
    src = _Fake(["a"] * 5 + ["b"] * 3 + ["c"] * 4)
    assert select_frames(src, scenes=["b"]).indices == [5, 6, 7]
    assert select_frames(src, stride=2).indices == [0, 2, 4, 5, 7, 8, 10]
    sel = select_frames(src, scene_fraction=0.34, seed=1)
    assert len(sel.record["scenes"]) == 1 and {src.scenes[i] for i in sel.indices} == set(sel.record["scenes"])
    assert select_frames(src, scene_fraction=0.34, seed=1).indices == sel.indices  # seeded, reproducible
    meta = select_frames(src, scenes=["a", "c"], stride=3).to_meta()
    assert meta["n_selected"] == 4 and meta["stride"] == 3 and meta["scenes"] == ["a", "c"]
    sub = SubsetSource(src, [5, 7])
    assert sub.names == ["f5", "f7"] and sub[1].depth[0, 0] == 8.0
    with pytest.raises(DataError, match="not in this source"):
        select_frames(src, scenes=["zzz"])


@pytest.mark.parametrize("method", ["colorization", "nearest"])
def test_hole_filling(method: str) -> None:
    h, w = 24, 32
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, w // 2:] = 255
    depth = np.where(np.arange(w)[None] < w // 2, 1.0, 3.0).repeat(h, 0).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[8:16, 10:22] = False        # a hole straddling the colour (and depth) edge
    f = fill_holes(Frame(rgb, np.where(valid, depth, 0).astype(np.float32), valid, "x"), method)
    assert f.valid.all() and f.meta["filled"] == method and not f.meta["measured"][10, 12]
    np.testing.assert_allclose(f.depth[8:16, 10:16], 1.0, atol=0.05)
    np.testing.assert_allclose(f.depth[8:16, 16:22], 3.0, atol=0.05)
    const = fill_holes(Frame(rgb, np.where(valid, 2.0, 0).astype(np.float32), valid, "c"), method)
    np.testing.assert_allclose(const.depth, 2.0, atol=1e-4)


# ---------------------------------------------------------------- damaged archives and headers (issue 12)

def _corrupt_deflated_member(zp: Path, member: str) -> None:
    """Flip bytes in the middle of a deflated member's compressed data (its header stays intact)."""
    with zipfile.ZipFile(zp) as z:
        info = z.getinfo(member)
    raw = bytearray(zp.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    for k in range(start + 2, start + min(info.compress_size - 2, 64)):
        raw[k] ^= 0xA5
    zp.write_bytes(bytes(raw))


def test_densedepth_zip_with_corrupt_deflated_member_names_zip_and_member(shared_nyu: Path, tmp_path: Path) -> None:
    folder = shared_nyu / "densedepth_nyu2_test"
    zp = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((folder / "data").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    member = "data/nyu2_test/00000_depth.png"
    _corrupt_deflated_member(zp, member)
    src = open_source("densedepth", str(zp), split="test")
    with pytest.raises(DataError, match=rf"nyu_data\.zip!{member}: this member of the zip is damaged"):
        src[0]


def test_truncated_zips_are_called_damaged_not_foreign(shared_nyu: Path, tmp_path: Path) -> None:
    folder = shared_nyu / "densedepth_nyu2_test"
    zp = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_STORED) as z:
        z.write(folder / "data/nyu2_test.csv", "data/nyu2_test.csv")
        z.write(folder / "data/nyu2_test/00000_colors.png", "data/nyu2_test/00000_colors.png")
    zp.write_bytes(zp.read_bytes()[: zp.stat().st_size // 2])
    with pytest.raises(DataError, match=r"nyu_data\.zip: is a damaged or truncated zip"):
        open_source("densedepth", str(zp), split="test")
    tz = tmp_path / "nyu_test.zip"
    with zipfile.ZipFile(tz, "w", zipfile.ZIP_STORED) as z:
        z.writestr("eigen_test_rgb.npy", _npy_bytes(np.zeros((1, 4, 4, 3), np.uint8)))
    tz.write_bytes(tz.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"nyu_test\.zip: is a damaged or truncated zip"):
        open_source("nyu_test_npy", str(tz))
    other = tmp_path / "notes.zip"
    other.write_bytes(b"just text, not an archive")
    with pytest.raises(DataError, match="not a zip archive"):
        open_source("densedepth", str(other))


def test_nyu_test_npy_corrupt_deflated_crop_member(tmp_path: Path) -> None:
    tz = tmp_path / "nyu_test.zip"
    with zipfile.ZipFile(tz, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("eigen_test_rgb.npy", _npy_bytes(np.zeros((1, 4, 4, 3), np.uint8)))
        z.writestr("eigen_test_depth.npy", _npy_bytes(np.ones((1, 4, 4), np.float32)))
        z.writestr("eigen_test_crop.npy", _npy_bytes(np.arange(4096, dtype=np.int64)))
    _corrupt_deflated_member(tz, "eigen_test_crop.npy")
    with pytest.raises(DataError, match=r"nyu_test\.zip!eigen_test_crop\.npy: this member of the zip is damaged"):
        open_source("nyu_test_npy", str(tz))


def test_zero_byte_npy_member_in_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "eigen_test_rgb.npy", np.zeros((1, 4, 4, 3), np.uint8))
    (tmp_path / "eigen_test_depth.npy").write_bytes(b"")
    np.save(tmp_path / "eigen_test_crop.npy", np.array([0, 3, 0, 3]))
    with pytest.raises(DataError, match=r"eigen_test_depth\.npy: cannot be memory-mapped.*empty.*re-extract"):
        open_source("nyu_test_npy", str(tmp_path))


@pytest.mark.parametrize("header, problem", [
    (b"P5\n64O 480\n65535\n", "whole numbers"),           # letter O for zero
    (b"P5\n640 480\n65535.0\n", "whole numbers"),
    (b"P5\n640 480\n70000\n", "maxval 1..65535"),
    (b"P5\n640 480\n0\n", "maxval 1..65535"),
])
def test_pgm_header_fields_are_checked(tmp_path: Path, header: bytes, problem: str) -> None:
    p = tmp_path / "d-1.0-1.pgm"
    p.write_bytes(header + np.zeros((480, 640), "<u2").tobytes())
    with pytest.raises(DataError, match=rf"d-1\.0-1\.pgm: PGM header.*{problem}.*Fix: "):
        read_pgm_disparity(p)


def test_missing_splits_file_says_not_found(tmp_path: Path) -> None:
    p = tmp_path / "labeled.mat"
    _labeled_mat(p)
    with pytest.raises(DataError, match=r"splits\.mat: splits file not found"):
        open_source("labeled_mat", str(p), split="train", splits_file=str(tmp_path / "splits.mat"))
