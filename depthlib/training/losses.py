"""Training losses: pure, keyword-only, masked by ``valid`` so that depth holes contribute nothing.

Masking rules (the same in every function here):
- ``valid`` is bool[B,1,H,W] (None = all valid). Invalid pixels are replaced by 0 with
  ``torch.where`` before any arithmetic, so NaN/Inf or any value there changes neither the loss
  nor its gradient.
- SSIM: only windows lying wholly on valid pixels count (the valid mask eroded by the window);
  the mean is taken over those windows. As in tf.image.ssim / skimage's cropped mean, only
  windows wholly inside the image exist ("valid" convolution, no padding).
- Gradient terms: a finite difference counts only when both of its pixels are valid.
- Means divide by the number of valid pixels (windows for SSIM). With nothing valid a term is 0
  (SSIM mean 1): no evidence, no loss, and the graph stays connected.

``LOSSES[name](*, pred, target, valid, head) -> scalar``: ``pred`` is the raw model output,
``target`` depth in metres, both [B,1,h,w]; each loss converts to its own space through ``head``
(``head.to_target(depth_m)``, ``head.to_depth(raw)``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "densedepth_loss",
    "gradient_l1",
    "l1",
    "log_gradient_loss",
    "silog_grad_loss",
    "silog_loss",
    "ssi_loss",
    "ssim",
]

# Clamp before log / reciprocal: depth heads already keep depths positive, this only keeps a
# degenerate raw output from turning the loss into NaN.
_EPS_DEPTH = 1e-6


def _full_precision(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a loss in float32 with autocast off: SSIM's E[x^2] - E[x]^2 cancels badly in bf16/fp16."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Tensor:
        low = (torch.float16, torch.bfloat16)
        kwargs = {k: v.float() if isinstance(v, Tensor) and v.dtype in low else v for k, v in kwargs.items()}
        device = kwargs["pred"].device.type if isinstance(kwargs.get("pred"), Tensor) else "cpu"
        with torch.autocast(device_type=device, enabled=False):
            return fn(**kwargs)

    return wrapper


def _check(pred: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    """Check shapes (pred/target [B,C,H,W], valid [B,1|C,H,W]); return valid as bool, broadcast."""
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be [B,C,H,W] of "
            "the same shape. Fix: resize the target depth and valid mask to the prediction's size "
            "(nearest for valid) before calling the loss."
        )
    if valid is None:
        return torch.ones_like(pred, dtype=torch.bool)
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got {valid.dtype}. Fix: pass `depth > 0`.")
    b, c, h, w = pred.shape
    if valid.dim() != 4 or valid.shape[0] != b or valid.shape[1] not in (1, c) or valid.shape[2:] != pred.shape[2:]:
        raise ValueError(
            f"valid {tuple(valid.shape)} does not match pred {tuple(pred.shape)}. "
            "Fix: pass a bool mask [B,1,H,W] at the prediction's size."
        )
    return valid.expand_as(pred)


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """Mean of values over weight==True entries; 0 (graph kept) when none are set."""
    w = weight.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(1.0)


def _gaussian_1d(window: int, sigma: float, like: Tensor) -> Tensor:
    """Normalised 1-D Gaussian float[window]; the SSIM window is its outer product with itself."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(device=like.device, dtype=like.dtype)


def _separable_blur(t: Tensor, g: Tensor) -> Tensor:
    """Valid-mode blur of every channel of t float[B,C,H,W] by outer(g, g) -> [B,C,H-w+1,W-w+1].

    Two 1-D passes (2w multiply-adds a pixel instead of w^2): the SSIM window is separable. Measured
    in benchmarks/bench_models.py (loss section).
    """
    c, w = t.shape[1], g.numel()
    t = F.conv2d(t, g.view(1, 1, w, 1).expand(c, 1, w, 1), groups=c)
    return F.conv2d(t, g.view(1, 1, 1, w).expand(c, 1, 1, w), groups=c)


@_full_precision
def ssim(
    *,
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    value_range: float,
    window: int = 11,
    sigma: float = 1.5,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Gaussian-window SSIM of pred vs target [B,C,H,W] -> scalar mean, or map [B,C,H-w+1,W-w+1].

    Matches skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=value_range) on fully valid images. With
    reduction="none", windows that touch an invalid pixel are NaN in the map.
    """
    v = _check(pred, target, valid)
    if window % 2 != 1 or window < 1:
        raise ValueError(f"SSIM window must be a positive odd size, got {window}.")
    h, w = pred.shape[-2:]
    if h < window or w < window:
        raise ValueError(
            f"SSIM window {window} is larger than the image {h}x{w}. Fix: use a smaller window or "
            "larger inputs."
        )
    if value_range <= 0:
        raise ValueError(f"SSIM value_range must be > 0, got {value_range}.")
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    x = torch.where(v, pred, zero)
    y = torch.where(v, target.to(pred.dtype), zero)
    c = x.shape[1]
    # The five local means in one separable pass over stacked channels (one call, not five 2-D convolutions).
    mu_x, mu_y, e_xx, e_yy, e_xy = _separable_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1),
                                                   _gaussian_1d(window, sigma, x)).split(c, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (0.01 * value_range) ** 2
    c2 = (0.03 * value_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    # A window counts only if every pixel under it is valid (erosion of the mask by the window).
    full = F.max_pool2d((~v).to(pred.dtype), window, stride=1) < 0.5
    if reduction == "none":
        return torch.where(full, smap, torch.full_like(smap, float("nan")))
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return 1.0 - _masked_mean(1.0 - smap, full)


@_full_precision
def l1(*, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Masked mean absolute error of pred vs target [B,C,H,W] -> scalar."""
    v = _check(pred, target, valid)
    diff = torch.where(v, pred - target, torch.zeros_like(pred))
    return _masked_mean(diff.abs(), v)


@_full_precision
def gradient_l1(*, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """DenseDepth edge term: sum over valid pairs of |d_y pred - d_y target| + |d_x ...|, / valid pixels.

    pred/target [B,C,H,W] -> scalar. Forward differences (I[i+1] - I[i]) as tf.image.image_gradients,
    whose zero-padded last row/column makes DenseDepth divide by the pixel count, not the pair count.
    """
    v = _check(pred, target, valid)
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    d = torch.where(v, pred - target.to(pred.dtype), zero)
    dy = (d[..., 1:, :] - d[..., :-1, :]).abs() * (v[..., 1:, :] & v[..., :-1, :])
    dx = (d[..., :, 1:] - d[..., :, :-1]).abs() * (v[..., :, 1:] & v[..., :, :-1])
    return (dy.sum() + dx.sum()) / v.sum().clamp_min(1).to(pred.dtype)


def _fill_invalid_raw(pred: Tensor, v: Tensor, head: Any) -> Tensor:
    """Replace raw outputs at invalid pixels by a harmless in-range value before any nonlinearity.

    torch.where after a nonlinearity is not enough: its zero gradient times a NaN/Inf local
    derivative (1/x at 0, log at NaN) is NaN.
    """
    safe = torch.full_like(pred, float(head.target_range[1]))
    return torch.where(v, pred, safe)


def _log_residual(pred: Tensor, target: Tensor, v: Tensor, head: Any) -> Tensor:
    """log(predicted metres) - log(target) on valid pixels, 0 elsewhere; pred/target [B,1,h,w], v bool."""
    log_depth = head.to_log_depth(_fill_invalid_raw(pred, v, head))
    one = torch.ones((), dtype=log_depth.dtype, device=log_depth.device)
    return torch.where(v, log_depth - torch.where(v, target, one).clamp_min(_EPS_DEPTH).log(), 0 * one)


def _target_value_range(head: Any) -> float:
    """SSIM value range hi - lo of head.target_range (inverse head: 100 - 1 = 99).

    DenseDepth passes maxDepth/minDepth = 100 (the maximum, not the span); C1, C2 then differ by 2 %.
    The span is used because it is also right for heads whose range does not start near 0 (log).
    """
    lo, hi = head.target_range
    return float(hi) - float(lo)


@_full_precision
def densedepth_loss(
    *,
    pred: Tensor,
    target: Tensor,
    valid: Tensor,
    head: Any,
    w_ssim: float = 1.0,
    w_grad: float = 1.0,
    w_l1: float = 0.1,
) -> Tensor:
    """DenseDepth loss on raw pred [B,1,h,w] vs head.to_target(depth metres) -> scalar.

    1.0 * clip((1 - SSIM) / 2, 0, 1) + 1.0 * gradient-L1 + 0.1 * L1 (Alhashim & Wonka, Eq. 1-4 and
    the released Keras code), keeping the gradient term the public PyTorch port drops.
    """
    v = _check(pred, target, valid)
    t = torch.where(v, head.to_target(target), torch.zeros_like(target)).to(pred.dtype)
    s = ssim(pred=pred, target=t, valid=valid, value_range=_target_value_range(head))
    dssim = ((1.0 - s) * 0.5).clamp(0.0, 1.0)
    return (
        w_ssim * dssim
        + w_grad * gradient_l1(pred=pred, target=t, valid=valid)
        + w_l1 * l1(pred=pred, target=t, valid=valid)
    )


@_full_precision
def silog_loss(
    *,
    pred: Tensor,
    target: Tensor,
    valid: Tensor,
    head: Any,
    lam: float = 0.85,
    scale: float = 10.0,
) -> Tensor:
    """Scale-invariant log loss (Eigen et al.; BTS / AdaBins form) of raw pred vs depth [B,1,h,w].

    g = log(head.to_depth(pred)) - log(target) on valid pixels of the whole batch;
    loss = scale * sqrt(mean(g^2) - lam * mean(g)^2) (BTS: lam 0.85, scale 10).
    The head converts unclamped (head.to_log_depth) so out-of-range outputs still get a gradient; depths
    <= 0 (an inverse head's raw <= 0) are floored at 1e-6 m and get none: a log head suits this loss best
    (its raw output is the log depth: no exp that overflows).
    """
    v = _check(pred, target, valid)
    g = _log_residual(pred, target, v, head)
    n = v.sum().clamp_min(1).to(g.dtype)
    mean_sq = (g * g).sum() / n
    mean = g.sum() / n
    # clamp: float error can make the variance-like term a hair negative; sqrt'(0) is infinite.
    return scale * (mean_sq - lam * mean * mean).clamp_min(1e-12).sqrt()


def _align_scale_shift(p: Tensor, d: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image least squares s, t [B] minimising sum_valid (s*p + t - d)^2; p, d, v [B,1,H,W]."""
    m = v.to(p.dtype)
    a00 = (m * p * p).sum((1, 2, 3))
    a01 = (m * p).sum((1, 2, 3))
    a11 = m.sum((1, 2, 3))
    b0 = (m * p * d).sum((1, 2, 3))
    b1 = (m * d).sum((1, 2, 3))
    det = a00 * a11 - a01 * a01
    ok = det > 1e-12 * (a00 * a11).clamp_min(1e-30)
    safe = torch.where(ok, det, torch.ones_like(det))
    s = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    # Constant prediction (or < 2 valid pixels): any s fits equally; take s=0, t=mean target.
    t = torch.where(ok, (-a01 * b0 + a00 * b1) / safe, b1 / a11.clamp_min(1.0))
    return s, t


@_full_precision
def ssi_loss(
    *,
    pred: Tensor,
    target: Tensor,
    valid: Tensor,
    head: Any,
    space: Literal["disparity", "depth"] = "disparity",
) -> Tensor:
    """Scale-and-shift-invariant MSE (MiDaS, Ranftl et al.) of raw pred vs depth [B,1,h,w] -> scalar.

    Per image, s and t solve least squares on valid pixels between the prediction and the target
    in `space` (inverse depth by default); loss = sum_valid (s*p + t - d)^2 / (2 * valid count)
    over the batch, as MiDaS's batch-based reduction.
    """
    v = _check(pred, target, valid)
    if space not in ("disparity", "depth"):
        raise ValueError(f"space must be 'disparity' or 'depth', got {space!r}.")
    # Unclamped: with an inverse head 1 / depth is linear in the raw output, negative values included.
    depth = head.to_depth(_fill_invalid_raw(pred, v, head), clamp=False)
    one = torch.ones((), dtype=depth.dtype, device=depth.device)
    tgt = torch.where(v, target.to(depth.dtype), one).clamp_min(_EPS_DEPTH)
    if space == "disparity":
        near_zero = depth.abs() < _EPS_DEPTH
        p, d = 1.0 / torch.where(near_zero, _EPS_DEPTH * one, depth), 1.0 / tgt
    else:
        p, d = depth, tgt
    p = torch.where(v, p, 0 * one)
    d = torch.where(v, d, 0 * one)
    s, t = _align_scale_shift(p, d, v)
    res = torch.where(v, s.view(-1, 1, 1, 1) * p + t.view(-1, 1, 1, 1) - d, 0 * one)
    return (res * res).sum() / (2 * v.sum().clamp_min(1).to(res.dtype))


@_full_precision
def log_gradient_loss(*, pred: Tensor, target: Tensor, valid: Tensor, head: Any, scales: int = 4) -> Tensor:
    """Multi-scale gradient matching of log depth (MegaDepth / MiDaS form) of raw pred vs depth [B,1,h,w] -> scalar.

    r = log(head.to_depth(pred)) - log(target) on valid pixels; at each of `scales` scales (halved by
    taking every 2nd pixel) the mean over valid neighbour pairs of |d_x r| + |d_y r|. Invariant to a
    global scale of depth: it teaches edges and layout, not the distance itself.
    """
    v = _check(pred, target, valid)
    r = _log_residual(pred, target, v, head)
    total = r.new_zeros(())
    for k in range(scales):
        rk, vk = r[..., :: 2**k, :: 2**k], v[..., :: 2**k, :: 2**k]
        my, mx = vk[..., 1:, :] & vk[..., :-1, :], vk[..., :, 1:] & vk[..., :, :-1]
        gy = (rk[..., 1:, :] - rk[..., :-1, :]).abs() * my
        gx = (rk[..., :, 1:] - rk[..., :, :-1]).abs() * mx
        total = total + (gy.sum() + gx.sum()) / (my.sum() + mx.sum()).clamp_min(1).to(r.dtype)
    return total / scales


def silog_grad_loss(*, pred: Tensor, target: Tensor, valid: Tensor, head: Any, weight: float = 10.0,
                    lam: float = 0.85) -> Tensor:
    """SILog (variance weight `lam`) plus `weight` x the multi-scale log-depth gradient term, pred [B,1,h,w] -> scalar."""
    return (silog_loss(pred=pred, target=target, valid=valid, head=head, lam=lam)
            + weight * log_gradient_loss(pred=pred, target=target, valid=valid, head=head))


LossFn = Callable[..., Tensor]

LOSSES: dict[str, LossFn] = {
    "densedepth": densedepth_loss,
    "silog": silog_loss,
    "silog_grad": silog_grad_loss,
    "ssi": ssi_loss,
}
