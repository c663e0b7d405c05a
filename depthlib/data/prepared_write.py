"""Writing the prepared HDF5 dataset (layout and reader: depthlib.data.prepared).

Frames are read and turned into stored rows (depth codes, JPEG bytes, checksum) by `read_threads`
threads a few frames ahead, while this thread writes and compresses: JPEG/PNG decoding releases the
GIL, so on two cores the read overlaps the HDF5 work. Rows are written strictly in order, so the file
is the same for any number of threads.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from ..core.ahead import ahead
from ..core.atomic import publish
from ..core.errors import DataError
from ..core.lock import hold_lock
from ..core.notices import notice
from .frame import Frame, FrameSource, focal_or_nan, has_nyu_border, stored_jpeg
from .prepared import _STR, FORMAT_VERSION, RGB_CODECS, _blosc, _crc, open_h5, verify_prepared

_BLOB_CHUNK = 1 << 17  # bytes per chunk of the JPEG stream


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
    f.create_dataset("crc32", (n,), dtype=np.uint32)
    f.create_dataset("fx", (n,), dtype=np.float64, fillvalue=np.nan)
    f.create_dataset("rgb_copied", (n,), dtype=bool)
    for key, data in rows.items():
        f.create_dataset(key, data=data)
    f.create_dataset("scene_names", data=np.array(scene_names, dtype=object), dtype=_STR)
    f.attrs.update(attrs)
    f.attrs["split_names"] = json.dumps(split_names)
    f.attrs["complete"] = False
    f.attrs["n_written"] = 0


def _jpeg_as_stored(data: bytes | None, hw: tuple[int, int]) -> np.ndarray | None:
    """The source's JPEG file as uint8, if it is a 3-channel JPEG of the frame's size (else None: encode anew)."""
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            fits = im.format == "JPEG" and im.mode == "RGB" and im.size == (hw[1], hw[0])
    except (OSError, SyntaxError, ValueError):
        return None  # not decodable as JPEG: the frame's decoded pixels are encoded instead
    return np.frombuffer(data, dtype=np.uint8) if fits else None


def _row(source: FrameSource, i: int, *, hw: tuple[int, int], codec: str, quality: int, unit: float,
         frame: Frame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, int, float]:
    """source[i] as stored -> (JPEG bytes or RGB uint8 [H,W,3], depth codes uint16 [H,W], valid, copied, crc32, fx
    in pixels or NaN)."""
    fr = frame if frame is not None else source[i].check(source.path)
    if fr.depth.shape != hw:
        raise DataError(f"{source.path} [{fr.name}]", f"frame is {fr.depth.shape[1]}x{fr.depth.shape[0]}, but the "
                        f"prepared file's frames are {hw[1]}x{hw[0]} (the first frame's size).",
                        "bring every frame to one size before 01 (resize or crop RGB and depth alike), or prepare "
                        "each size into its own file (a source per size).")
    # Invariant the fast loader relies on: code 0 <=> invalid (valid depths below half a unit become 1).
    d = np.where(fr.valid, np.maximum(np.round(fr.depth / unit), 1), 0)
    if d.max() > 65535:
        raise DataError(f"{source.path} [{fr.name}]", f"depth {float(fr.depth[fr.valid].max()):.1f} m does not "
                        f"fit uint16 in units of {unit} m.", "pass a larger depth_unit_m.")
    d = d.astype(np.uint16)
    rgb, copied = fr.rgb, False
    if codec == "jpeg":
        jpeg = _jpeg_as_stored(stored_jpeg(source, i), hw)
        copied = jpeg is not None
        rgb = jpeg if jpeg is not None else _encode_jpeg(fr.rgb, quality)
    return rgb, d, fr.valid, copied, _crc(rgb, d, fr.valid), focal_or_nan(fr.fx)


def _resume_point(partial: Path, fp: str) -> int:
    """How many leading frames of a partial file are intact and ours; -1 for a foreign or unreadable file."""
    try:
        with h5py.File(partial, "r") as f:
            if f.attrs.get("fingerprint") != fp or "crc32" not in f or "fx" not in f:
                return -1
            n = int(f.attrs["n_written"])
        bad = verify_prepared(partial, range(n))
    except (OSError, KeyError, ValueError, DataError):
        return -1
    if bad:
        warnings.warn(f"{partial}: frame {bad[0]} of the {n} written does not match its checksum (the run was killed "
                      f"mid-write); writing again from there.", stacklevel=3)
        return bad[0]
    return n


def write_prepared(source: FrameSource, out_path: str | Path, *, indices: Sequence[int] | None = None,
                   split: str | Sequence[str] = "train", selection: dict[str, Any] | None = None,
                   rgb_codec: str = "jpeg", jpeg_quality: int = 90, depth_unit_m: float = 0.001,
                   flush_every: int = 32, overwrite: bool = False, progress: bool = True,
                   read_threads: int = 2) -> Path:
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
    settings = {"rgb_codec": rgb_codec, "jpeg_quality": jpeg_quality, "depth_unit_m": depth_unit_m, "copy_jpeg": True,
                "splits": hashlib.sha256("\n".join(splits).encode()).hexdigest()}
    fp = _fingerprint(source, idx, settings)
    # One writer per file: a second one (another pipeline, another notebook) would race on the .partial.
    with hold_lock(out.with_name(out.name + ".lock"), "this prepared dataset (being written)"):
        if out.exists() and not overwrite:
            with open_h5(out) as f:
                if f.attrs.get("fingerprint") == fp and bool(f.attrs.get("complete")):
                    if "fx" not in f:
                        notice(f"{out}: reused as written before prepared files recorded each frame's focal length "
                               "(format 1): its frames' cameras read as unknown. camera_space='canonical' needs them: "
                               "overwrite=True rewrites the file with them.")
                    return out
            raise DataError(out, "exists and was written from another source, selection or settings.",
                            "pass overwrite=True or choose another output name.")
        first = source[int(idx[0])].check(source.path)
        hw = first.depth.shape
        attrs = {"format_version": FORMAT_VERSION, "fingerprint": fp, "source_type": type(source).__name__,
                 "source_path": str(source.path), "selection": json.dumps(selection or {}), "height": hw[0],
                 "width": hw[1], "depth_unit_m": depth_unit_m, "rgb_codec": rgb_codec, "jpeg_quality": jpeg_quality,
                 "nyu_border": has_nyu_border(source)}
        start = _resume_point(partial, fp) if partial.exists() else 0
        if start < 0:
            warnings.warn(f"{partial}: stale or unreadable partial file from another run; starting over.", stacklevel=2)
            partial.unlink()
            start = 0
        out.parent.mkdir(parents=True, exist_ok=True)

        def row(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, int, float]:
            return _row(source, int(idx[k]), hw=hw, codec=rgb_codec, quality=jpeg_quality, unit=depth_unit_m,
                        frame=first if k == 0 else None)

        with h5py.File(partial, "a") as f:
            if "depth" not in f:
                _create(f, hw, rgb_codec, rows, split_names, scene_names, attrs)
            # Handles looked up once (a lookup by name costs ~0.2 ms); per-frame scalars are written at each flush.
            d_depth, d_valid = f["depth"], f["valid"]
            d_rgb = f["rgb_jpeg"] if rgb_codec == "jpeg" else f["rgb"]
            offsets = f["rgb_offset"][()] if rgb_codec == "jpeg" else None
            copied, crc, fx = f["rgb_copied"][()], f["crc32"][()], f["fx"][()]
            lo = start  # rows written since the last flush: [lo, k]
            bar = tqdm(total=len(idx), initial=start, disable=not progress, desc=out.name)
            for k, (rgb, d, valid, was_copied, checksum, focal) in enumerate(ahead(row, range(start, len(idx)), read_threads), start):
                copied[k], crc[k], fx[k] = was_copied, checksum, focal
                if offsets is not None:
                    end = int(offsets[k]) + len(rgb)
                    if end > d_rgb.shape[0]:
                        d_rgb.resize((max(end, 2 * d_rgb.shape[0]),))  # geometric growth; trimmed when complete
                    d_rgb[offsets[k]:end] = rgb
                    offsets[k + 1] = end
                else:
                    d_rgb[k] = rgb
                d_depth[k] = d
                d_valid[k] = valid
                bar.update(1)
                if (k + 1) % flush_every == 0 or k + 1 == len(idx):
                    if offsets is not None:
                        f["rgb_offset"][lo + 1:k + 2] = offsets[lo + 1:k + 2]
                    f["rgb_copied"][lo:k + 1], f["crc32"][lo:k + 1] = copied[lo:k + 1], crc[lo:k + 1]
                    f["fx"][lo:k + 1] = fx[lo:k + 1]
                    f.attrs["n_written"] = k + 1
                    f.flush()
                    lo = k + 1
            bar.close()
            if offsets is not None:
                d_rgb.resize((int(offsets[len(idx)]),))  # drop the growth slack
            f.attrs["rgb_jpeg_copied"] = int(copied.sum())
            f.attrs["complete"] = True
            f.flush()
        return publish(partial, out)  # the data is on disk before the name says "complete"
