"""A stand-in that runs as DenseDepth's public PyTorch port runs, for side-by-side speed ratios.

Written for this project from the port's published structure (github.com/ialhashim/DenseDepth, files
PyTorch/model.py, loss.py and train.py, which issue 13 measured at commit 2e15107; read, not copied), so
that benchmarks time "the reference" in the same process as the project, without its files:

- Encoder: a whole torchvision DenseNet-169 (its unused classifier is part of the model, so the
  parameter count is the port's 44.32 M); every child of `features` is run in order and the outputs
  after relu0, pool0, transition1, transition2 and norm5 are the skips.
- Decoder: a 1x1 convolution 1664 -> 1664 on ReLU(norm5), four up-blocks (bilinear upsample with
  align_corners=True to the skip's size, concatenation, 3x3 conv A, 3x3 conv B, then LeakyReLU(0.2):
  the port defines a LeakyReLU after conv A too but never calls it), and a 3x3 convolution to 1 channel.
  245.35 GFLOP forward at 640x480 (a multiply-add = 2 FLOPs); tests/test_reference_port.py checks both numbers.
- Loss: clip((1 - SSIM) / 2, 0, 1) + 0.1 L1 against 1000 / depth_cm (10 / depth in metres): no gradient
  term, no masking. SSIM: 11x11 Gaussian window (sigma 1.5), no padding, the mean of the map, value range 100.
- Optimiser: torch.optim.Adam(params, lr) with torch's defaults; inputs and weights in the default memory
  format, float32.
- Prediction: model(x) and the un-mirrored model(mirror(x)), each turned into metres (10 / output,
  clipped to [0.1, 10]), averaged, upsampled x2 (torch's bilinear here; the port's evaluation used
  skimage's resize, which is slower, so this flatters the reference).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

SKIP_NAMES = ("relu0", "pool0", "transition1", "transition2", "norm5")


class PortUp(nn.Module):
    """Upsample to the skip, concatenate, conv A, conv B, one LeakyReLU (the port's second, the only one it calls)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.unused_act = nn.LeakyReLU(0.2)  # defined by the port, never applied
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x float[B,in-skip,h,w], skip float[B,skip,H,W] -> float[B,out,H,W]."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.act(self.conv_b(self.conv_a(torch.cat([x, skip], dim=1))))


class PortModel(nn.Module):
    """The port's DenseDepth: images float[B,3,H,W] (not normalised) -> 1000/cm output float[B,1,H/2,W/2]."""

    def __init__(self, densenet: str = "densenet169", width: float = 1.0) -> None:
        """The port's model by default; another DenseNet / a narrower decoder only for smoke runs of the benchmark."""
        super().__init__()
        self.densenet = getattr(torchvision.models, densenet)(weights=None)  # classifier kept, as in the port
        c = int(self.densenet.classifier.in_features * width)  # 1664 for DenseNet-169
        self.conv2 = nn.Conv2d(self.densenet.classifier.in_features, c, 1)
        self.up1 = PortUp(c + 256, c // 2)
        self.up2 = PortUp(c // 2 + 128, c // 4)
        self.up3 = PortUp(c // 4 + 64, c // 8)
        self.up4 = PortUp(c // 8 + 64, c // 16)
        self.conv3 = nn.Conv2d(c // 16, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """float[B,3,H,W] -> float[B,1,H/2,W/2]."""
        skips = {}
        for name, module in self.densenet.features.named_children():
            x = module(x)
            if name in SKIP_NAMES:
                skips[name] = x
        y = self.conv2(F.relu(skips["norm5"]))
        y = self.up1(y, skips["transition2"])
        y = self.up2(y, skips["transition1"])
        y = self.up3(y, skips["pool0"])
        y = self.up4(y, skips["relu0"])
        return self.conv3(y)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    g = torch.tensor([math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)])
    g = g / g.sum()
    return torch.outer(g, g)[None, None]


def port_ssim(a: Tensor, b: Tensor, value_range: float) -> Tensor:
    """Mean SSIM of a, b float[B,1,H,W]: 11x11 Gaussian, no padding, unmasked."""
    w = _gaussian_window().to(a)
    blur = lambda t: F.conv2d(t, w)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return smap.mean()


def port_loss(output: Tensor, depth_m: Tensor) -> Tensor:
    """clip((1 - SSIM) / 2, 0, 1) + 0.1 L1 of output vs 10 / depth, both float[B,1,H,W]."""
    target = 10.0 / depth_m  # the port's DepthNorm: 1000 / depth in cm
    l1 = (output - target).abs().mean()
    dssim = ((1 - port_ssim(output, target, 1000.0 / 10.0)) * 0.5).clamp(0, 1)
    return dssim + 0.1 * l1


def port_train_step(model: PortModel, opt: torch.optim.Optimizer, image: Tensor, depth_half_m: Tensor) -> Tensor:
    """One step as the port's train.py takes it: zero_grad, forward, loss, backward, Adam step -> loss."""
    opt.zero_grad()
    loss = port_loss(model(image), depth_half_m)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def port_predict_flip(model: PortModel, x: Tensor) -> Tensor:
    """Flip-averaged metres float[B,1,H,W] of images float[B,3,H,W], as the port's evaluation computes them."""
    model.eval()
    to_m = lambda out: (10.0 / out).clamp(0.1, 10.0)  # noqa: E731
    d = 0.5 * (to_m(model(x)) + to_m(model(x.flip(-1))).flip(-1))
    return F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
