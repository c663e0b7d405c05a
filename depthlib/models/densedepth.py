"""DenseDepth (Alhashim & Wonka, arXiv 1812.11941): DenseNet encoder, bilinear-upsampling decoder.

Differences from DenseDepth's public PyTorch port, on purpose: both LeakyReLUs of each up-block are
applied (the port defines the first and never calls it; the paper and the Keras code apply both).
Like both released versions, the decoder's 1x1 conv reads ReLU(norm5), the encoder's final
activation in Keras' DenseNet.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .base import DepthModel
from .heads import make_head

# torchvision builder and ImageNet weights of each supported encoder.
_DENSENETS: dict[str, tuple[Callable[..., nn.Module], torchvision.models.WeightsEnum]] = {
    "densenet121": (torchvision.models.densenet121, torchvision.models.DenseNet121_Weights.IMAGENET1K_V1),
    "densenet161": (torchvision.models.densenet161, torchvision.models.DenseNet161_Weights.IMAGENET1K_V1),
    "densenet169": (torchvision.models.densenet169, torchvision.models.DenseNet169_Weights.IMAGENET1K_V1),
    "densenet201": (torchvision.models.densenet201, torchvision.models.DenseNet201_Weights.IMAGENET1K_V1),
}

# Skip taps in torchvision's `features` (outputs at strides 2, 4, 8, 16, 32).
SKIPS = ("relu0", "pool0", "transition1", "transition2", "norm5")


def cached_weights_path(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torch.hub keeps the file of `weights`: torch.hub.get_dir()/checkpoints/<filename>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _densenet_features(variant: str, pretrained: bool) -> nn.Sequential:
    """torchvision DenseNet `features` (classifier dropped), ImageNet weights only from the cache."""
    if variant not in _DENSENETS:
        raise ConfigError(f"densedepth: unknown encoder {variant!r}; choose one of {sorted(_DENSENETS)}.")
    build, weights = _DENSENETS[variant]
    if not pretrained:
        return build(weights=None).features
    path = cached_weights_path(weights)
    # Checked here rather than letting torch.hub try: offline, a download would fail late or hang.
    if not path.is_file():
        raise CheckpointError(
            f"densedepth: ImageNet weights for {variant} ({weights}) are not in the torch hub cache "
            f"and this machine cannot download them. Fix: download {weights.url} elsewhere and put "
            f"the file at {path} (torch.hub.get_dir()/checkpoints/{path.name}), or build the model "
            "with pretrained=False."
        )
    try:
        return build(weights=weights, progress=False).features
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"densedepth: {path} is not a readable {variant} ImageNet checkpoint ({err}). Fix: "
            f"delete it and put a fresh copy of {weights.url} there."
        ) from err


def _channels_at(features: nn.Sequential, names: tuple[str, ...]) -> list[int]:
    """Channel count after each named child, read from the last Conv2d / BatchNorm2d before it."""
    # Valid at the DenseDepth taps only: each ends in a conv or norm (pools keep channels);
    # a dense block's output (a concatenation) would need its growth rate instead.
    out, ch = [], 3
    for name, child in features.named_children():
        for m in child.modules():
            if isinstance(m, nn.Conv2d):
                ch = m.out_channels
            elif isinstance(m, nn.BatchNorm2d):
                ch = m.num_features
        if name in names:
            out.append(ch)
    return out


class DenseNetEncoder(nn.Module):
    """Image float[B,3,H,W] -> five torchvision DenseNet features at strides 2, 4, 8, 16, 32."""

    def __init__(self, variant: str = "densenet169", pretrained: bool = False) -> None:
        super().__init__()
        self.features = _densenet_features(variant, pretrained)
        self.out_channels = _channels_at(self.features, SKIPS)
        self.strides = [2, 4, 8, 16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        """float[B,3,H,W] -> [relu0, pool0, transition1, transition2, norm5] feature maps."""
        feats = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in SKIPS:
                feats.append(x)
        return feats


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
        return self.conv_out(x)


def densedepth(
    *,
    encoder: str = "densenet169",
    width: float = 1.0,
    pretrained: bool = False,
    head: str = "inverse",
    min_depth: float = 0.1,
    max_depth: float = 10.0,
) -> DepthModel:
    """DenseDepth; width 1.0 = 1664 decoder channels (released weights), 0.5 = Keras default."""
    enc = DenseNetEncoder(encoder, pretrained)
    dec = DenseDepthDecoder(enc.out_channels, width)
    depth_head = make_head(head, min_depth=min_depth, max_depth=max_depth)
    # `pretrained` is left out: a rebuilt model gets its weights from the checkpoint, offline.
    config = {"encoder": encoder, "width": float(width), **depth_head.config()}
    return DepthModel(enc, dec, depth_head, arch="densedepth", config=config,
                      output_stride=2, input_multiple=32)
