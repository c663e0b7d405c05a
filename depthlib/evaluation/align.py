"""Per-image alignment of a relative prediction to metric ground truth before computing metrics.

Modes (all masked, per image, closed form, computed in float64):
  "none"                 prediction unchanged
  "median"               p * median(g) / median(p)                       (monodepth2 / SfM-Learner)
  "scale_shift"          s * p + t, least squares in depth
  "scale_shift_inverse"  1 / (s / p + t), least squares in inverse depth  (MiDaS, Depth Anything)

`pred` is always depth-like (what depthlib.models.predict returns); the inverse mode inverts it, fits in
disparity against 1/g and inverts back. As MiDaS does, the fitted disparity is clamped to
[1/max_depth, 1/min_depth] when `depth_range` is given, so non-positive disparities become
max_depth instead of negative or infinite depths.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..core.errors import ConfigError, DataError
from .metrics import flatten_images


def fit_scale_shift(x: Tensor, y: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares (s, t) per image minimising sum_valid (s*x + t - y)^2; x,y,valid [B,1,H,W] -> ([B], [B]) float64."""
    xs = flatten_images(x, "pred").to(torch.float64)
    ys = flatten_images(y, "target").to(torch.float64)
    m = flatten_images(valid, "valid")
    w = m.to(torch.float64)
    xs = torch.where(m, xs, torch.zeros_like(xs))  # keeps inf/NaN off the mask out of the sums
    ys = torch.where(m, ys, torch.zeros_like(ys))
    n = w.sum(dim=1)
    if bool((n < 2).any()):
        bad = (n < 2).nonzero().flatten().tolist()
        raise DataError(None, f"image(s) {bad} have fewer than 2 valid pixels; scale and shift are undefined.",
                        "check the valid mask, or use alignment='median' / 'none'.")
    xm = (xs * w).sum(dim=1) / n
    ym = (ys * w).sum(dim=1) / n
    # Centred normal equations: better conditioned than the raw 2x2 system.
    xc = (xs - xm[:, None]) * w
    yc = (ys - ym[:, None]) * w
    var = xc.square().sum(dim=1)
    cov = (xc * yc).sum(dim=1)
    flat = var <= 1e-12 * (xs.square() * w).sum(dim=1).clamp_min(1e-300)
    if bool(flat.any()):
        bad = flat.nonzero().flatten().tolist()
        raise DataError(None, f"prediction is constant over the valid pixels of image(s) {bad}; "
                        "scale-and-shift alignment is undefined.", "use alignment='median' or 'none'.")
    s = cov / var
    return s, ym - s * xm


def _none(pred: Tensor, target: Tensor, valid: Tensor, depth_range: tuple[float, float] | None) -> Tensor:
    return pred


def _median(pred: Tensor, target: Tensor, valid: Tensor, depth_range: tuple[float, float] | None) -> Tensor:
    p = flatten_images(pred, "pred").to(torch.float64)
    g = flatten_images(target, "target").to(torch.float64)
    m = flatten_images(valid, "valid")
    scales = []
    for i in range(p.shape[0]):
        if not bool(m[i].any()):
            raise DataError(None, f"image {i} has no valid pixels; median scaling is undefined.", "check the valid mask.")
        # quantile(0.5) averages the two middle values, as np.median does (torch.median does not).
        scales.append(torch.quantile(g[i][m[i]], 0.5) / torch.quantile(p[i][m[i]], 0.5))
    s = torch.stack(scales).reshape((-1,) + (1,) * (pred.ndim - 1)) if pred.ndim > 2 else scales[0]
    return (pred.to(torch.float64) * s).to(pred.dtype)


def _scale_shift(pred: Tensor, target: Tensor, valid: Tensor, depth_range: tuple[float, float] | None) -> Tensor:
    s, t = fit_scale_shift(pred, target, valid)
    shape = (-1,) + (1,) * (pred.ndim - 1) if pred.ndim > 2 else ()
    return (pred.to(torch.float64) * s.reshape(shape) + t.reshape(shape)).to(pred.dtype)


def _scale_shift_inverse(pred: Tensor, target: Tensor, valid: Tensor,
                         depth_range: tuple[float, float] | None) -> Tensor:
    p = pred.to(torch.float64)
    g = target.to(torch.float64)
    disp = 1.0 / p
    s, t = fit_scale_shift(disp, 1.0 / g, valid)
    shape = (-1,) + (1,) * (pred.ndim - 1) if pred.ndim > 2 else ()
    aligned = disp * s.reshape(shape) + t.reshape(shape)
    if depth_range is not None:
        aligned = aligned.clamp(1.0 / depth_range[1], 1.0 / depth_range[0])
    return (1.0 / aligned).to(pred.dtype)


ALIGNERS: dict[str, Callable[[Tensor, Tensor, Tensor, tuple[float, float] | None], Tensor]] = {
    "none": _none,
    "median": _median,
    "scale_shift": _scale_shift,
    "scale_shift_inverse": _scale_shift_inverse,
}


def align(pred: Tensor, target: Tensor, valid: Tensor, mode: str = "none", *,
          depth_range: tuple[float, float] | None = None) -> Tensor:
    """Aligned depth, same shape/dtype as pred [B,1,H,W]; fitted on target [B,1,H,W] where valid [B,1,H,W]."""
    if mode not in ALIGNERS:
        raise ConfigError(f"unknown alignment {mode!r}; use one of {sorted(ALIGNERS)}.")
    if pred.shape != target.shape or valid.shape != target.shape:
        raise DataError(None, f"pred {tuple(pred.shape)}, target {tuple(target.shape)}, valid {tuple(valid.shape)} differ.",
                        "crop/resize the prediction to the ground truth first.")
    return ALIGNERS[mode](pred, target, valid, depth_range)
