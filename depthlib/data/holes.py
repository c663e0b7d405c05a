"""Optional hole filling for users who want dense targets (masked training needs none).

Two fillers, chosen by name from `HOLE_FILLERS`:

- ``"colorization"``: the method of the NYU toolbox's ``fill_depth_colorization`` (Levin, Lischinski & Weiss,
  "Colorization using optimization", 2004): each pixel's depth is the affinity-weighted mean of its 3x3
  neighbours, with affinities from grey-level similarity, and measured pixels pinned by a weight ``alpha``.
  One sparse linear solve (SuperLU via scipy); edges in the image become depth edges. This is how NYU's
  ``depths`` were filled. Written here (vectorised) because no maintained library ships it.
- ``"nearest"``: each hole takes the depth of the nearest measured pixel (``scipy.ndimage.distance_transform_edt``).
  Orders of magnitude faster, no colour guidance: blocky fills at occlusion edges. Use it to preview, or
  when the colorization solve is too slow for the dataset size (timings in benchmarks/RESULTS_loader.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from ..core.errors import DataError
from .frame import Frame, FrameSource, stored_jpeg


def fill_nearest(*, rgb: np.ndarray, depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Holes take the nearest measured depth: (rgb uint8 [H,W,3] unused, depth [H,W], valid [H,W]) -> float32 [H,W]."""
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return depth[rows, cols].astype(np.float32)


def fill_colorization(*, rgb: np.ndarray, depth: np.ndarray, valid: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Levin colorization fill (NYU toolbox method): rgb uint8 [H,W,3], depth m [H,W], valid [H,W] -> float32 [H,W]."""
    h, w = depth.shape
    gray = (rgb.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])) / 255.0
    n = h * w
    idx = np.arange(n).reshape(h, w)
    pad_g = np.pad(gray, 1, constant_values=np.nan)
    pad_i = np.pad(idx, 1, constant_values=-1)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    nb_g = np.stack([pad_g[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])   # [8, H, W]
    nb_i = np.stack([pad_i[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])
    inside = nb_i >= 0
    win = np.concatenate([nb_g, gray[None]])                      # window incl. the centre pixel
    var = np.nanmean((win - np.nanmean(win, axis=0)) ** 2, axis=0)
    diff2 = np.where(inside, (nb_g - gray[None]) ** 2, np.inf)
    csig = np.maximum(var * 0.6, -np.min(diff2, axis=0) / np.log(0.01))
    csig = np.maximum(csig, 2e-6)
    wts = np.where(inside, np.exp(-np.where(inside, diff2, 0.0) / csig[None]), 0.0)
    wts /= wts.sum(axis=0, keepdims=True)
    rows = np.broadcast_to(idx[None], nb_i.shape)[inside]
    a = sparse.csr_matrix((-wts[inside], (rows, nb_i[inside])), shape=(n, n)) + sparse.identity(n, format="csr")
    g = sparse.diags(valid.ravel().astype(np.float64) * alpha)
    b = g @ np.where(valid, depth, 0.0).ravel().astype(np.float64)
    x = spsolve((a + g).tocsc(), b)
    return x.reshape(h, w).astype(np.float32)


HOLE_FILLERS: dict[str, Callable[..., np.ndarray]] = {"colorization": fill_colorization, "nearest": fill_nearest}


def fill_holes(frame: Frame, method: str = "colorization") -> Frame:
    """Frame with holes filled by `method`; valid becomes all True, the measured mask goes to meta["measured"]."""
    if method not in HOLE_FILLERS:
        raise DataError(frame.name or None, f"unknown hole filler {method!r}.", f"use one of {sorted(HOLE_FILLERS)}.")
    if not frame.valid.any():
        raise DataError(frame.name or None, "has no measured depth at all; nothing to fill from.",
                        "drop this frame (its depth file is empty).")
    filled = HOLE_FILLERS[method](rgb=frame.rgb, depth=frame.depth, valid=frame.valid)
    meta = {**frame.meta, "filled": method, "measured": frame.valid}
    return dataclasses.replace(frame, depth=filled, valid=np.ones_like(frame.valid), meta=meta).check()


class FilledSource:
    """A FrameSource whose frames have their holes filled by a depthlib.data.holes method (dense targets)."""

    def __init__(self, source: FrameSource, method: str) -> None:
        self.source, self.method, self.path = source, method, source.path

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Frame:
        f = self.source[i]
        return f if f.valid.all() else fill_holes(f, self.method)

    @property
    def names(self) -> list[str]:
        return self.source.names

    @property
    def scenes(self) -> list[str]:
        return self.source.scenes

    def rgb_jpeg(self, i: int) -> bytes | None:
        """The source's stored JPEG of frame i (filling changes depth only), else None."""
        return stored_jpeg(self.source, i)


def with_holes_filled(source: FrameSource, method: str) -> FrameSource:
    """`source` itself for method "none" (masked training), else a FilledSource."""
    if method == "none":
        return source
    if method not in HOLE_FILLERS:
        raise DataError(source.path, f"unknown hole_fill {method!r}.", f"use 'none' or one of {sorted(HOLE_FILLERS)}.")
    return FilledSource(source, method)
