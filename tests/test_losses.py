"""Losses: hand-computed values, SSIM against scikit-image, masking, gradients, invariances."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from depthlib.models.heads import InverseHead, LinearHead, LogHead, make_head
from depthlib.training.losses import LOSSES, densedepth_loss, gradient_l1, l1, silog_loss, ssi_loss, ssim

INV = InverseHead(min_depth=0.1, max_depth=10.0)
SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _smooth_pair(seed: int, h: int = 32, w: int = 40, lo: float = 1.0, hi: float = 100.0):
    """Two correlated smooth images float64[h,w] in [lo, hi] (SSIM well away from 0 and 1)."""
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random((h, w)), 2.0)
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + 0.15 * rng.standard_normal((h, w)), 0, 1)
    return lo + (hi - lo) * a, lo + (hi - lo) * b


def _t(x: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype)[None, None]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_matches_skimage(dtype):
    x, y = _smooth_pair(0)
    got = ssim(pred=_t(x, dtype), target=_t(y, dtype), value_range=99.0).item()
    want = structural_similarity(x, y, data_range=99.0, **SK)
    assert 0.05 < want < 0.95
    assert abs(got - want) < 1e-4


def test_ssim_batch_is_mean_of_images_and_identity_is_one():
    (x0, y0), (x1, y1) = _smooth_pair(1), _smooth_pair(2)
    pred = torch.cat([_t(x0), _t(x1)])
    target = torch.cat([_t(y0), _t(y1)])
    want = np.mean([structural_similarity(x0, y0, data_range=99.0, **SK),
                    structural_similarity(x1, y1, data_range=99.0, **SK)])
    assert abs(ssim(pred=pred, target=target, value_range=99.0).item() - want) < 1e-6
    assert abs(ssim(pred=pred, target=pred, value_range=99.0).item() - 1.0) < 1e-12


def test_masked_ssim_is_mean_over_fully_valid_windows_of_skimage_map():
    x, y = _smooth_pair(3)
    valid = np.ones_like(x, dtype=bool)
    valid[10:14, 5:9] = False
    valid[:, -3:] = False
    x_bad, y_bad = x.copy(), y.copy()
    x_bad[~valid], y_bad[~valid] = 1e4, -7.0  # values under invalid pixels must not matter
    _, smap = structural_similarity(x_bad, y_bad, data_range=99.0, full=True, **SK)
    full_windows = ndimage.binary_erosion(valid, np.ones((11, 11)), border_value=0)
    want = smap[full_windows].mean()
    v = torch.as_tensor(valid)[None, None]
    got = ssim(pred=_t(x_bad), target=_t(y_bad), valid=v, value_range=99.0)
    assert abs(got.item() - want) < 1e-6
    m = ssim(pred=_t(x_bad), target=_t(y_bad), valid=v, value_range=99.0, reduction="none")
    assert m.shape == (1, 1, 32 - 10, 40 - 10)
    assert torch.isnan(m).sum().item() == (~full_windows[5:-5, 5:-5]).sum()


def test_l1_hand_computed():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    target = torch.ones(1, 1, 2, 2)
    assert l1(pred=pred, target=target).item() == pytest.approx((0 + 1 + 2 + 4) / 4)
    valid = torch.tensor([[[[True, True], [True, False]]]])
    assert l1(pred=pred, target=target, valid=valid).item() == pytest.approx((0 + 1 + 2) / 3)


def test_gradient_l1_hand_computed():
    # d = pred - target = [[0, 1, 3], [2, 2, 2]]; dx pairs |1|,|2|,|0|,|0|; dy pairs |2|,|1|,|-1|
    pred = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    target = torch.zeros_like(pred)
    # tf.image.image_gradients zero-pads, so DenseDepth divides by the pixel count (6).
    assert gradient_l1(pred=pred, target=target).item() == pytest.approx((1 + 2 + 0 + 0 + 2 + 1 + 1) / 6)
    valid = torch.tensor([[[[True, True, False], [True, True, True]]]])
    # pairs touching (0,2) drop: dx |2| (row 0), dy |-1| (col 2); 5 valid pixels
    assert gradient_l1(pred=pred, target=target, valid=valid).item() == pytest.approx((1 + 0 + 0 + 2 + 1) / 5)


def test_densedepth_loss_composes_terms_in_target_space():
    rng = np.random.default_rng(4)
    depth = rng.uniform(0.5, 9.0, size=(24, 28))
    valid = np.ones_like(depth, dtype=bool)
    valid[3:6, 4:9] = False
    target_t = 10.0 / depth                      # DenseDepth's target, in [1, 100]
    pred = target_t * np.exp(0.2 * rng.standard_normal(depth.shape))
    v = torch.as_tensor(valid)[None, None]
    got = densedepth_loss(pred=_t(pred), target=_t(depth), valid=v, head=INV).item()
    # independent: skimage SSIM map averaged over fully valid windows, numpy differences
    _, smap = structural_similarity(pred, target_t, data_range=99.0, full=True, **SK)
    s = smap[ndimage.binary_erosion(valid, np.ones((11, 11)), border_value=0)].mean()
    d = pred - target_t
    gy = np.abs(np.diff(d, axis=0))[valid[1:] & valid[:-1]].sum()
    gx = np.abs(np.diff(d, axis=1))[valid[:, 1:] & valid[:, :-1]].sum()
    want = np.clip((1 - s) / 2, 0, 1) + (gy + gx) / valid.sum() + 0.1 * np.abs(d[valid]).mean()
    assert got == pytest.approx(want, rel=1e-6)


def test_silog_hand_computed():
    head = LinearHead(min_depth=0.1, max_depth=10.0)
    pred = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 1.0, 1.0]]]])
    valid = torch.tensor([[[[True, True, False]]]])
    g = np.array([0.0, math.log(2.0)])
    want = 10 * math.sqrt((g**2).mean() - 0.85 * g.mean() ** 2)
    got = silog_loss(pred=pred, target=target, valid=valid, head=head)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # log head: raw output is log depth; a constant log offset is penalised only by (1 - lam)
    log_pred = torch.log(target) + 0.3
    got = silog_loss(pred=log_pred, target=target, valid=torch.ones_like(valid), head=LogHead())
    assert got.item() == pytest.approx(10 * math.sqrt(0.15 * 0.09), rel=1e-5)


def test_ssi_hand_computed():
    # depth space, linear head: least squares d = s p + t on the 3 valid pixels
    head = LinearHead(min_depth=0.1, max_depth=10.0)
    pred = torch.tensor([[[[0.0, 1.0, 2.0, 9.0]]]])
    target = torch.tensor([[[[1.0, 2.0, 2.0, 3.0]]]])
    valid = torch.tensor([[[[True, True, True, False]]]])
    # residuals after fitting d=[1,2,2]: s=1/2, t=7/6 -> [1/6, -1/3, 1/6]; sum sq 1/6; / (2*3)
    got = ssi_loss(pred=pred, target=target, valid=valid, head=head, space="depth")
    assert got.item() == pytest.approx(1 / 36, rel=1e-6)


@pytest.mark.parametrize("space, head", [("disparity", INV), ("depth", LinearHead())])
def test_ssi_invariant_to_scale_and_shift(space, head):
    torch.manual_seed(0)
    depth = torch.rand(2, 1, 16, 16) * 8 + 0.5
    valid = torch.rand(2, 1, 16, 16) > 0.2
    raw = torch.rand(2, 1, 16, 16) * 50 + 2
    base = ssi_loss(pred=raw, target=depth, valid=valid, head=head, space=space)
    # inverse head: disparity = raw / max_depth, so an affine raw is an affine disparity
    moved = ssi_loss(pred=3.7 * raw + 11.0, target=depth, valid=valid, head=head, space=space)
    assert base.item() > 1e-4
    assert moved.item() == pytest.approx(base.item(), rel=1e-4)
    exact = 10.0 / depth if space == "disparity" else depth  # perfect up to affine -> 0
    assert ssi_loss(pred=2 * exact + 1, target=depth, valid=valid, head=head, space=space).item() < 1e-8


def test_ssi_constant_prediction_is_finite():
    depth = torch.rand(1, 1, 8, 8) + 1
    raw = torch.full((1, 1, 8, 8), 5.0, requires_grad=True)
    loss = ssi_loss(pred=raw, target=depth, valid=torch.ones_like(depth, dtype=torch.bool), head=INV)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    d = 1 / depth
    assert loss.item() == pytest.approx(((d - d.mean()) ** 2).mean().item() / 2, rel=1e-5)


def _batch(seed: int = 0, h: int = 24, w: int = 24):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(2, 1, h, w, generator=g) * 8 + 0.5
    valid = torch.rand(2, 1, h, w, generator=g) > 0.1
    valid[:, :, 4:16, 4:16] = True  # keep some fully valid SSIM windows
    raw = INV.to_target(depth) * torch.exp(0.3 * torch.randn(2, 1, h, w, generator=g))
    return raw, depth, valid


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_invalid_pixels_change_nothing_and_get_no_gradient(name):
    fn = LOSSES[name]
    raw, depth, valid = _batch()
    raw1 = raw.clone().requires_grad_(True)
    loss1 = fn(pred=raw1, target=depth, valid=valid, head=INV)
    loss1.backward()
    raw2 = raw.clone()
    raw2[~valid] = torch.tensor([float("nan"), float("inf"), -3.0, 1e6]).repeat(100)[: (~valid).sum()]
    depth2 = depth.clone()
    depth2[~valid] = 0.0  # Kinect holes
    raw2.requires_grad_(True)
    loss2 = fn(pred=raw2, target=depth2, valid=valid, head=INV)
    loss2.backward()
    assert torch.isfinite(loss1) and loss1.item() > 0
    assert loss2.item() == loss1.item()
    assert torch.isfinite(raw2.grad).all()
    assert (raw2.grad[~valid] == 0).all()
    assert torch.equal(raw1.grad, raw2.grad)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_registry_uniform_signature_finite_gradients(name):
    fn = LOSSES[name]
    params = inspect.signature(fn).parameters
    assert {"pred", "target", "valid", "head"} <= set(params)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    for head in (INV, LogHead(), LinearHead()):
        raw, depth, valid = _batch(1)
        raw = head.to_target(depth).detach().clone().requires_grad_(True)  # perfect prediction
        loss = fn(pred=raw, target=depth, valid=valid, head=head)
        loss.backward()
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert loss.item() < 1e-3
        assert torch.isfinite(raw.grad).all()


def test_nothing_valid_gives_zero_loss_and_a_graph():
    raw, depth, _ = _batch()
    raw.requires_grad_(True)
    none = torch.zeros_like(depth, dtype=torch.bool)
    for fn in LOSSES.values():
        loss = fn(pred=raw, target=depth, valid=none, head=INV)
        loss.backward()
        assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        l1(pred=x, target=torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="bool"):
        l1(pred=x, target=x, valid=torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="larger than the image"):
        ssim(pred=x, target=x, value_range=1.0)
    with pytest.raises(TypeError):
        l1(x, x)  # keyword-only: argument-order bugs cannot happen


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_low_precision_inputs_and_autocast_give_the_float32_loss(name):
    raw, depth, valid = _batch(2)
    want = LOSSES[name](pred=raw, target=depth, valid=valid, head=INV)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = LOSSES[name](pred=raw, target=depth, valid=valid, head=INV)
    assert in_autocast.dtype == torch.float32 and in_autocast.item() == want.item()
    raw16 = raw.to(torch.bfloat16).requires_grad_(True)
    low = LOSSES[name](pred=raw16, target=depth, valid=valid, head=INV)
    low.backward()
    assert low.dtype == torch.float32 and raw16.grad.dtype == torch.bfloat16
    assert low.item() == pytest.approx(want.item(), rel=0.05)  # only bf16 rounding of pred


@pytest.mark.parametrize("name", ["silog", "silog_grad"])
def test_log_losses_stay_finite_for_huge_log_head_outputs(name):
    # exp(100) overflows float32: the log head's raw output is used as log depth directly, never exp'd and log'd.
    from depthlib.training.losses import LOSSES

    head = make_head("log")
    pred = torch.full((1, 1, 8, 8), 100.0, requires_grad=True)
    target = torch.full((1, 1, 8, 8), 2.0)
    loss = LOSSES[name](pred=pred, target=target, valid=torch.ones_like(target, dtype=torch.bool), head=head)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_log_gradient_loss_is_scale_invariant_and_sees_edges():
    from depthlib.training.losses import log_gradient_loss

    head = make_head("log")
    target = torch.ones(1, 1, 16, 16) * 2.0
    target[..., 8:] = 4.0  # a step edge
    valid = torch.ones_like(target, dtype=torch.bool)
    flat = torch.full_like(target, math.log(3.0))
    assert log_gradient_loss(pred=(target * 1.7).log(), target=target, valid=valid, head=head) < 1e-6  # any scale
    assert log_gradient_loss(pred=flat, target=target, valid=valid, head=head) > 0.05  # a missed edge costs
