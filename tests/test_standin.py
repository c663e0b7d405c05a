"""The stand-in nyu_data.zip, and the prepared writer at scale: JPEG copies, kill -9 mid-write, resume."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from depthlib.core.errors import DataError
from depthlib.data import open_source
from depthlib.data.prepared import PreparedDataset, verify_prepared
from depthlib.data.prepared_loader import PreparedTorchDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.data.select import SubsetSource
from depthlib.data.standin import StandinSettings, scene_plan, eigen_test_indices, write_standin

ROOT = Path(__file__).resolve().parent.parent
TINY = StandinSettings(size=(48, 64))


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standin") / "nyu_data.zip"
    return write_standin(out, n_frames=66, n_test=6, n_scenes=5, settings=TINY, workers=0, progress=False).path


def test_standin_has_the_real_layout(tiny_zip: Path) -> None:
    z = zipfile.ZipFile(tiny_zip)
    train_csv = z.read("data/nyu2_train.csv").decode().splitlines()
    test_csv = z.read("data/nyu2_test.csv").decode().splitlines()
    assert len(train_csv) == 60 and len(test_csv) == 6 and not train_csv[0].startswith("rgb")  # no header
    row = re.compile(r"data/nyu2_train/([a-z_]+_\d{4})_out/(\d+)\.jpg,data/nyu2_train/\1_out/\2\.png")
    assert all(row.fullmatch(r) for r in train_csv)
    assert len({row.fullmatch(r).group(1) for r in train_csv}) == 5
    assert test_csv[2] == "data/nyu2_test/00008_colors.png,data/nyu2_test/00008_depth.png"  # the real test names
    assert set(z.namelist()) == {"data/nyu2_train.csv", "data/nyu2_test.csv", *(m for r in train_csv + test_csv for m in r.split(","))}
    jpg, png = (Image.open(io.BytesIO(z.read(m))) for m in train_csv[0].split(","))
    assert (jpg.format, jpg.mode, jpg.size, png.format, png.mode) == ("JPEG", "RGB", (64, 48), "PNG", "L")
    rgb, depth = (Image.open(io.BytesIO(z.read(m))) for m in test_csv[0].split(","))
    assert (rgb.format, rgb.mode, depth.mode) == ("PNG", "RGB", "I;16")
    jpegs = [z.read(r.split(",")[0]) for r in train_csv]
    assert len(set(jpegs)) == len(jpegs)  # every frame differs byte for byte
    for split, n in (("train", 60), ("test", 6)):
        src = open_source("densedepth", str(tiny_zip), split=split)
        f = src[n - 1]
        assert len(src) == n and f.valid.all() and 0.3 < float(f.depth.min()) and float(f.depth.max()) <= 10.0
    assert not tiny_zip.with_name(tiny_zip.name + ".partial").exists()


@pytest.mark.slow  # two spawned renderer processes, each importing torch: ~5 s of CPU
def test_standin_is_the_same_for_any_number_of_workers(tiny_zip: Path, tmp_path: Path) -> None:
    again = write_standin(tmp_path / "two.zip", n_frames=66, n_test=6, n_scenes=5, settings=TINY, workers=2, progress=False)
    assert again.path.read_bytes() == tiny_zip.read_bytes()


def test_scene_plan_and_test_names_match_the_real_archive() -> None:
    full = scene_plan(50688)
    assert len(full) == 284 and sum(c for _, c in full) == 50688 and len({s for s, _ in full}) == 284
    assert min(c for _, c in full) >= 1
    assert len(scene_plan(1346)) == 8
    names = eigen_test_indices(654)
    assert len(set(names)) == 654 and names[:3] == [0, 1, 8] and names[-1] == 1448


def test_jpeg_sources_are_copied_png_sources_encoded(tiny_zip: Path, tmp_path: Path) -> None:
    train = open_source("densedepth", str(tiny_zip), split="train")
    p = write_prepared(SubsetSource(train, range(0, 60, 7)), tmp_path / "train.h5", depth_unit_m=10 / 255, progress=False)
    z = zipfile.ZipFile(tiny_zip)
    with h5py.File(p) as f:
        off = f["rgb_offset"][()]
        assert f.attrs["rgb_jpeg_copied"] == 9 and f["rgb_copied"][()].all()
        for k, i in enumerate(range(0, 60, 7)):
            assert f["rgb_jpeg"][off[k]:off[k + 1]].tobytes() == z.read(train.rows[i][0])  # byte for byte
    ds = PreparedDataset(str(p))
    np.testing.assert_array_equal(ds[1].rgb, train[7].rgb)  # lossless: the same decoder, the same bytes
    np.testing.assert_array_equal(ds[1].depth, train[7].depth)
    test = open_source("densedepth", str(tiny_zip), split="test")
    q = write_prepared(test, tmp_path / "test.h5", progress=False)
    with h5py.File(q) as f:
        assert f.attrs["rgb_jpeg_copied"] == 0 and not f["rgb_copied"][()].any()
    for path, src in ((p, SubsetSource(train, range(0, 60, 7))), (q, test)):
        fast = PreparedTorchDataset(str(path))[2]["image"]
        ref = torch.from_numpy(src[2].rgb).permute(2, 0, 1).float() / 255
        assert fast.shape == ref.shape and float((fast - ref).abs().mean()) < 0.02
    assert verify_prepared(p) == [] and verify_prepared(q) == []


_CHILD = """
import sys, time
from depthlib.data import open_source
from depthlib.data.densedepth import DenseDepthSource
from depthlib.data.prepared_write import write_prepared

def slow_read(self, i):
    sys.stdout.write(f"{i}\\n")  # one write per line: the reader threads print concurrently
    sys.stdout.flush()
    time.sleep(0.01)
    return DenseDepthSource.__getitem__(self, i)

src = open_source("densedepth", sys.argv[1], split="train")
src.__class__ = type("DenseDepthSource", (DenseDepthSource,), {"__getitem__": slow_read})  # same fingerprint
write_prepared(src, sys.argv[2], depth_unit_m=10 / 255, flush_every=8, progress=False)
"""


def _same_content(a: Path, b: Path) -> None:
    with h5py.File(a) as f, h5py.File(b) as g:
        assert f.attrs["fingerprint"] == g.attrs["fingerprint"] and f.attrs["complete"] and g.attrs["complete"]
        for key in ("rgb_jpeg", "rgb_offset", "source_index", "name", "scene_id", "split_id", "crc32", "rgb_copied"):
            np.testing.assert_array_equal(f[key][()], g[key][()], err_msg=key)
        for k in range(f["depth"].shape[0]):  # frame for frame
            np.testing.assert_array_equal(f["depth"][k], g["depth"][k])
            np.testing.assert_array_equal(f["valid"][k], g["valid"][k])


@pytest.mark.slow
def test_sigkill_mid_write_then_rerun_gives_the_same_file(tmp_path: Path) -> None:
    zip_path = write_standin(tmp_path / "nyu_data.zip", n_frames=106, n_test=6, settings=TINY, workers=0,
                             progress=False).path
    src = open_source("densedepth", str(zip_path), split="train")
    whole = write_prepared(src, tmp_path / "whole.h5", depth_unit_m=10 / 255, flush_every=8, progress=False)
    out = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(zip_path), str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip().isdigit() and int(line) >= 50:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    partial = tmp_path / "killed.h5.partial"
    assert partial.exists() and not out.exists()  # never under the final name
    with pytest.raises(DataError, match="incomplete"):
        PreparedDataset(str(partial))
    with h5py.File(partial) as f:
        written = int(f.attrs["n_written"])
    assert 0 < written < 100
    write_prepared(src, out, depth_unit_m=10 / 255, flush_every=8, progress=False)  # the re-run resumes
    assert not partial.exists() and verify_prepared(out) == []
    _same_content(out, whole)


def test_damaged_partial_frames_are_written_again(tiny_zip: Path, tmp_path: Path) -> None:
    src = open_source("densedepth", str(tiny_zip), split="train")
    whole = write_prepared(src, tmp_path / "whole.h5", depth_unit_m=10 / 255, flush_every=4, progress=False)
    out = tmp_path / "p.h5"
    partial = tmp_path / "p.h5.partial"
    partial.write_bytes(whole.read_bytes())
    with h5py.File(partial, "a") as f:  # as if killed after frame 40 was counted but before its depth reached disk
        f.attrs["complete"], f.attrs["n_written"] = False, 44
        f["depth"][40] = 0
    with pytest.warns(UserWarning, match="frame 40 of the 44 written does not match its checksum"):
        write_prepared(src, out, depth_unit_m=10 / 255, flush_every=4, progress=False)
    _same_content(out, whole)
    with h5py.File(partial.with_name("x.partial"), "w") as f:
        f.attrs["fingerprint"] = "another run"
    os.replace(partial.with_name("x.partial"), tmp_path / "q.h5.partial")
    with pytest.warns(UserWarning, match="stale or unreadable partial"):
        write_prepared(src, tmp_path / "q.h5", depth_unit_m=10 / 255, flush_every=4, progress=False)
    _same_content(tmp_path / "q.h5", whole)
