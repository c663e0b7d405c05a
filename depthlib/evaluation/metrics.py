"""Depth error metrics: masked, keyword-only, float64, pooled over pixels or averaged over images.

Definitions (p = prediction, g = ground truth, both metres, over valid pixels only):
  delta_k  = mean(max(p/g, g/p) < 1.25**k),  k = 1, 2, 3
  abs_rel  = mean(|p - g| / g)          divides by the GROUND TRUTH (DenseDepth's evaluate calls
                                        compute_errors(pred, gt) against its (gt, pred) signature,
                                        so it divides by the prediction: its repo's issue #98)
  sq_rel   = mean((p - g)**2 / g)
  rmse     = sqrt(mean((p - g)**2))
  rmse_log = sqrt(mean(d**2)),  d = ln p - ln g
  log10    = mean(|log10 p - log10 g|)
  silog    = sqrt(mean(d**2) - mean(d)**2) * 100   (as BTS / AdaBins / ZoeDepth report it)

Every metric is a ratio of per-pixel sums, so one [K] vector of sums per image is enough to get
both reductions: "pooled" sums all images' vectors first (DenseDepth: all pixels of the test set
at once), "per_image" computes the metrics per image and averages them (BTS, AdaBins, ZoeDepth).
That is also what lets depthlib.evaluation.evaluate stream: it keeps sums, never predictions.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..core.errors import ConfigError, DataError

METRIC_NAMES: tuple[str, ...] = (
    "delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog",
)
HIGHER_IS_BETTER: frozenset[str] = frozenset({"delta1", "delta2", "delta3"})

# Layout of the per-image sum vector.
SUM_KEYS: tuple[str, ...] = (
    "n", "delta1", "delta2", "delta3", "abs_rel", "sq_rel", "sq", "abs_log10", "log", "log_sq",
)
_I = {k: i for i, k in enumerate(SUM_KEYS)}


def flatten_images(x: Tensor, what: str = "tensor") -> Tensor:
    """[H,W] | [B,H,W] | [B,1,H,W] -> [B, H*W] (a view where possible)."""
    if x.ndim == 2:
        return x.reshape(1, -1)
    if x.ndim == 3:
        return x.reshape(x.shape[0], -1)
    if x.ndim == 4 and x.shape[1] == 1:
        return x.reshape(x.shape[0], -1)
    raise DataError(None, f"{what} must be [H,W], [B,H,W] or [B,1,H,W]; got shape {tuple(x.shape)}.",
                    "pass one depth channel per image.")


def metric_sums(*, pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Per-image float64 sums [B, len(SUM_KEYS)] over valid pixels; pred/target/valid [B,1,H,W]."""
    if pred.shape != target.shape or valid.shape != target.shape:
        raise DataError(None, f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and valid "
                        f"{tuple(valid.shape)} must have the same shape.",
                        "resize/crop the prediction to the ground truth first (depthlib.evaluation.protocols does).")
    if valid.dtype != torch.bool:
        raise DataError(None, f"valid must be a bool mask, got {valid.dtype}.", "pass target > 0 or the sample's 'valid'.")
    p_all, g_all, m_all = flatten_images(pred, "pred"), flatten_images(target, "target"), flatten_images(valid, "valid")
    rows = []
    # Per image on the valid pixels only: cheaper than masking whole frames (raw GT is ~30 % holes).
    for p, g in ((p_all[i][m_all[i]].to(torch.float64), g_all[i][m_all[i]].to(torch.float64))
                 for i in range(p_all.shape[0])):
        if not bool((torch.isfinite(p) & (p > 0)).all()):
            raise DataError(None, "prediction is <= 0, NaN or inf at valid pixels; log metrics are undefined there.",
                            "clamp predictions to [min_depth, max_depth] first (every protocol does).")
        if not bool((torch.isfinite(g) & (g > 0)).all()):
            raise DataError(None, "ground truth is <= 0, NaN or inf at pixels marked valid.",
                            "mark holes invalid (valid = depth > 0) or use a protocol with a valid range.")
        r = p / g
        ratio = torch.maximum(r, g / p)
        d = torch.log(r)
        sq = (p - g).square()
        ad = d.abs()
        rows.append(torch.stack([
            p.new_tensor(float(p.numel())),
            (ratio < 1.25).sum(dtype=torch.float64),
            (ratio < 1.25**2).sum(dtype=torch.float64),
            (ratio < 1.25**3).sum(dtype=torch.float64),
            (r - 1.0).abs().sum(),                 # |p - g| / g
            (sq / g).sum(),
            sq.sum(),
            ad.sum() / math.log(10.0),             # |log10 p - log10 g|
            d.sum(),
            d.square().sum(),
        ]))
    return torch.stack(rows)


def metrics_from_sums(sums: Tensor) -> dict[str, float]:
    """Metrics of one sum vector [len(SUM_KEYS)] (one image, or several pooled)."""
    s = [float(v) for v in sums.detach().to("cpu", torch.float64)]
    n = s[_I["n"]]
    if n <= 0:
        raise DataError(None, "no valid pixels to evaluate.", "check the valid mask, crop and valid depth range.")
    mean = {k: s[_I[k]] / n for k in SUM_KEYS[1:]}
    # mean(d^2) - mean(d)^2 can round to a tiny negative number when d is constant.
    var_log = max(mean["log_sq"] - mean["log"] ** 2, 0.0)
    return {
        "delta1": mean["delta1"],
        "delta2": mean["delta2"],
        "delta3": mean["delta3"],
        "abs_rel": mean["abs_rel"],
        "sq_rel": mean["sq_rel"],
        "rmse": math.sqrt(mean["sq"]),
        "rmse_log": math.sqrt(mean["log_sq"]),
        "log10": mean["abs_log10"],
        "silog": math.sqrt(var_log) * 100.0,
    }


def _pooled(sums: Tensor) -> dict[str, float]:
    return metrics_from_sums(sums.sum(dim=0))


def _per_image(sums: Tensor) -> dict[str, float]:
    empty = (sums[:, _I["n"]] <= 0).nonzero().flatten().tolist()
    if empty:
        raise DataError(None, f"image(s) {empty} of the batch have no valid pixels; a per-image mean is undefined.",
                        "drop those frames, or check the crop and valid depth range.")
    per = [metrics_from_sums(row) for row in sums]
    return {k: sum(m[k] for m in per) / len(per) for k in METRIC_NAMES}


REDUCTIONS: dict[str, Callable[[Tensor], dict[str, float]]] = {"pooled": _pooled, "per_image": _per_image}


def reduce_sums(sums: Tensor, reduce: str) -> dict[str, float]:
    """Metrics + n_images + n_pixels from per-image sums [B, len(SUM_KEYS)] under `reduce`."""
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduce {reduce!r}; use one of {sorted(REDUCTIONS)}.")
    out: dict[str, float] = REDUCTIONS[reduce](sums)
    out["n_images"] = int(sums.shape[0])
    out["n_pixels"] = int(round(float(sums[:, _I["n"]].sum())))
    return out


def depth_metrics(*, pred: Tensor, target: Tensor, valid: Tensor, reduce: str = "pooled") -> dict[str, float]:
    """METRIC_NAMES + n_images + n_pixels as floats; pred/target metres, valid bool, all [B,1,H,W]."""
    return reduce_sums(metric_sums(pred=pred, target=target, valid=valid), reduce)


def log_depth_pearson(*, pred: Tensor, target: Tensor, valid: Tensor) -> float:
    """Pearson r between ln(pred) and ln(target) over the valid pixels of one image (any shape, metres).

    A structure measure that ignores scale: a constant map gives NaN (no variance), a map that orders depths
    like the ground truth gives close to 1. Used to check that a model sees a scene, not just its mean depth.
    """
    v = valid.bool()
    if int(v.sum()) < 2:
        raise DataError(None, "log_depth_pearson needs at least 2 valid pixels.")
    x = torch.log(pred[v].double().clamp_min(1e-6))
    y = torch.log(target[v].double().clamp_min(1e-6))
    x, y = x - x.mean(), y - y.mean()
    denom = torch.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if float(denom) > 0 else float("nan")


EDGE_SIDES = ("top", "bottom", "left", "right")


def edge_band(*, pred: Tensor, target: Tensor, valid: Tensor, width: int = 8,
              ring: tuple[int, int] = (32, 48)) -> dict[str, float]:
    """Per image side: mean log error (ln pred - ln target) in the outermost `width` pixels minus the same in the
    band `ring` pixels in from that side ([H,W] or [1,1,H,W] maps, metres).

    A band along an edge (a darker or lighter frame around every prediction, the mark of zero-padded convolutions
    that learned the image border) shows as a large value on that side; a model whose error just drifts across
    the image gives small ones. NaN where either band has no valid pixel.
    """
    h, w = pred.shape[-2:]
    if min(h, w) < 2 * ring[1]:
        raise DataError(None, f"edge_band needs an image of at least {2 * ring[1]} px per side, got {h}x{w}.")
    e = torch.log(pred.double().clamp_min(1e-6)) - torch.log(target.double().clamp_min(1e-6))
    e, v = e.reshape(h, w), valid.reshape(h, w).bool()

    def mean(rows: slice, cols: slice) -> float:
        m = v[rows, cols]
        return float(e[rows, cols][m].mean()) if bool(m.any()) else float("nan")

    def band(side: str, lo: int, hi: int) -> tuple[slice, slice]:
        """Pixels lo..hi in from `side` (rows for top/bottom, columns for left/right)."""
        n = h if side in ("top", "bottom") else w
        s = slice(lo, hi) if side in ("top", "left") else slice(n - hi, n - lo)
        return (s, slice(None)) if side in ("top", "bottom") else (slice(None), s)

    return {side: mean(*band(side, 0, width)) - mean(*band(side, *ring)) for side in EDGE_SIDES}
