"""The one depth convention every reader produces and every model, loss and metric consumes.

A reader yields :class:`Frame` (NumPy, as stored: uint8 RGB, float32 metres, bool valid).
:func:`frame_to_sample` turns it into the tensor sample
``{"image": float[3,H,W] in [0,1], "depth": float[1,H,W] metres, "valid": bool[1,H,W]}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..core.errors import DataError


@dataclass
class Frame:
    """One RGB-D frame in the project convention (HxW everywhere, depth in metres)."""

    rgb: np.ndarray            # uint8 [H, W, 3]
    depth: np.ndarray          # float32 [H, W], metres; undefined where ~valid
    valid: np.ndarray          # bool [H, W]; False = hole / no return / out of range
    name: str = ""             # stable id within its source, e.g. "00000" or "bathroom_0001/r-123"
    scene: str = ""            # scene id, used for splitting without leakage
    meta: dict[str, Any] = field(default_factory=dict)
    # Horizontal focal length in pixels of this frame's own width, when the reader knows its camera (NYU's forms:
    # the Kinect's; pairs: the declared intrinsics); None = unknown. What camera_space="canonical" scales depth by.
    fx: float | None = None

    def check(self, source: str = "") -> "Frame":
        """Raise DataError naming `source` unless shapes and dtypes follow the convention."""
        where = source or self.name or None
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise DataError(where, f"RGB must be uint8 HxWx3, got {self.rgb.dtype} {self.rgb.shape}.")
        if self.depth.shape != self.rgb.shape[:2]:
            raise DataError(
                where,
                f"depth is {self.depth.shape[1]}x{self.depth.shape[0]} but RGB is "
                f"{self.rgb.shape[1]}x{self.rgb.shape[0]}: they are not an aligned pair.",
                "check that the depth and RGB files belong to the same frame and resolution.",
            )
        if self.valid.shape != self.depth.shape or self.valid.dtype != np.bool_:
            raise DataError(where, f"valid mask must be bool {self.depth.shape}, got {self.valid.dtype} {self.valid.shape}.")
        if self.depth.dtype != np.float32:
            raise DataError(where, f"depth must be float32 metres, got {self.depth.dtype}.")
        if self.fx is not None and not (math.isfinite(self.fx) and self.fx > 0):
            raise DataError(where, f"focal length fx must be positive pixels (or None: unknown), got {self.fx!r}.",
                            "check the reader's focal / intrinsics.")
        return self


def frame_to_sample(frame: Frame) -> dict[str, Any]:
    """Frame -> {"image": float[3,H,W] in [0,1], "depth": float[1,H,W] m, "valid": bool[1,H,W], "name",
    "fx": focal length in pixels of the image's width (NaN: unknown)}."""
    image = torch.from_numpy(np.ascontiguousarray(frame.rgb)).permute(2, 0, 1).float().div_(255.0)
    valid = torch.from_numpy(np.ascontiguousarray(frame.valid))[None]
    depth = torch.from_numpy(np.ascontiguousarray(frame.depth))[None].clone()
    depth[~valid] = 0.0  # holes carry no value; masks, not sentinels, say what is valid
    return {"image": image, "depth": depth, "valid": valid, "name": frame.name, "fx": focal_or_nan(frame.fx)}


def focal_or_nan(fx: float | None) -> float:
    """A frame's focal length as a sample stores it: a float, NaN when unknown (batches collate it as float64)."""
    return math.nan if fx is None else float(fx)


@runtime_checkable
class FrameSource(Protocol):
    """What every reader is: an indexable sequence of Frames with cheap per-frame names and scenes."""

    path: str

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Frame: ...

    @property
    def names(self) -> list[str]: ...

    @property
    def scenes(self) -> list[str]: ...


def has_nyu_border(frames: object) -> bool:
    """Whether frames of `frames` (a reader, a prepared file, or a dataset or view over one) may carry NYU's white
    border, so that inference replays a checkpoint's NYU border crop on those of 640x480 (the rule every NYU form
    needs). A reader says no with a class attribute `nyu_border = False` (`pairs`: your own camera's frames); a
    prepared file keeps what its reader said. Wrappers are followed through their `source`, `src` or `dataset`."""
    seen = 0
    while frames is not None and seen < 16:
        said = getattr(frames, "nyu_border", None)
        if said is not None:
            return bool(said)
        frames = next((getattr(frames, a) for a in ("source", "src", "dataset") if getattr(frames, a, None) is not None),
                      None)
        seen += 1
    return True


def stored_jpeg(source: FrameSource, i: int) -> bytes | None:
    """Frame i's RGB file as `source` stores it, when that is a JPEG the source offers (`rgb_jpeg(i)`), else None."""
    get = getattr(source, "rgb_jpeg", None)
    return None if get is None else get(i)
