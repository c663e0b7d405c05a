"""Kinect v1 geometry of NYU Depth V2: disparity -> metres, undistortion, depth -> RGB registration.

The constants are the published calibration of the NYU toolbox (``camera_params.m``, RGBDemo
calibration). The registration reproduces the toolbox's ``project_depth_map`` step by step, because
every registered NYU product (labeled ``rawDepths``, the BTS "sync" set) was made with it:

1. undistort the raw disparity (bilinear, Bouguet's ``rect``; outside the image reads 255) and a
   "no return" mask (any pixel that interpolates from a 2047 neighbour is invalid);
2. disparity < 600 (an interpolation artefact, < 0.71 m) and the mask become 2047 (no return);
3. metres = 351.3 / (1092.5 - d), capped at 10 m; d >= 1092.5 (incl. 2047) is invalid;
4. back-project with the depth intrinsics, rotate + translate into the RGB camera, project with the
   RGB intrinsics, round to the nearest pixel, z-buffer (nearest point wins).

The toolbox back-projects 1-based MATLAB pixel indices and writes the projection rounded 1-based, so
here pixel (row, col) is back-projected from ``col + 1`` and lands at ``round(x) - 1``; with 0-based
indices throughout the agreement with the toolbox output drops (see tests/test_readers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

NO_RETURN = 2047                      # raw Kinect disparity meaning "no return"
DEPTH_PARAM_1 = 351.3                 # metres = DEPTH_PARAM_1 / (DEPTH_PARAM_2 - disparity)
DEPTH_PARAM_2 = 1092.5
MAX_DEPTH = 10.0                      # metres; NYU caps depth here

# camera_params.m publishes the rotation as 9 numbers that it negates, reshapes column-major and
# replaces by inv(R'): kept verbatim here and turned into the matrix in `_toolbox_rotation`.
_R_PUBLISHED = (
    9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03,
    -5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03,
    -4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01,
)


def _toolbox_rotation() -> tuple[tuple[float, ...], ...]:
    """The depth->RGB rotation exactly as camera_params.m builds it (close to -I; see module doc)."""
    m = -np.asarray(_R_PUBLISHED, dtype=np.float64).reshape(3, 3, order="F")
    r = np.linalg.inv(m.T)
    return tuple(tuple(float(x) for x in row) for row in r)


@dataclass(frozen=True)
class KinectCalibration:
    """Intrinsics (fx, fy, cx, cy), distortion (k1, k2, p1, p2, k3) and depth->RGB extrinsics."""

    rgb_intrinsics: tuple[float, float, float, float] = (
        5.1885790117450188e02, 5.1946961112127485e02, 3.2558244941119034e02, 2.5373616633400465e02)
    rgb_distortion: tuple[float, float, float, float, float] = (
        2.0796615318809061e-01, -5.8613825163911781e-01, 7.2231363135888329e-04,
        1.0479627195765181e-03, 4.9856986684705107e-01)
    depth_intrinsics: tuple[float, float, float, float] = (
        5.8262448167737955e02, 5.8269103270988637e02, 3.1304475870804731e02, 2.3844389626620386e02)
    depth_distortion: tuple[float, float, float, float, float] = (
        -9.9897236553084481e-02, 3.9065324602765344e-01, 1.9290592870229277e-03,
        -1.9422022475975055e-03, -5.1031725053400578e-01)
    rotation: tuple[tuple[float, ...], ...] = field(default_factory=_toolbox_rotation)
    # The toolbox adds T = [t_x; t_z; t_y] (its own ordering, kept as published).
    translation: tuple[float, float, float] = (
        2.5031875059141302e-02, -2.9342312935846411e-04, 6.6238747008330102e-04)


NYU_CALIBRATION = KinectCalibration()


def disparity_to_metres(disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw disparity uint16 [H,W] -> (float32 metres [H,W] capped at 10 m, bool valid [H,W])."""
    d = disparity.astype(np.float64)
    with np.errstate(divide="ignore"):
        z = DEPTH_PARAM_1 / (DEPTH_PARAM_2 - d)
    valid = (d < DEPTH_PARAM_2) & (disparity != NO_RETURN)
    z = np.where(valid, np.minimum(z, MAX_DEPTH), 0.0)
    return z.astype(np.float32), valid


def _distorted_coords(shape: tuple[int, int], intr: tuple[float, ...], dist: tuple[float, ...]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of the undistorted image, its (row, col) in the distorted image (Brown model)."""
    fx, fy, cx, cy = intr
    k1, k2, p1, p2, k3 = dist
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    x, y = (xx - cx) / fx, (yy - cy) / fy
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return yd * fy + cy, xd * fx + cx


def undistort(img: np.ndarray, intr: tuple[float, ...], dist: tuple[float, ...], fill: float = 255.0
              ) -> np.ndarray:
    """Undistort one channel [H,W] (bilinear, `fill` outside) -> float64 [H,W]."""
    rows, cols = _distorted_coords(img.shape[:2], intr, dist)
    return ndimage.map_coordinates(img.astype(np.float64), [rows, cols], order=1, mode="constant", cval=fill)


def undistort_rgb(rgb: np.ndarray, calib: KinectCalibration = NYU_CALIBRATION) -> np.ndarray:
    """Undistort the Kinect RGB image uint8 [H,W,3] -> uint8 [H,W,3] (the frame registered depth lives in)."""
    out = np.stack([undistort(rgb[..., c], calib.rgb_intrinsics, calib.rgb_distortion) for c in range(3)], -1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def register_depth(disparity: np.ndarray, calib: KinectCalibration = NYU_CALIBRATION
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Raw disparity uint16 [H,W] -> (float32 metres [H,W] in the RGB camera, bool valid [H,W])."""
    h, w = disparity.shape
    d = disparity.astype(np.float64)
    no_return = undistort((d == NO_RETURN) * 255.0, calib.depth_intrinsics, calib.depth_distortion) > 0
    du = undistort(d, calib.depth_intrinsics, calib.depth_distortion)
    du[(du < 600) | no_return] = NO_RETURN
    z, ok = disparity_to_metres(du)
    z = z.astype(np.float64)

    fx, fy, cx, cy = calib.depth_intrinsics
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([((xx + 1) - cx) * z / fx, ((yy + 1) - cy) * z / fy, z]).reshape(3, -1)[:, ok.ravel()]
    depth = z.ravel()[ok.ravel()]
    pts = np.asarray(calib.rotation) @ pts + np.asarray(calib.translation)[:, None]
    fxr, fyr, cxr, cyr = calib.rgb_intrinsics
    col = np.round(pts[0] * fxr / pts[2] + cxr) - 1
    row = np.round(pts[1] * fyr / pts[2] + cyr) - 1
    # The toolbox keeps 1-based 0 < x < W, i.e. 0-based columns 0..W-2 (rows likewise).
    keep = (col >= 0) & (col < w - 1) & (row >= 0) & (row < h - 1)
    pix = (row[keep] * w + col[keep]).astype(np.int64)
    depth = depth[keep]
    # Z-buffer: per target pixel the nearest point wins (sort by pixel, then depth; take the first).
    order = np.lexsort((depth, pix))
    pix, depth = pix[order], depth[order]
    first = np.ones(pix.shape, dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    out = np.zeros(h * w, dtype=np.float64)
    out[pix[first]] = depth[first]
    out = np.minimum(out, MAX_DEPTH).reshape(h, w).astype(np.float32)
    return out, out > 0
