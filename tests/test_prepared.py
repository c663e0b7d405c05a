"""The prepared HDF5 dataset: round trip, atomic + resumable writing, refusal of bad files, the fast loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from depthlib.core.errors import DataError
from depthlib.data import open_source
from depthlib.data.dataset import make_loader
from depthlib.data.frame import Frame
from depthlib.data.prepared import PreparedDataset
from depthlib.data.prepared_loader import PreparedTorchDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.data.select import select_frames


class _Source:
    """Deterministic frames with holes; optionally interrupts at frame `stop_at` and counts reads."""

    path = "synthetic://prepared-test"

    def __init__(self, n: int = 6, h: int = 24, w: int = 32, stop_at: int = -1) -> None:
        self.n, self.h, self.w, self.stop_at, self.reads = n, h, w, stop_at, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Frame:
        if i == self.stop_at:
            raise KeyboardInterrupt
        self.reads += 1
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:self.h, 0:self.w]
        rgb = np.stack([xx * 6 + i * 10, yy * 8, np.full_like(xx, 40 * i)], -1).astype(np.uint8)  # smooth: JPEG-friendly
        depth = (1.0 + 0.1 * xx + 0.05 * yy + i).astype(np.float32)
        valid = rng.random((self.h, self.w)) > 0.2
        return Frame(rgb, np.where(valid, depth, 0).astype(np.float32), valid, f"s{i // 3}/f{i}", f"s{i // 3}")

    @property
    def names(self) -> list[str]:
        return [f"s{i // 3}/f{i}" for i in range(self.n)]

    @property
    def scenes(self) -> list[str]:
        return [f"s{i // 3}" for i in range(self.n)]


def test_round_trip_raw_and_jpeg(tmp_path: Path) -> None:
    src = _Source()
    splits = ["train", "train", "train", "val", "val", "val"]
    sel = select_frames(src, stride=1)
    raw = write_prepared(src, tmp_path / "raw.h5", split=splits, rgb_codec="raw", selection=sel.to_meta(), progress=False)
    assert raw.exists() and not (tmp_path / "raw.h5.partial").exists()
    ds = PreparedDataset(str(raw))
    assert len(ds) == 6 and ds.names == src.names and ds.scenes == src.scenes and ds.splits == splits
    assert ds.selection["n_selected"] == 6
    for i in (0, 5):
        a, b = ds[i], src[i]
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.valid, b.valid)
        assert np.abs(a.depth - b.depth)[b.valid].max() <= 0.0005 and (a.depth[~b.valid] == 0).all()
        assert a.meta["source_index"] == i and a.meta["split"] == splits[i]
    val = open_source("prepared", str(raw), split="val")
    assert len(val) == 3 and val[0].name == "s1/f3"
    jpg = PreparedDataset(str(write_prepared(src, tmp_path / "jpg.h5", progress=False)))
    assert np.abs(jpg[2].rgb.astype(int) - src[2].rgb).mean() < 3
    with h5py.File(tmp_path / "jpg.h5") as f:
        assert f["depth"].chunks == (1, 24, 32) and f.attrs["complete"]


def test_fast_loader_matches_frames(tmp_path: Path) -> None:
    # Frames come out as stored: flip and swap are the transforms' (DataConfig's rates), after the border crop.
    src = _Source()
    p = write_prepared(src, tmp_path / "d.h5", rgb_codec="raw", progress=False)
    plain = PreparedTorchDataset(str(p))
    ref = PreparedDataset(str(p))
    s = plain[4]
    np.testing.assert_array_equal(s["valid"][0].numpy(), ref[4].valid)  # code 0 <=> invalid invariant
    np.testing.assert_allclose(s["depth"][0].numpy(), ref[4].depth, atol=1e-6)
    np.testing.assert_allclose(s["image"].numpy(), ref[4].rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    loader = make_loader(PreparedTorchDataset(str(p)), batch_size=4, shuffle=True, seed=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 24, 32) and batch["valid"].dtype == torch.bool
    ds = PreparedTorchDataset(str(p))
    ds[0]  # opens the file in this process; pickling must not carry the handle
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["depth"], ds[1]["depth"])


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_fast_loader_serves_each_splits_own_frames(tmp_path: Path, codec: str) -> None:
    """Every item of the fast loader over one split is the frame PreparedDataset gives for that split and index.

    The splits interleave, so a split's item k is never row k of the file: serving rows by position would
    hand validation the training frames.
    """
    src = _Source(n=9)
    splits = ["train", "val", "test"] * 3
    p = write_prepared(src, tmp_path / f"{codec}.h5", split=splits, rgb_codec=codec, progress=False)
    for split in ("train", "val", "test"):
        ref = PreparedDataset(str(p), split=split)
        fast = PreparedTorchDataset(str(p), split=split)
        expect = [n for n, s in zip(src.names, splits) if s == split]
        assert len(fast) == len(ref) == 3 and ref.names == expect
        picked = PreparedTorchDataset(ref, indices=[2, 0])   # a subset of the split
        for s, k in [(fast[k], k) for k in range(3)] + [(picked[0], 2), (picked[1], 0)]:
            f = ref[k]
            assert s["name"] == f.name == expect[k] and f.meta["split"] == split
            np.testing.assert_array_equal(s["valid"][0].numpy(), f.valid)
            # Both are the stored uint16 code times the float32 unit, one rounding each: equal bit for bit.
            np.testing.assert_array_equal(s["depth"][0].numpy(), f.depth)
            got = (s["image"].numpy() * 255).round().astype(int)   # k/255 in float32 rounds back to k exactly
            # raw: the stored pixels. jpeg: torchvision and PIL decode the same file; they may differ by IDCT
            # rounding and chroma upsampling (a level or two on these smooth frames); frames of neighbouring
            # rows differ by 40 levels in blue.
            atol = 0 if codec == "raw" else 3
            np.testing.assert_allclose(got, f.rgb.transpose(2, 0, 1).astype(int), rtol=0, atol=atol)


def test_interrupted_write_resumes_and_partial_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "prep.h5"
    with pytest.raises(KeyboardInterrupt):
        write_prepared(_Source(stop_at=4), out, flush_every=2, rgb_codec="raw", progress=False)
    partial = tmp_path / "prep.h5.partial"
    assert partial.exists() and not out.exists()
    with pytest.raises(DataError, match="incomplete: 4 frames written.*resumes"):
        PreparedDataset(str(partial))
    again = _Source()
    write_prepared(again, out, flush_every=2, rgb_codec="raw", progress=False)
    assert again.reads == 1 + 2  # frame 0 (shape probe) + the two frames not yet written
    whole = write_prepared(_Source(), tmp_path / "whole.h5", rgb_codec="raw", progress=False)
    a, b = PreparedDataset(str(out)), PreparedDataset(str(whole))
    for i in range(6):
        np.testing.assert_array_equal(a[i].depth, b[i].depth)
        np.testing.assert_array_equal(a[i].rgb, b[i].rgb)
    # Same arguments again: the complete file is reused, not rewritten.
    third = _Source()
    write_prepared(third, out, flush_every=2, rgb_codec="raw", progress=False)
    assert third.reads == 0


def test_bad_files_and_mismatches(tmp_path: Path) -> None:
    p = write_prepared(_Source(), tmp_path / "ok.h5", progress=False)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    with pytest.raises(DataError, match=r"cut\.h5.*truncated"):
        PreparedDataset(str(cut))
    with pytest.raises(DataError, match="not found"):
        PreparedDataset(str(tmp_path / "missing.h5"))
    with pytest.raises(DataError, match="another source.*overwrite=True"):
        write_prepared(_Source(n=5), p, progress=False)
    with pytest.raises(DataError, match="no split 'test'"):
        PreparedDataset(str(p), split="test")

    class Mixed(_Source):
        def __getitem__(self, i: int) -> Frame:
            f = super().__getitem__(i)
            return f if i < 2 else Frame(f.rgb[:8], f.depth[:8], f.valid[:8], f.name, f.scene)

    with pytest.raises(DataError, match=r"frame is 32x8, but the prepared file's frames are 32x24 .*"
                                        r"Fix: bring every frame to one size"):
        write_prepared(Mixed(), tmp_path / "mixed.h5", progress=False)


def test_prepared_from_real_frames(shared_nyu: Path, tmp_path: Path) -> None:
    src = open_source("densedepth", str(shared_nyu / "densedepth_nyu2_test"), split="test")
    p = write_prepared(src, tmp_path / "real.h5", indices=[0, 5, 9], progress=False)
    ds = PreparedDataset(str(p))
    for k, i in enumerate([0, 5, 9]):
        a, b = ds[k], src[i]
        assert a.name == b.name and a.scene == b.scene
        assert np.abs(a.depth - b.depth).max() <= 0.0005  # mm storage of mm data is exact up to float rounding
        assert np.abs(a.rgb.astype(int) - b.rgb).mean() < 2.0  # JPEG q90 (the default)


def test_loader_worker_opens_its_own_handle(tmp_path: Path) -> None:
    p = write_prepared(_Source(), tmp_path / "w.h5", rgb_codec="raw", progress=False)
    ds = PreparedTorchDataset(str(p))
    first = ds[2]["depth"]  # the parent opens the file before the worker forks
    loader = make_loader(ds, batch_size=6, shuffle=False, num_workers=1, seed=0)
    batch = next(iter(loader))
    assert torch.equal(batch["depth"][2], first) and batch["name"][2] == "s0/f2"
