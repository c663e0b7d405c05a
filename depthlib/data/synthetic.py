"""Synthetic RGB-D scenes with analytic depth, for testing geometry code against exact answers.

Camera: pinhole with NYU's Kinect RGB intrinsics scaled to the requested size. The RGB encodes the
depth (red = depth / max_depth) plus a column ramp (green), so any misalignment between image and
depth after a transform is detectable pixel by pixel.
"""

from __future__ import annotations

import numpy as np

from .frame import Frame

NYU_RGB_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)  # fx, fy, cx, cy at 640x480


def intrinsics_for(h: int, w: int) -> tuple[float, float, float, float]:
    """NYU RGB intrinsics scaled from 640x480 to (h, w)."""
    fx, fy, cx, cy = NYU_RGB_INTRINSICS
    sx, sy = w / 640.0, h / 480.0
    return fx * sx, fy * sy, cx * sx, cy * sy


def _rays(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    fx, fy, cx, cy = intrinsics_for(h, w)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return (u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy


def _encode(depth: np.ndarray, max_depth: float) -> np.ndarray:
    h, w = depth.shape
    r = np.clip(depth / max_depth, 0, 1)
    g = np.broadcast_to(np.linspace(0, 1, w)[None], (h, w))
    b = np.broadcast_to(np.linspace(0, 1, h)[:, None], (h, w))
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def plane_depth(h: int, w: int, *, normal: tuple[float, float, float], offset: float) -> np.ndarray:
    """Depth z where rays meet the plane n . X = offset (inf where they miss or hit behind)."""
    x, y = _rays(h, w)
    n = np.asarray(normal, dtype=np.float64)
    denom = n[0] * x + n[1] * y + n[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = offset / denom
    z[(denom <= 0) | ~np.isfinite(z)] = np.inf
    return z


def plane_scene(h: int = 64, w: int = 64, *, normal: tuple[float, float, float] = (0.0, -0.3, 1.0),
                offset: float = 3.0, max_depth: float = 10.0, name: str = "plane") -> Frame:
    """A single plane (default: a wall tilted towards the floor); valid where 0 < z <= max_depth."""
    z = plane_depth(h, w, normal=normal, offset=offset)
    valid = np.isfinite(z) & (z > 0) & (z <= max_depth)
    depth = np.where(valid, z, 0.0).astype(np.float32)
    return Frame(rgb=_encode(depth, max_depth), depth=depth, valid=valid, name=name, scene="synthetic")


def box_scene(h: int = 64, w: int = 64, *, wall: float = 4.0, box_depth: float = 2.0,
              box: tuple[float, float, float, float] = (0.25, 0.6, 0.3, 0.7), hole: tuple[int, int, int, int] | None = None,
              max_depth: float = 10.0, name: str = "box") -> Frame:
    """A fronto-parallel box face at `box_depth` m before a wall at `wall` m.

    `box` = (top, bottom, left, right) as image fractions; `hole` = pixel box (r0, r1, c0, c1) marked invalid,
    like a Kinect hole.
    """
    depth = np.full((h, w), wall, dtype=np.float32)
    t, b, l, r = int(box[0] * h), int(box[1] * h), int(box[2] * w), int(box[3] * w)
    depth[t:b, l:r] = box_depth
    valid = np.ones((h, w), dtype=bool)
    if hole is not None:
        r0, r1, c0, c1 = hole
        valid[r0:r1, c0:c1] = False
        depth[~valid] = 0.0
    return Frame(rgb=_encode(depth, max_depth), depth=depth, valid=valid, name=name, scene="synthetic")
