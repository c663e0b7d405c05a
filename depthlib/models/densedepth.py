"""DenseDepth (Alhashim & Wonka, arXiv 1812.11941): ImageNet encoder, bilinear-upsampling decoder.

The paper's encoder is DenseNet-169; any encoder of models.encoders works (the decoder is built from
its out_channels), e.g. EfficientNet-Lite0 for CPU runs with weights that install offline.

Differences from DenseDepth's public PyTorch port, on purpose: both LeakyReLUs of each up-block are
applied (the port defines the first and never calls it; the paper and the Keras code apply both).
Like both released versions, the decoder's 1x1 conv reads ReLU(norm5), the encoder's final
activation in Keras' DenseNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError
from .base import DepthModel, conv_out_fp32
from .encoders import DenseNetEncoder, create_encoder
from .heads import make_head

__all__ = ["DenseDepthDecoder", "DenseNetEncoder", "UpBlock", "densedepth"]


class UpBlock(nn.Module):
    """Bilinear upsample to the skip's size, concatenate, two conv3x3 + LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_ch + skip_ch, out_ch, 3, padding=1)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x float[B,in,h,w], skip float[B,skip,H,W] -> float[B,out,H,W]."""
        # align_corners=True as in DenseDepth's PyTorch port, whose weights this layout mirrors.
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = self.act(self.conv_a(torch.cat([x, skip], dim=1)))
        return self.act(self.conv_b(x))


class DenseDepthDecoder(nn.Module):
    """Five encoder features -> raw depth float[B,1,H/2,W/2] at the stride-2 skip's resolution."""

    def __init__(self, encoder_channels: list[int], width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ConfigError(f"densedepth: width must be > 0, got {width}.")
        c = int(encoder_channels[-1] * width)
        self.conv_in = nn.Conv2d(encoder_channels[-1], c, 1)
        skips = encoder_channels[-2::-1]  # transition2, transition1, pool0, relu0
        self.ups = nn.ModuleList(
            UpBlock(c // 2**i, skip, c // 2 ** (i + 1)) for i, skip in enumerate(skips)
        )
        self.conv_out = nn.Conv2d(c // 16, 1, 3, padding=1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """[f2, f4, f8, f16, f32] -> float[B,1,H/2,W/2]."""
        x = self.conv_in(F.relu(feats[-1]))
        for up, skip in zip(self.ups, feats[-2::-1]):
            x = up(x, skip)
        return conv_out_fp32(self.conv_out, x)


def densedepth(
    *,
    encoder: str = "densenet169",
    width: float = 1.0,
    pretrained: bool = False,
    head: str = "inverse",
    min_depth: float = 0.1,
    max_depth: float = 10.0,
) -> DepthModel:
    """DenseDepth on a registered encoder (see models.encoders); width 1.0 with densenet169 = 1664 decoder
    channels (released weights), 0.5 = Keras default. pretrained=True resolves the encoder's ImageNet weights."""
    enc = create_encoder(encoder, pretrained=pretrained)
    dec = DenseDepthDecoder(enc.out_channels, width)
    depth_head = make_head(head, min_depth=min_depth, max_depth=max_depth)
    # `pretrained` is left out: a rebuilt model gets its weights from the checkpoint, offline.
    config = {"encoder": encoder, "width": float(width), **depth_head.config()}
    return DepthModel(enc, dec, depth_head, arch="densedepth", config=config,
                      output_stride=2, input_multiple=32)
