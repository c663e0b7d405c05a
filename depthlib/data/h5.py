"""Source "fastdepth_h5": the sparse-to-dense / FastDepth layout (``nyudepthv2.tar.gz``), one .h5 per frame.

Layout: ``<root>/train/<scene>/<N>.h5`` and ``<root>/val/official/<N>.h5``; each file holds ``rgb`` (3, H, W)
uint8 and ``depth`` (H, W) float metres (filled; val = the labeled test set). ``path`` may be the root, a
split folder or a single .h5 file. A file in the labeled-.mat layout (``images`` / ``depths``, e.g.
``converted_h5/labeled_mat_layout_*.h5``) belongs to source "labeled_mat" and is refused here with that fix.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..core.camera import NYU_KINECT
from ..core.errors import DataError
from .frame import Frame
from .registry import register_source


def read_fastdepth_h5(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One FastDepth .h5 -> (rgb uint8 [H,W,3], depth float32 metres [H,W])."""
    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            if "rgb" not in f or "depth" not in f:
                hint = ("it is in the labeled .mat layout: open it with source 'labeled_mat'."
                        if "images" in f else "expected datasets 'rgb' (3,H,W) and 'depth' (H,W).")
                raise DataError(p, f"has datasets {sorted(f.keys())}, not the FastDepth layout.", hint)
            rgb, depth = f["rgb"][()], f["depth"][()]
    except FileNotFoundError:
        raise DataError(p, "file not found.", "check the path.") from None
    except OSError as e:
        raise DataError(p, f"cannot be read as HDF5 ({e}); it is truncated or damaged.",
                        "re-extract nyudepthv2.tar.gz.") from None
    if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.dtype != np.uint8:
        raise DataError(p, f"rgb is {rgb.dtype} {rgb.shape}, expected uint8 (3, H, W).", "re-extract the archive.")
    if depth.shape != rgb.shape[1:]:
        raise DataError(p, f"depth {depth.shape} does not match rgb {rgb.shape[1:]}.", "re-extract the archive.")
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)), depth.astype(np.float32)


@register_source("fastdepth_h5")
class FastDepthH5Source:
    """All .h5 frames under `path` (sorted), optionally one split folder ('train' or 'val')."""

    def __init__(self, path: str, *, split: str | None = None, max_depth: float = 10.0) -> None:
        self.path = str(path)
        root = Path(path)
        if split is not None:
            root = root / split
        if root.is_file():
            self.files = [root]
            self.root = root.parent
        elif root.is_dir():
            self.files = sorted(root.rglob("*.h5"))
            self.root = root
        else:
            raise DataError(root, "not found.", "point path at the nyudepthv2 folder (train/ and val/ inside).")
        if not self.files:
            raise DataError(root, "holds no .h5 frames.", "extract nyudepthv2.tar.gz here.")
        self.max_depth = max_depth
        self._names = [str(p.relative_to(self.root).with_suffix("")) for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Frame:
        p = self.files[i]
        rgb, depth = read_fastdepth_h5(p)
        valid = np.isfinite(depth) & (depth > 0) & (depth <= self.max_depth)
        return Frame(rgb, np.where(valid, depth, 0).astype(np.float32), valid, self._names[i], p.parent.name,
                     {"file": str(p)}, NYU_KINECT.fx_at(rgb.shape[1])).check(str(p))

    @property
    def names(self) -> list[str]:
        """File path relative to the root, without .h5."""
        return list(self._names)

    @property
    def scenes(self) -> list[str]:
        """Parent folder: the scene for train, 'official' for val."""
        return [p.parent.name for p in self.files]
