"""The prepared dataset: one HDF5 file written from any FrameSource, read by 02-04 (source "prepared").

Layout (``format_version`` 2; files of format 1 still read); depth and valid have one frame per chunk, so any
frame is a few reads:

- ``rgb_jpeg`` 1-D uint8, the JPEG files back to back, frame i at ``rgb_offset[i]:rgb_offset[i+1]`` (codec
  "jpeg"; one contiguous read), or ``rgb`` (N,H,W,3) uint8 lzf (codec "raw", lossless, ~8x larger). A source
  frame stored as an RGB JPEG of the frame's size (DenseDepth's train half) is copied byte for byte: no
  second lossy pass and no encoding time; others are encoded at ``jpeg_quality`` (default 90: see
  benchmarks/RESULTS_loader.md for q95). ``rgb_copied`` (N,) bool says which; the ``rgb_jpeg_copied`` attribute
  counts them.
  JPEG is what keeps full NYU within 1.5x of the 4.1 GB source zip: natural RGB compresses ~1.5x losslessly,
  so a lossless store would be ~7x the zip. Not an HDF5 variable-length dataset: reading those caches
  global-heap blocks, and reader memory grew with the number of frames touched (benchmarks/RESULTS_loader.md).
- ``depth`` (N,H,W) uint16 in units of the ``depth_unit_m`` attribute (default 0.001 = millimetres), Blosc
  zstd + byte shuffle (hdf5plugin): gzip's ratio, decoded ~4x faster, which the training loader needs to
  beat a JPEG + PNG zip loader 2x. Integers, not float16: exact for every mm-encoded NYU form (BTS, labeled
  x1000, DenseDepth test); a uniform 1 mm step where float16 steps 2 mm at 2-4 m, 4 mm at 4-8 m, 8 mm beyond;
  lossless compression works on integers; 0 is a natural hole. For DenseDepth's 8-bit train depth pass
  ``depth_unit_m=10/255``: its codes are stored exactly and ~20 % smaller than in mm.
- ``valid`` (N,H,W) bool, Blosc zstd. Invariant: depth code 0 <=> invalid (the fast loader relies on it).
- ``source_index`` int64, ``scene_id`` int32 into ``scene_names``, ``split_id`` uint8 into the ``split_names``
  attribute, ``name`` fixed-length UTF-8 bytes. Reading needs ``import hdf5plugin`` (done here).
- ``crc32`` uint32 per frame over its stored RGB bytes, depth codes and valid mask (files written before it
  existed lack it; readers do not need it): how a resumed write and `verify_prepared` check what is on disk.
- ``fx`` float64 per frame: the horizontal focal length in pixels of the stored frame's width, as its reader
  reported it (NYU's forms: the Kinect's 518.86; pairs: the declared intrinsics), NaN when unknown. New in format 2:
  a format-1 file reads as if every frame's camera were unknown (camera_space="canonical" refuses to train on such
  frames; evaluation takes them to be of the model's canonical camera, with a notice).
- attributes: ``complete``, ``n_written``, the source, the selection record (JSON), the writer settings, and
  ``nyu_border``: whether the reader's frames may carry NYU's white border (inference replays a checkpoint's NYU
  crop on 640x480 frames only then; ``pairs``: no).

Writing goes to ``<name>.h5.partial`` and is renamed when complete; an interrupted run (even SIGKILL) resumes
when re-run with the same source and settings: from ``n_written``, after checking every frame already on disk
against its crc32 (a frame a kill damaged is written again), or from scratch when the partial file cannot be
opened. A file without ``complete=True`` is refused. The writer (depthlib.data.prepared_write) holds
``<name>.h5.lock`` (depthlib.core.lock): a second writer of the same file is refused, naming the first.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from ..core.errors import DataError
from .frame import Frame
from .io import read_rgb
from .registry import register_source

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)   # 1: no per-frame focal length (read as unknown)
RGB_CODECS = ("jpeg", "raw")
_STR = h5py.string_dtype()


def _blosc() -> dict[str, Any]:
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _crc(rgb: np.ndarray, depth: np.ndarray, valid: np.ndarray) -> int:
    """crc32 of a frame's stored RGB bytes (JPEG file or raw pixels), depth codes and valid mask."""
    c = zlib.crc32(np.ascontiguousarray(rgb).data)
    c = zlib.crc32(np.ascontiguousarray(depth).data, c)
    return zlib.crc32(np.ascontiguousarray(valid).data, c)


def verify_prepared(path: str | Path, rows: range | None = None) -> list[int]:
    """Rows whose stored bytes do not match their crc32 (all rows by default) -> [] when the file is intact."""
    with open_h5(path) as f:
        if "crc32" not in f:
            raise DataError(path, "has no crc32 table (written by an older depthlib).", "re-run 01_data_prep to rewrite it.")
        crc, depth, valid = f["crc32"][()], f["depth"], f["valid"]
        jpeg = "rgb_jpeg" in f
        rgb, off = (f["rgb_jpeg"], f["rgb_offset"][()]) if jpeg else (f["rgb"], None)
        bad = []
        for k in rows if rows is not None else range(len(crc)):
            stored = rgb[off[k]:off[k + 1]] if off is not None else rgb[k]
            if _crc(stored, depth[k], valid[k]) != crc[k]:
                bad.append(k)
        return bad


def open_h5(path: str | Path, **kw: Any) -> h5py.File:
    """Open an HDF5 file read-only, turning an unreadable / truncated file into a DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file not found.", "check the path; run 01_data_prep to write the prepared dataset.")
    try:
        return h5py.File(p, "r", **kw)
    except OSError as e:
        raise DataError(p, f"cannot be opened as HDF5 ({e}); it is truncated or not an HDF5 file.",
                        "re-download it, or re-run the step that wrote it.") from None


def check_prepared(f: h5py.File, path: str | Path) -> None:
    """Raise DataError unless `f` is a complete prepared dataset of a known format version."""
    if f.attrs.get("format_version") not in READABLE_VERSIONS:
        raise DataError(path, f"not a prepared dataset of format {' or '.join(map(str, READABLE_VERSIONS))} "
                        f"(format_version={f.attrs.get('format_version')!r}).", "write it with write_prepared().")
    if not bool(f.attrs.get("complete")):
        raise DataError(path, f"incomplete: {int(f.attrs.get('n_written', 0))} frames written, run interrupted.",
                        "re-run write_prepared with the same arguments; it resumes.")


@register_source("prepared")
class PreparedDataset:
    """A prepared HDF5 file as a FrameSource (optionally one split); the file opens lazily per process."""

    def __init__(self, path: str, split: str | None = None) -> None:
        self.path = str(path)
        self.split = split
        with open_h5(self.path) as f:
            check_prepared(f, self.path)
            self.split_names: list[str] = json.loads(f.attrs["split_names"])
            self.depth_unit_m = float(f.attrs["depth_unit_m"])
            self.codec = str(f.attrs["rgb_codec"])
            self.format_version = int(f.attrs["format_version"])
            self.selection: dict[str, Any] = json.loads(f.attrs["selection"])
            # whether its frames may carry NYU's white border (depthlib.data.frame.has_nyu_border), as its reader said;
            # files written before the attribute: by the reader's class (only `pairs` says no)
            said = f.attrs.get("nyu_border")
            self.nyu_border = bool(said) if said is not None else str(f.attrs.get("source_type")) != "PairsSource"
            self.scene_names = [s.decode() if isinstance(s, bytes) else s for s in f["scene_names"][()]]
            split_id = f["split_id"][()]
            # per frame, 8 bytes each: read once (format 1 files have none: every camera unknown)
            self.fx: np.ndarray = f["fx"][()] if "fx" in f else np.full(len(split_id), np.nan)
            if split is not None and split not in self.split_names:
                raise DataError(self.path, f"has no split {split!r}.", f"use one of {self.split_names}.")
            rows = np.arange(len(split_id)) if split is None else np.nonzero(split_id == self.split_names.index(split))[0]
        self.rows = rows.astype(np.int64)
        self._f: h5py.File | None = None
        self._pid = -1

    def file(self) -> h5py.File:
        """The open HDF5 handle of this process (reopened after fork: h5py handles must not cross processes)."""
        if self._f is None or self._pid != os.getpid():
            self._f = open_h5(self.path, rdcc_nbytes=1 << 20)  # raw-chunk cache: 1 MiB per dataset
            # Bound HDF5's metadata cache (chunk indexes) too, so reader memory has a fixed ceiling.
            cfg = self._f.id.get_mdc_config()
            cfg.set_initial_size, cfg.initial_size, cfg.min_size, cfg.max_size = True, 2 << 20, 1 << 20, 8 << 20
            self._f.id.set_mdc_config(cfg)
            self._pid = os.getpid()
        return self._f

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_f"] = None
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def read_raw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row i as stored -> (rgb uint8 [H,W,3], depth uint16 [H,W] in depth_unit_m, valid bool [H,W])."""
        f, r = self.file(), int(self.rows[i])
        if self.codec == "jpeg":
            a, b = f["rgb_offset"][r:r + 2]
            rgb = read_rgb(f["rgb_jpeg"][a:b].tobytes(), f"{self.path}[{r}]")
        else:
            rgb = f["rgb"][r]
        return rgb, f["depth"][r], f["valid"][r]

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        rgb, depth, valid = self.read_raw(i)
        f, r = self.file(), int(self.rows[i])
        meta = {"source_index": int(f["source_index"][r]), "split": self.split_names[int(f["split_id"][r])]}
        fx = float(self.fx[r])
        frame = Frame(rgb, depth.astype(np.float32) * np.float32(self.depth_unit_m), valid,
                      f["name"][r].decode("utf-8"), self.scene_names[int(f["scene_id"][r])], meta,
                      fx if np.isfinite(fx) else None)
        return frame.check(self.path)

    def content_hash(self, rows: np.ndarray) -> str:
        """sha256 hex of what file rows `rows` (in that order) hold: their crc32s (stored RGB bytes, depth codes, valid
        mask) and the depth unit; a file written before crc32 existed (format 1 without it): its writer's fingerprint.
        The same frames prepared again give the same hash, other frames another (what a resumed run checks)."""
        import hashlib

        f = self.file()
        h = hashlib.sha256(f"depth_unit_m={self.depth_unit_m!r}\n".encode())
        if "crc32" in f:
            h.update(np.ascontiguousarray(f["crc32"][()][rows], dtype="<u4").tobytes())
        else:
            h.update(str(f.attrs.get("fingerprint", self.path)).encode())
            h.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
        return h.hexdigest()

    @property
    def names(self) -> list[str]:
        """Frame names of the rows in this view."""
        return [n.decode("utf-8") for n in self.file()["name"][()][self.rows]]

    @property
    def scenes(self) -> list[str]:
        """Scene of each row in this view."""
        ids = self.file()["scene_id"][()][self.rows]
        return [self.scene_names[k] for k in ids]

    @property
    def splits(self) -> list[str]:
        """Split label of each row in this view."""
        return [self.split_names[k] for k in self.file()["split_id"][()][self.rows]]


__all__ = ["FORMAT_VERSION", "PreparedDataset", "check_prepared", "open_h5", "verify_prepared"]
