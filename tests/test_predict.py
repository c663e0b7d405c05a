"""predict(): flip averaging as DenseDepth evaluates, any input size, exact pixel alignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthlib.core.errors import ConfigError
from depthlib.models import create_model, list_models
from depthlib.models.heads import LinearHead, LogHead
from depthlib.models.predict import predict

SMALL = {
    "densedepth": {"encoder": "densenet121", "width": 0.25},
    "unet": {"width": 8, "depth": 3},
}


def small_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **SMALL.get(name, {}))


class PoolModel(nn.Module):
    """Stand-in with a known answer: depth = 10 x red channel, averaged over 2x2 blocks."""

    output_stride = 2
    input_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # gives predict a device / dtype to follow
        self.head = LinearHead(min_depth=0.1, max_depth=10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * F.avg_pool2d(x[:, :1], 2) + self.dummy


@pytest.mark.parametrize("name", list_models())
def test_flip_average_equals_manual_computation(name):
    model = small_model(name)
    x = torch.rand(1, 3, 32, 64)
    model.eval()
    with torch.no_grad():
        d1 = model.head.to_depth(model(x))
        d2 = model.head.to_depth(model(x.flip(-1))).flip(-1)
    s = model.output_stride
    model.train()
    native = predict(model, x, out_size="native")
    torch.testing.assert_close(native, 0.5 * (d1 + d2), rtol=1e-6, atol=1e-6)
    # DenseDepth's order: upsample each prediction to full size, then average.
    up = lambda d: F.interpolate(d, scale_factor=s, mode="bilinear", align_corners=False)  # noqa: E731
    full = predict(model, x)
    assert full.shape == (1, 1, 32, 64)
    torch.testing.assert_close(full, 0.5 * (up(d1) + up(d2)), rtol=1e-5, atol=1e-5)
    plain = predict(model, x, flip_average=False, out_size="native")
    torch.testing.assert_close(plain, d1, rtol=1e-6, atol=1e-6)
    assert model.training  # mode restored


@pytest.mark.parametrize("name", list_models())
def test_odd_sizes_come_back_at_input_size(name):
    model = small_model(name)
    h, w = 37, 71  # odd, not multiples of 32 (the cheap ramp test below uses 250 x 333)
    x = torch.rand(1, 3, h, w)
    out = predict(model, x, flip_average=False)
    assert out.shape == (1, 1, h, w)
    assert not out.requires_grad and torch.isfinite(out).all()
    lo, hi = model.head.min_depth, model.head.max_depth
    assert out.min() >= lo - 1e-6 and out.max() <= hi + 1e-6
    s = model.output_stride
    native = predict(model, x[0], flip_average=False, out_size="native")
    assert native.shape == (1, 1, -(-h // s), -(-w // s))
    assert predict(model, x, flip_average=False, out_size=(40, 60)).shape == (1, 1, 40, 60)


def test_padding_and_resize_keep_pixels_aligned():
    # A linear ramp survives 2x2 average pooling + bilinear 2x upsampling exactly, away from the
    # borders, only if predict introduces no half-pixel shift when padding, flipping and cropping.
    h, w = 250, 333
    rows = torch.arange(h, dtype=torch.float64).view(h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, w)
    red = 0.1 + rows / 1000 + cols / 1000
    x = torch.stack([red, torch.zeros_like(red), torch.zeros_like(red)]).unsqueeze(0)
    model = PoolModel().double()
    for flip in (False, True):
        depth = predict(model, x, flip_average=flip)[0, 0]
        torch.testing.assert_close(depth[1:-4, 1:-4], 10 * red[1:-4, 1:-4], rtol=0, atol=1e-12)


def test_bn_statistics_untouched_and_dtype_followed():
    model = small_model("unet").double()
    stats = model.encoder.stem[1].running_mean.clone()
    out = predict(model, torch.rand(1, 3, 40, 56))  # float32 in, float64 model
    assert out.dtype == torch.float64
    assert torch.equal(stats, model.encoder.stem[1].running_mean)


def test_bad_images_are_refused():
    model = PoolModel()
    with pytest.raises(ConfigError, match="float tensor"):
        predict(model, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"\[B,3,H,W\]"):
        predict(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="out_size"):
        predict(model, torch.zeros(1, 3, 8, 8), out_size="full")


class ColumnModel(nn.Module):
    """Hand-made model, not mirror-symmetric: raw log-depth = red/2 + column / width on its stride-2 grid.

    The position term changes under a mirror, so flip averaging changes the answer, and the log head
    is non-linear, so averaging raw outputs differs from averaging metres.
    """

    output_stride = 2
    input_multiple = 4

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.head = LogHead(min_depth=0.1, max_depth=10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = F.avg_pool2d(x[:, :1], 2)
        cols = torch.arange(red.shape[-1], dtype=x.dtype) / red.shape[-1]
        return 0.5 * red + cols + self.dummy


def test_flip_average_is_the_mean_in_metres_of_a_position_dependent_model():
    model = ColumnModel().double()
    x = torch.full((1, 3, 8, 16), 0.4, dtype=torch.float64)  # red 0.4 everywhere: raw = 0.2 + j / 8 on 4x8
    j = torch.arange(8, dtype=torch.float64)
    plain = torch.exp(0.2 + j / 8)
    mirrored = torch.exp(0.2 + (7 - j) / 8)  # what the mirrored image predicts at column j, un-mirrored
    got = predict(model, x, out_size="native")[0, 0]
    torch.testing.assert_close(got, (0.5 * (plain + mirrored)).expand(4, 8), rtol=1e-12, atol=0)
    # The two planted mistakes give other numbers: no flip, or averaging raw outputs before the head.
    assert (got - plain).abs().max() > 0.3
    assert (got - math.exp(0.2 + 3.5 / 8)).abs().max() > 0.05
    torch.testing.assert_close(predict(model, x, flip_average=False, out_size="native")[0, 0], plain.expand(4, 8),
                               rtol=1e-12, atol=0)


def test_padding_and_resizing_of_a_position_dependent_model_by_hand():
    model = ColumnModel().double()
    h, w = 10, 13  # padded to 12 x 16: native grid 6 x 8
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64)
    padded = torch.cat([x, x[..., -1:].expand(1, 3, h, 3)], dim=-1)           # replicate right
    padded = torch.cat([padded, padded[..., -1:, :].expand(1, 3, 2, 16)], dim=-2)  # replicate bottom
    red = padded[:, :1].reshape(1, 1, 6, 2, 8, 2).mean(dim=(3, 5))               # 2x2 block means
    j = torch.arange(8, dtype=torch.float64)
    mine = torch.exp(0.5 * red + j / 8)
    theirs = torch.exp(0.5 * red + (7 - j) / 8)  # red is mirrored twice: unchanged
    native = 0.5 * (mine + theirs)
    torch.testing.assert_close(predict(model, x, out_size="native"), native[..., :5, :7], rtol=1e-12, atol=0)
    # Full size: x2 bilinear (half-pixel centres) on the padded grid, then the padding cut off.
    up = F.interpolate(native, scale_factor=2, mode="bilinear", align_corners=False)
    full = predict(model, x)
    assert full.shape == (1, 1, h, w)
    torch.testing.assert_close(full, up[..., :h, :w], rtol=1e-12, atol=0)
    # Hand value at an interior output pixel: (row 3, col 5) lies a quarter of a cell below / right of
    # native (1, 2): weights 0.75 / 0.25 each way.
    hand = (0.5625 * native[0, 0, 1, 2] + 0.1875 * native[0, 0, 1, 3] + 0.1875 * native[0, 0, 2, 2]
            + 0.0625 * native[0, 0, 2, 3])
    assert float(full[0, 0, 3, 5]) == pytest.approx(float(hand), rel=1e-12)
    resized = predict(model, x, out_size=(5, 26))
    torch.testing.assert_close(resized, F.interpolate(up[..., :h, :w], size=(5, 26), mode="bilinear",
                                                      align_corners=False), rtol=1e-12, atol=0)
