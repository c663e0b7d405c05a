"""Source "labeled_mat": the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5) through h5py.

MATLAB stores arrays column-major, so h5py shows them transposed: ``images`` (N, 3, 640, 480) uint8 and
``depths`` / ``rawDepths`` (N, 640, 480) float32 metres. Frame i is ``images[i].transpose(2, 1, 0)`` (480x640x3)
and ``depths[i].T``. ``depth="filled"`` gives the toolbox's colorization-filled depth (no holes),
``depth="raw"`` the registered Kinect depth with 0 = missing. ``scenes`` / ``sceneTypes`` (cells of char
arrays, stored as object references) become Frame.scene and meta["scene_type"] when present.
The official 795/654 split lives in a separate ``splits.mat`` (MATLAB 5 format: scipy, not h5py), 1-based.
The reader holds no HDF5 handle until a frame is read; ``close()`` or a ``with`` block releases it, so the
file can then be replaced, rewritten or deleted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from ..core.camera import NYU_KINECT
from ..core.errors import DataError
from .frame import Frame
from .registry import register_source

DEPTH_KEYS = {"filled": "depths", "raw": "rawDepths"}


def read_splits(path: str | Path) -> dict[str, np.ndarray]:
    """NYU ``splits.mat`` -> {"train": 0-based indices, "test": 0-based indices} (795 / 654 officially)."""
    p = Path(path)
    # Checked first: scipy reports a missing file given as a Path as "Reader needs file name ...".
    if not p.is_file():
        raise DataError(p, "splits file not found.", "download splits.mat from the NYU Depth V2 page.")
    try:
        m = scipy.io.loadmat(str(p))
    except FileNotFoundError:
        raise DataError(p, "splits file not found.", "download splits.mat from the NYU Depth V2 page.") from None
    except (ValueError, OSError, TypeError) as e:
        raise DataError(p, f"cannot be read as a MATLAB file ({e}).", "re-download splits.mat.") from None
    if "trainNdxs" not in m or "testNdxs" not in m:
        raise DataError(p, f"has no trainNdxs/testNdxs (keys: {sorted(k for k in m if not k.startswith('__'))}).",
                        "use NYU's splits.mat.")
    out = {"train": m["trainNdxs"].ravel().astype(np.int64) - 1, "test": m["testNdxs"].ravel().astype(np.int64) - 1}
    if min(out["train"].min(), out["test"].min()) < 0 or np.intersect1d(out["train"], out["test"]).size:
        raise DataError(p, "indices are not 1-based disjoint train/test lists.", "use NYU's splits.mat.")
    return out


def _chars(f: h5py.File, ref: Any) -> str:
    return "".join(chr(c) for c in np.asarray(f[ref][()]).ravel())


@register_source("labeled_mat")
class LabeledMatSource:
    """Frames of the labeled .mat (or any HDF5 file in its layout); optionally the official train/test split."""

    def __init__(self, path: str, *, depth: str = "filled", split: str = "all",
                 splits_file: str | None = None) -> None:
        self.path = str(path)
        if depth not in DEPTH_KEYS:
            raise DataError(path, f"unknown depth {depth!r}.", f"use one of {sorted(DEPTH_KEYS)}.")
        self.depth_key = DEPTH_KEYS[depth]
        self._f: h5py.File | None = None
        self._pid = -1
        with self._open() as f:  # the frame list only: no handle is held until a frame is read
            for key in ("images", self.depth_key):
                if key not in f:
                    raise DataError(path, f"has no {key!r} dataset (has {sorted(f.keys())[:12]}).",
                                    "use nyu_depth_v2_labeled.mat (v7.3) or a file in its layout.")
            img, dep = f["images"], f[self.depth_key]
            if img.ndim != 4 or img.shape[1] != 3 or dep.shape != (img.shape[0],) + img.shape[2:]:
                raise DataError(path, f"images {img.shape} / {self.depth_key} {dep.shape} are not the v7.3 layout "
                                "(N, 3, W, H) / (N, W, H).", "a MATLAB v7.3 file read by h5py shows axes reversed.")
            n = img.shape[0]
            self.scene_list = self._cells(f, "scenes", n)
            self.scene_types = self._cells(f, "sceneTypes", n)
        if split == "all":
            self.indices = np.arange(n)
        elif split in ("train", "test"):
            if splits_file is None:
                raise DataError(path, f"split={split!r} needs the official splits.mat.", "pass splits_file=...")
            self.indices = read_splits(splits_file)[split]
            if self.indices.max() >= n:
                raise DataError(splits_file, f"indexes frame {self.indices.max() + 1} but {path} holds {n}.",
                                "use the splits.mat that belongs to the labeled set.")
        else:
            raise DataError(path, f"unknown split {split!r}.", "use 'all', 'train' or 'test'.")

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except FileNotFoundError:
            raise DataError(self.path, "file not found.", "download nyu_depth_v2_labeled.mat (2.8 GB).") from None
        except OSError as e:
            raise DataError(self.path, f"cannot be opened as HDF5 / MATLAB v7.3 ({e}); truncated download?",
                            "re-download nyu_depth_v2_labeled.mat (2.8 GB) and check its size.") from None

    def file(self) -> h5py.File:
        """The HDF5 handle of this process, opened at the first frame read (reopened after fork and after close)."""
        if self._f is None or self._pid != os.getpid():
            self._f = self._open()
            self._pid = os.getpid()
        return self._f

    def close(self) -> None:
        """Release this process's HDF5 handle (a later frame read opens it again)."""
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None  # a handle inherited through fork is the parent's to close

    def __enter__(self) -> "LabeledMatSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_f": None}

    def _cells(self, f: h5py.File, key: str, n: int) -> list[str] | None:
        if key not in f:
            return None
        refs = np.asarray(f[key][()]).ravel()
        if len(refs) != n:
            raise DataError(self.path, f"{key} has {len(refs)} entries for {n} frames.", "re-download the file.")
        try:
            return [_chars(f, r) for r in refs]
        except (OSError, ValueError, TypeError) as e:
            raise DataError(self.path, f"{key} cannot be decoded ({e}).", "re-download the file.") from None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        k = int(self.indices[i])
        f = self.file()
        try:
            rgb = np.ascontiguousarray(f["images"][k].transpose(2, 1, 0))
            depth = np.ascontiguousarray(f[self.depth_key][k].T).astype(np.float32)
        except OSError as e:
            raise DataError(self.path, f"frame {k} cannot be read ({e}); the file is truncated or damaged.",
                            "re-download nyu_depth_v2_labeled.mat.") from None
        valid = np.isfinite(depth) & (depth > 0)
        meta = {"labeled_index": k}
        if self.scene_types is not None:
            meta["scene_type"] = self.scene_types[k]
        scene = self.scene_list[k] if self.scene_list is not None else ""
        return Frame(rgb, np.where(valid, depth, 0).astype(np.float32), valid, f"{k:05d}", scene, meta,
                     NYU_KINECT.fx_at(rgb.shape[1])).check(self.path)

    @property
    def names(self) -> list[str]:
        """0-based labeled index, 5 digits (DenseDepth's test files use the same numbers)."""
        return [f"{int(k):05d}" for k in self.indices]

    @property
    def scenes(self) -> list[str]:
        """Scene id of each frame ('' when the file has no `scenes`)."""
        return ["" if self.scene_list is None else self.scene_list[int(k)] for k in self.indices]
