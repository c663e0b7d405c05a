"""A from-scratch U-Net (Ronneberger et al. 2015) with BatchNorm, for depth regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError
from .base import DepthModel, conv_out_fp32
from .heads import make_head

UPSAMPLING = ("bilinear", "transpose")


class DoubleConv(nn.Sequential):
    """(conv3x3 -> BatchNorm -> ReLU) x 2: float[B,in,H,W] -> float[B,out,H,W]."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UNetEncoder(nn.Module):
    """float[B,3,H,W] -> depth+1 features at strides 1, 2, ..., 2**depth, width * 2**i channels."""

    def __init__(self, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        self.out_channels = [width * 2**i for i in range(depth + 1)]
        self.strides = [2**i for i in range(depth + 1)]
        self.stem = DoubleConv(3, width)
        # ceil_mode: odd sizes give ceil(H / 2**i), like the strided convs of DenseNet.
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), DoubleConv(c_in, c_out))
            for c_in, c_out in zip(self.out_channels[:-1], self.out_channels[1:])
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """float[B,3,H,W] -> [float[B,width*2**i,H/2**i,W/2**i] for i in 0..depth]."""
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class UpStep(nn.Module):
    """Upsample to the skip's size (bilinear or transposed conv), concatenate, DoubleConv."""

    def __init__(self, in_ch: int, skip_ch: int, upsample: str) -> None:
        super().__init__()
        self.upsample = upsample
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
            in_ch //= 2
        self.conv = DoubleConv(in_ch + skip_ch, skip_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x float[B,in,h,w], skip float[B,skip,H,W] -> float[B,skip,H,W]."""
        if self.upsample == "transpose":
            x = self.up(x)
            # ceil_mode pooling can leave x one pixel larger than the skip: crop it.
            x = x[..., : skip.shape[-2], : skip.shape[-1]]
        else:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNetDecoder(nn.Module):
    """U-Net features -> raw depth float[B,1,H/s,W/s], s = output_stride (a power of 2)."""

    def __init__(self, encoder_channels: list[int], upsample: str, output_stride: int) -> None:
        super().__init__()
        stop = output_stride.bit_length() - 1  # log2: the level whose resolution we output
        self.stop = stop
        self.ups = nn.ModuleList(
            UpStep(encoder_channels[i + 1], encoder_channels[i], upsample)
            for i in range(len(encoder_channels) - 2, stop - 1, -1)
        )
        self.conv_out = nn.Conv2d(encoder_channels[stop], 1, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """[f1, f2, ..., f_2**depth] -> float[B,1,H/s,W/s]."""
        x = feats[-1]
        for up, skip in zip(self.ups, feats[self.stop : -1][::-1]):
            x = up(x, skip)
        return conv_out_fp32(self.conv_out, x)


def unet(
    *,
    width: int = 32,
    depth: int = 4,
    upsample: str = "bilinear",
    output_stride: int = 2,
    head: str = "inverse",
    min_depth: float = 0.1,
    max_depth: float = 10.0,
) -> DepthModel:
    """U-Net with `depth` poolings and `width` stem channels; output_stride 2 matches densedepth."""
    if upsample not in UPSAMPLING:
        raise ConfigError(f"unet: upsample must be one of {UPSAMPLING}, got {upsample!r}.")
    if width < 1 or depth < 1:
        raise ConfigError(f"unet: need width >= 1 and depth >= 1, got width={width}, depth={depth}.")
    if output_stride < 1 or output_stride & (output_stride - 1) or output_stride > 2**depth:
        raise ConfigError(
            f"unet: output_stride must be a power of 2 between 1 and 2**depth={2**depth}, "
            f"got {output_stride}."
        )
    enc = UNetEncoder(width, depth)
    dec = UNetDecoder(enc.out_channels, upsample, output_stride)
    depth_head = make_head(head, min_depth=min_depth, max_depth=max_depth)
    config = {"width": int(width), "depth": int(depth), "upsample": upsample,
              "output_stride": int(output_stride), **depth_head.config()}
    return DepthModel(enc, dec, depth_head, arch="unet", config=config,
                      output_stride=output_stride, input_multiple=2**depth)
