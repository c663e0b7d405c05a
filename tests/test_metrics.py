"""depthlib.evaluation.metrics and .align: hand-computed cases, an independent NumPy reference, alignment recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthlib.core.errors import ConfigError, DataError
from depthlib.evaluation.align import align, fit_scale_shift
from depthlib.evaluation.metrics import METRIC_NAMES, depth_metrics


def np_metrics(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """Independent float64 reference on 1-D arrays of valid pixels (written from the definitions)."""
    p = p.astype(np.float64)
    g = g.astype(np.float64)
    thr = np.maximum(p / g, g / p)
    d = np.log(p) - np.log(g)
    return {
        "delta1": float(np.mean(thr < 1.25)),
        "delta2": float(np.mean(thr < 1.25**2)),
        "delta3": float(np.mean(thr < 1.25**3)),
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean(d**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "silog": float(np.sqrt(np.mean(d**2) - np.mean(d) ** 2) * 100),
    }


def _hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Four valid pixels g=[1,2,4,8], p=[1,3,4,4]; a fifth is a hole with garbage values.
    g = torch.tensor([1.0, 2.0, 4.0, 8.0, 0.0]).reshape(1, 1, 1, 5)
    p = torch.tensor([1.0, 3.0, 4.0, 4.0, -5.0]).reshape(1, 1, 1, 5)
    v = torch.tensor([True, True, True, True, False]).reshape(1, 1, 1, 5)
    return p, g, v


def test_hand_computed_case() -> None:
    p, g, v = _hand_case()
    m = depth_metrics(pred=p, target=g, valid=v)
    # ratios max(p/g, g/p) = [1, 1.5, 1, 2]
    assert m["delta1"] == pytest.approx(0.5, abs=1e-15)
    assert m["delta2"] == pytest.approx(0.75, abs=1e-15)   # 1.5 < 1.5625
    assert m["delta3"] == pytest.approx(0.75, abs=1e-15)   # 2 > 1.953125
    assert m["abs_rel"] == pytest.approx((0 + 1 / 2 + 0 + 4 / 8) / 4, rel=1e-14)  # 0.25
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 0 + 16 / 8) / 4, rel=1e-14)  # 0.625
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 16) / 4), rel=1e-14)
    d = [0.0, math.log(1.5), 0.0, -math.log(2.0)]
    md, md2 = sum(d) / 4, sum(x * x for x in d) / 4
    assert m["rmse_log"] == pytest.approx(math.sqrt(md2), rel=1e-14)
    assert m["log10"] == pytest.approx((math.log10(1.5) + math.log10(2)) / 4, rel=1e-14)
    assert m["silog"] == pytest.approx(math.sqrt(md2 - md**2) * 100, rel=1e-12)
    assert m["n_images"] == 1 and m["n_pixels"] == 4
    assert all(type(m[k]) is float for k in METRIC_NAMES)


def test_abs_rel_divides_by_ground_truth_not_prediction() -> None:
    """DenseDepth's evaluate swaps the arguments of compute_errors (its issue #98); we must not."""
    p, g, v = _hand_case()
    right = depth_metrics(pred=p, target=g, valid=v)
    assert right["abs_rel"] == pytest.approx(0.25, rel=1e-14)
    assert right["sq_rel"] == pytest.approx(0.625, rel=1e-14)
    swapped_abs_rel = (0 + 1 / 3 + 0 + 4 / 4) / 4  # |p-g|/p: what the swapped call gives
    assert abs(right["abs_rel"] - swapped_abs_rel) > 0.05
    # Swapping the keyword arguments is a different (wrong) answer, i.e. the function is not symmetric.
    pv = torch.where(v, p, torch.ones_like(p))
    gv = torch.where(v, g, torch.ones_like(g))
    wrong = depth_metrics(pred=gv, target=pv, valid=v)
    assert wrong["abs_rel"] == pytest.approx(swapped_abs_rel, rel=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_independent_numpy_float64(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.rand(3, 1, 16, 20, generator=gen, dtype=torch.float64) * 9 + 0.5
    p = g * torch.exp(torch.randn(3, 1, 16, 20, generator=gen, dtype=torch.float64) * 0.3)
    v = torch.rand(3, 1, 16, 20, generator=gen) > 0.3
    p, g = p.to(dtype), g.to(dtype)
    pn, gn, vn = p.double().numpy(), g.double().numpy(), v.numpy()
    pooled = depth_metrics(pred=p, target=g, valid=v, reduce="pooled")
    ref = np_metrics(pn[vn], gn[vn])
    for k in METRIC_NAMES:
        assert pooled[k] == pytest.approx(ref[k], rel=1e-10, abs=1e-12), k
    per = depth_metrics(pred=p, target=g, valid=v, reduce="per_image")
    refs = [np_metrics(pn[i][vn[i]], gn[i][vn[i]]) for i in range(3)]
    for k in METRIC_NAMES:
        assert per[k] == pytest.approx(np.mean([r[k] for r in refs]), rel=1e-10, abs=1e-12), k
    assert pooled["n_pixels"] == per["n_pixels"] == int(vn.sum())
    assert pooled["n_images"] == per["n_images"] == 3


def test_pooled_and_per_image_differ_when_pixel_counts_differ() -> None:
    g = torch.full((2, 1, 10, 10), 2.0)
    p = g.clone()
    v = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
    v[0, 0, 0, 0] = True            # image 0: one pixel, 100 % off
    p[0, 0, 0, 0] = 4.0
    v[1] = True                      # image 1: 100 pixels, exact
    pooled = depth_metrics(pred=p, target=g, valid=v, reduce="pooled")
    per = depth_metrics(pred=p, target=g, valid=v, reduce="per_image")
    assert pooled["abs_rel"] == pytest.approx(1.0 / 101)
    assert per["abs_rel"] == pytest.approx(0.5)
    assert per["delta1"] == pytest.approx(0.5) and pooled["delta1"] == pytest.approx(100 / 101)
    # One image: both reductions agree.
    one = dict(pred=p[:1], target=g[:1], valid=v[:1])
    assert depth_metrics(**one, reduce="pooled") == depth_metrics(**one, reduce="per_image")


def test_silog_ignores_a_global_scale_but_rmse_log_does_not() -> None:
    g = torch.linspace(1, 5, 50).reshape(1, 50)
    m = depth_metrics(pred=2 * g, target=g, valid=torch.ones_like(g, dtype=torch.bool))
    assert m["silog"] == pytest.approx(0.0, abs=1e-5)
    assert m["rmse_log"] == pytest.approx(math.log(2), rel=1e-12)


def test_bad_inputs_raise_clear_errors() -> None:
    p, g, v = _hand_case()
    bad = p.clone()
    bad[..., 0] = 0.0
    with pytest.raises(DataError, match="clamp"):
        depth_metrics(pred=bad, target=g, valid=v)
    with pytest.raises(DataError, match="ground truth"):
        depth_metrics(pred=p.abs(), target=g, valid=torch.ones_like(v))  # hole (gt 0) marked valid
    with pytest.raises(DataError, match="same shape"):
        depth_metrics(pred=p[..., :4], target=g, valid=v)
    with pytest.raises(DataError, match="bool"):
        depth_metrics(pred=p, target=g, valid=v.float())
    with pytest.raises(ConfigError, match="reduce"):
        depth_metrics(pred=p, target=g, valid=v, reduce="mean")
    with pytest.raises(DataError, match="no valid pixels"):
        depth_metrics(pred=p, target=g, valid=torch.zeros_like(v))
    two_v = torch.cat([v, torch.zeros_like(v)])
    with pytest.raises(DataError, match="no valid pixels"):
        depth_metrics(pred=torch.cat([p, p]), target=torch.cat([g, g]), valid=two_v, reduce="per_image")


# ---------------------------------------------------------------- alignment


def _synthetic(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    g = torch.rand(3, 1, 12, 16, generator=gen, dtype=torch.float64) * 8 + 1.0
    v = torch.rand(3, 1, 12, 16, generator=gen) > 0.25
    return g, v


def test_scale_shift_recovers_known_affine_in_depth() -> None:
    g, v = _synthetic()
    s = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64).view(3, 1, 1, 1)
    t = torch.tensor([0.3, -1.0, 2.5], dtype=torch.float64).view(3, 1, 1, 1)
    pred = (g - t) / s                       # so that s * pred + t == g
    target = torch.where(v, g, torch.zeros_like(g))  # holes carry 0, must not matter
    fs, ft = fit_scale_shift(pred, target, v)
    assert torch.allclose(fs, s.flatten(), rtol=1e-12) and torch.allclose(ft, t.flatten(), rtol=1e-12, atol=1e-12)
    out = align(pred, target, v, "scale_shift")
    assert torch.allclose(out, g, rtol=1e-12, atol=1e-12)
    assert depth_metrics(pred=out, target=target, valid=v)["abs_rel"] < 1e-12


def test_scale_shift_recovers_known_affine_in_inverse_depth() -> None:
    g, v = _synthetic(2)
    s = torch.tensor([0.25, 1.5, 4.0], dtype=torch.float64).view(3, 1, 1, 1)
    t = torch.tensor([0.01, -0.02, 0.05], dtype=torch.float64).view(3, 1, 1, 1)
    disp = (1.0 / g - t) / s                 # so that s * disp + t == 1/g
    pred = 1.0 / disp
    target = torch.where(v, g, torch.zeros_like(g))
    out = align(pred, target, v, "scale_shift_inverse")
    assert torch.allclose(out, g, rtol=1e-11)
    # The depth-space fit cannot undo an inverse-depth affine exactly.
    assert depth_metrics(pred=align(pred, target, v, "scale_shift"), target=target, valid=v)["abs_rel"] > 1e-4


def test_scale_shift_matches_numpy_lstsq_on_noisy_data() -> None:
    g, v = _synthetic(3)
    pred = g * 0.7 + 0.2 + torch.randn(g.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.1
    fs, ft = fit_scale_shift(pred, g, v)
    for i in range(3):
        x, y = pred[i][v[i]].numpy(), g[i][v[i]].numpy()
        (s_ref, t_ref), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
        assert float(fs[i]) == pytest.approx(s_ref, rel=1e-10) and float(ft[i]) == pytest.approx(t_ref, rel=1e-9, abs=1e-12)


def test_median_scaling_uses_numpy_median() -> None:
    g, v = _synthetic(5)
    c = torch.tensor([0.1, 3.0, 7.0], dtype=torch.float64).view(3, 1, 1, 1)
    assert torch.allclose(align(g * c, g, v, "median"), g, rtol=1e-12)
    # Even number of valid pixels: the scale uses the mean of the two middle values, as np.median.
    p = torch.tensor([[1.0, 2.0, 3.0, 10.0]], dtype=torch.float64)
    gt = torch.tensor([[2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    out = align(p, gt, torch.ones_like(p, dtype=torch.bool), "median")
    assert torch.allclose(out, p * 2.0 / np.median([1.0, 2.0, 3.0, 10.0]))


def test_alignment_edge_cases() -> None:
    g, v = _synthetic(6)
    with pytest.raises(DataError, match="constant"):
        align(torch.ones_like(g), g, v, "scale_shift")
    with pytest.raises(ConfigError, match="alignment"):
        align(g, g, v, "affine")
    assert align(g, g, v, "none") is g
    # Inverse mode clamps the fitted disparity like MiDaS: depths stay inside depth_range.
    pred = torch.tensor([[[[1.0, 2.0, 4.0, 100.0]]]], dtype=torch.float64)
    gt = torch.tensor([[[[4.0, 2.0, 1.0, 0.5]]]], dtype=torch.float64)
    out = align(pred, gt, torch.ones_like(gt, dtype=torch.bool), "scale_shift_inverse", depth_range=(0.1, 10.0))
    assert bool((out >= 0.1).all() and (out <= 10.0).all())


def test_delta_thresholds_are_strict_at_exactly_1_25_to_the_k() -> None:
    """max(p/g, g/p) < 1.25**k, strictly: ratios of exactly 1.25, 1.5625, 1.953125 (exact in binary) do not count."""
    g = torch.tensor([4.0, 5.0, 16.0, 64.0, 4.0]).reshape(1, 1, 1, 5)
    p = torch.tensor([5.0, 4.0, 25.0, 125.0, 4.0]).reshape(1, 1, 1, 5)  # ratios 1.25, 1.25, 1.5625, 1.953125, 1
    m = depth_metrics(pred=p, target=g, valid=torch.ones_like(g, dtype=torch.bool))
    assert m["delta1"] == pytest.approx(1 / 5, abs=1e-15)   # only the exact match; `<=` would give 3/5
    assert m["delta2"] == pytest.approx(3 / 5, abs=1e-15)   # 1.25 < 1.5625, but 1.5625 itself is out
    assert m["delta3"] == pytest.approx(4 / 5, abs=1e-15)   # 1.953125 itself is out


def test_log_depth_pearson_matches_numpy_and_ignores_scale():
    from depthlib.evaluation.metrics import log_depth_pearson

    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 12, 16, generator=g) * 4 + 0.5
    pred = target * torch.exp(0.3 * torch.randn(1, 1, 12, 16, generator=g))
    valid = torch.rand(1, 1, 12, 16, generator=g) > 0.2
    # the reference in float64, as log_depth_pearson computes: on float32 arrays numpy stays in float32 (about 7
    # digits, summed in an order that differs between AVX2, AVX-512 and AMX kernels); both sides now take the same
    # float32 values into float64, so they agree to float64 rounding over ~150 terms, far inside 1e-9
    want = np.corrcoef(np.log(pred[valid].double().numpy()), np.log(target[valid].double().numpy()))[0, 1]
    r = log_depth_pearson(pred=pred, target=target, valid=valid)
    assert r == pytest.approx(want, abs=1e-9) and 0.5 < r < 1
    assert log_depth_pearson(pred=2.5 * pred, target=target, valid=valid) == pytest.approx(r, abs=1e-6)
    assert log_depth_pearson(pred=1 / pred, target=target, valid=valid) == pytest.approx(-r, abs=1e-6)
    assert math.isnan(log_depth_pearson(pred=torch.full_like(target, 2.0), target=target, valid=valid))
    with pytest.raises(DataError, match="at least 2 valid"):
        log_depth_pearson(pred=pred, target=target, valid=torch.zeros_like(valid))


def test_edge_band_finds_a_frame_along_one_side_and_ignores_a_smooth_drift():
    from depthlib.evaluation.metrics import edge_band

    h, w = 120, 160
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    target = 1.0 + yy / h + xx / w                          # a sloped scene, 1-3 m
    valid = torch.ones(h, w, dtype=torch.bool)
    drift = target * torch.exp(0.001 * xx)                  # error grows smoothly across the image
    b = edge_band(pred=drift, target=target, valid=valid)
    assert max(abs(x) for x in b.values()) < 0.05, b
    banded = target.clone()
    banded[:8] *= math.exp(-0.3)                            # 8 rows along the top predicted 26 % nearer
    b = edge_band(pred=banded, target=target, valid=valid)
    assert b["top"] == pytest.approx(-0.3, abs=1e-9) and max(abs(b[s]) for s in ("bottom", "left", "right")) < 0.05, b
    valid[:8] = False                                       # no ground truth in the band: unknown, not zero
    assert math.isnan(edge_band(pred=banded, target=target, valid=valid)["top"])
    with pytest.raises(DataError, match="at least 96 px"):
        edge_band(pred=target[:50], target=target[:50], valid=valid[:50])
