"""The prepared dataset: one HDF5 file written from any FrameSource, read by 02-04 (source "prepared").

Layout (``format_version`` 1); depth and valid have one frame per chunk, so any frame is a few reads:

- ``rgb_jpeg`` 1-D uint8, the JPEG files back to back, frame i at ``rgb_offset[i]:rgb_offset[i+1]`` (codec
  "jpeg", default quality 90: see benchmarks/RESULTS_loader.md for q95; one contiguous read), or ``rgb`` (N,H,W,3) uint8 lzf (codec "raw", lossless, ~8x larger).
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
- attributes: ``complete``, ``n_written``, the source, the selection record (JSON), the writer settings.

Writing goes to ``<name>.h5.partial`` and is renamed when complete; an interrupted run resumes from
``n_written`` when re-run with the same source and settings. A file without ``complete=True`` is refused.
A writer holds ``<name>.h5.lock`` (depthlib.lock): a second writer of the same file is refused, naming the first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import h5py
import hdf5plugin
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DataError
from ..lock import hold_lock
from .frame import Frame, FrameSource
from .io import read_rgb
from .registry import register_source

FORMAT_VERSION = 1
RGB_CODECS = ("jpeg", "raw")
_STR = h5py.string_dtype()
_BLOB_CHUNK = 1 << 17  # bytes per chunk of the JPEG stream


def _blosc() -> dict[str, Any]:
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _fingerprint(source: FrameSource, indices: np.ndarray, settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"path": str(source.path), "type": type(source).__name__, **settings}, sort_keys=True).encode())
    h.update(indices.astype(np.int64).tobytes())
    return h.hexdigest()


def _encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _create(f: h5py.File, hw: tuple[int, int], codec: str, rows: dict[str, np.ndarray], split_names: list[str],
            scene_names: list[str], attrs: dict[str, Any]) -> None:
    h, w = hw
    n = len(rows["source_index"])
    if codec == "jpeg":
        f.create_dataset("rgb_jpeg", (0,), maxshape=(None,), dtype=np.uint8, chunks=(_BLOB_CHUNK,))
        f.create_dataset("rgb_offset", (n + 1,), dtype=np.int64)
    else:
        f.create_dataset("rgb", (n, h, w, 3), dtype=np.uint8, chunks=(1, h, w, 3), compression="lzf")
    f.create_dataset("depth", (n, h, w), dtype=np.uint16, chunks=(1, h, w), **_blosc())
    f.create_dataset("valid", (n, h, w), dtype=bool, chunks=(1, h, w), **_blosc())
    for key, data in rows.items():
        f.create_dataset(key, data=data)
    f.create_dataset("scene_names", data=np.array(scene_names, dtype=object), dtype=_STR)
    f.attrs.update(attrs)
    f.attrs["split_names"] = json.dumps(split_names)
    f.attrs["complete"] = False
    f.attrs["n_written"] = 0


def _append_blob(f: h5py.File, k: int, data: np.ndarray) -> None:
    blob, off = f["rgb_jpeg"], f["rgb_offset"]
    start = int(off[k])
    end = start + len(data)
    if end > blob.shape[0]:
        blob.resize((max(end, 2 * blob.shape[0]),))  # geometric growth; trimmed when complete
    blob[start:end] = data
    off[k + 1] = end


def write_prepared(source: FrameSource, out_path: str | Path, *, indices: Sequence[int] | None = None,
                   split: str | Sequence[str] = "train", selection: dict[str, Any] | None = None,
                   rgb_codec: str = "jpeg", jpeg_quality: int = 90, depth_unit_m: float = 0.001,
                   flush_every: int = 32, overwrite: bool = False, progress: bool = True) -> Path:
    """Write source[indices] to one HDF5 file (atomic rename at the end; resumes a matching .partial) -> path."""
    out = Path(out_path)
    partial = out.with_name(out.name + ".partial")
    idx = np.arange(len(source)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    if len(idx) == 0:
        raise DataError(source.path, "nothing to write: the selection is empty.", "widen the scene list / fraction.")
    if rgb_codec not in RGB_CODECS:
        raise DataError(out, f"unknown rgb_codec {rgb_codec!r}.", f"use one of {list(RGB_CODECS)}.")
    splits = [split] * len(idx) if isinstance(split, str) else list(split)
    if len(splits) != len(idx):
        raise DataError(out, f"{len(splits)} split labels for {len(idx)} frames.", "give one label per selected frame.")
    split_names = sorted(set(splits))
    all_scenes, all_names = source.scenes, source.names
    scenes = [all_scenes[i] for i in idx]
    scene_names = sorted(set(scenes))
    scene_lut = {s: k for k, s in enumerate(scene_names)}
    split_lut = {s: k for k, s in enumerate(split_names)}
    names = [all_names[i].encode("utf-8") for i in idx]
    rows = {"source_index": idx.astype(np.int64), "name": np.array(names, dtype=f"S{max(map(len, names)) or 1}"),
            "scene_id": np.array([scene_lut[s] for s in scenes], dtype=np.int32),
            "split_id": np.array([split_lut[s] for s in splits], dtype=np.uint8)}
    settings = {"rgb_codec": rgb_codec, "jpeg_quality": jpeg_quality, "depth_unit_m": depth_unit_m,
                "splits": hashlib.sha256("\n".join(splits).encode()).hexdigest()}
    fp = _fingerprint(source, idx, settings)
    # One writer per file: a second one (another pipeline, another notebook) would race on the .partial.
    with hold_lock(out.with_name(out.name + ".lock"), "this prepared dataset (being written)"):
        if out.exists() and not overwrite:
            with open_h5(out) as f:
                if f.attrs.get("fingerprint") == fp and bool(f.attrs.get("complete")):
                    return out
            raise DataError(out, "exists and was written from another source, selection or settings.",
                            "pass overwrite=True or choose another output name.")
        first = source[int(idx[0])].check(source.path)
        hw = first.depth.shape
        attrs = {"format_version": FORMAT_VERSION, "fingerprint": fp, "source_type": type(source).__name__,
                 "source_path": str(source.path), "selection": json.dumps(selection or {}), "height": hw[0],
                 "width": hw[1], "depth_unit_m": depth_unit_m, "rgb_codec": rgb_codec, "jpeg_quality": jpeg_quality}
        start = 0
        if partial.exists():
            try:
                with h5py.File(partial, "r") as f:
                    start = int(f.attrs["n_written"]) if f.attrs.get("fingerprint") == fp else -1
            except (OSError, KeyError):
                start = -1
            if start < 0:
                warnings.warn(f"{partial}: stale or unreadable partial file from another run; starting over.", stacklevel=2)
                partial.unlink()
                start = 0
        out.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(partial, "a") as f:
            if "depth" not in f:
                _create(f, hw, rgb_codec, rows, split_names, scene_names, attrs)
            bar = tqdm(range(start, len(idx)), total=len(idx), initial=start, disable=not progress, desc=out.name)
            for k in bar:
                fr = first if k == 0 else source[int(idx[k])].check(source.path)
                if fr.depth.shape != hw:
                    raise DataError(f"{source.path} [{fr.name}]", f"frame is {fr.depth.shape[1]}x{fr.depth.shape[0]}, the "
                                    f"file holds {hw[1]}x{hw[0]}.", "prepare one resolution per file.")
                if rgb_codec == "jpeg":
                    _append_blob(f, k, _encode_jpeg(fr.rgb, jpeg_quality))
                else:
                    f["rgb"][k] = fr.rgb
                # Invariant the fast loader relies on: code 0 <=> invalid (valid depths below half a unit become 1).
                d = np.where(fr.valid, np.maximum(np.round(fr.depth / depth_unit_m), 1), 0)
                if d.max() > 65535:
                    raise DataError(f"{source.path} [{fr.name}]", f"depth {float(fr.depth[fr.valid].max()):.1f} m does not "
                                    f"fit uint16 in units of {depth_unit_m} m.", "pass a larger depth_unit_m.")
                f["depth"][k] = d.astype(np.uint16)
                f["valid"][k] = fr.valid
                if (k + 1) % flush_every == 0 or k + 1 == len(idx):
                    f.attrs["n_written"] = k + 1
                    f.flush()
            if rgb_codec == "jpeg":
                f["rgb_jpeg"].resize((int(f["rgb_offset"][len(idx)]),))  # drop the growth slack
            f.attrs["complete"] = True
            f.flush()
        os.replace(partial, out)
        return out


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
    if f.attrs.get("format_version") != FORMAT_VERSION:
        raise DataError(path, f"not a prepared dataset of format {FORMAT_VERSION} "
                        f"(format_version={f.attrs.get('format_version')!r}).", "write it with write_prepared().")
    if not bool(f.attrs.get("complete")):
        raise DataError(path, f"incomplete: {int(f.attrs.get('n_written', 0))} frames written, run interrupted.",
                        "re-run write_prepared with the same arguments; it resumes.")


@register_source("prepared")
class PreparedDataset:
    """A prepared HDF5 file as a FrameSource (optionally one split); the file opens lazily per process."""

    def __init__(self, path: str, split: str | None = None) -> None:
        self.path = str(path)
        with open_h5(self.path) as f:
            check_prepared(f, self.path)
            self.split_names: list[str] = json.loads(f.attrs["split_names"])
            self.depth_unit_m = float(f.attrs["depth_unit_m"])
            self.codec = str(f.attrs["rgb_codec"])
            self.selection: dict[str, Any] = json.loads(f.attrs["selection"])
            self.scene_names = [s.decode() if isinstance(s, bytes) else s for s in f["scene_names"][()]]
            split_id = f["split_id"][()]
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
        frame = Frame(rgb, depth.astype(np.float32) * np.float32(self.depth_unit_m), valid,
                      f["name"][r].decode("utf-8"), self.scene_names[int(f["scene_id"][r])], meta)
        return frame.check(self.path)

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
