"""DepthModel: normalise -> encoder -> decoder, plus the head that says what the output means."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..core.errors import DataError
from .heads import DepthHead

# torchvision's ImageNet statistics (the DenseNet weights were trained with them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_out_fp32(conv: nn.Module, x: Tensor) -> Tensor:
    """The decoder's output convolution, in float32 even under autocast.

    Under bf16 autocast every value is rounded to 8 significant bits: on the output that is ~0.4 % of every
    depth, the whole error budget of a metre-scale map (and a floor under the training loss). The output conv
    is a sliver of the FLOPs (one output channel), so it reads its input in float32 and runs outside autocast.
    """
    dev = x.device.type
    if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):
        with torch.autocast(dev, enabled=False):
            return conv(x.float())
    return conv(x)


class DepthModel(nn.Module):
    """Composes an encoder (image -> list of features) and a decoder (features -> raw depth map).

    The encoder states `out_channels` (one per feature) and `strides`; the decoder is built from
    them. Inputs are RGB in [0, 1]; the encoder's ImageNet normalisation is a (non-persistent) buffer here.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: DepthHead,
        *,
        arch: str,
        config: dict[str, Any],
        output_stride: int,
        input_multiple: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.arch = arch
        self.config = dict(config)
        self.output_stride = int(output_stride)
        self.input_multiple = int(input_multiple)
        self.encoder_frozen = False
        self.encoder_bn_frozen = False
        # persistent=False: constants, not weights; keeps checkpoints to learned tensors only.
        # The encoder's own statistics when it states them (its ImageNet weights were trained with them).
        mean, std = getattr(encoder, "mean", IMAGENET_MEAN), getattr(encoder, "std", IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """RGB float[B,3,H,W] in [0,1] -> raw float[B,1,ceil(H/s),ceil(W/s)], s = output_stride."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(
                None,
                f"{self.arch}: expected images float[B,3,H,W] in [0,1], got shape {tuple(x.shape)}.",
                "add a batch dimension / convert to 3-channel RGB before calling the model.",
            )
        return self.decoder(self.encoder((x - self.mean) / self.std))

    def freeze_encoder(self, frozen: bool = True) -> DepthModel:
        """Stop (or restart) training the encoder: weights get no gradient, BatchNorm stats stay fixed."""
        self.encoder_frozen = frozen
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def freeze_encoder_bn(self, frozen: bool = True) -> DepthModel:
        """Keep the encoder's BatchNorm statistics (ImageNet's) fixed while its weights may still train.

        Fine-tuning with small batches (4 frames of one scene) would otherwise replace well-estimated
        ImageNet statistics by noisy per-batch ones: the usual practice for detection / depth fine-tuning.
        """
        self.encoder_bn_frozen = frozen
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> DepthModel:
        """Set train/eval mode; a frozen encoder stays in eval mode so BatchNorm stats don't move."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        elif self.encoder_bn_frozen:
            for m in self.encoder.modules():
                if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                    m.eval()
        return self

    def extra_repr(self) -> str:
        """Registry name, stride and head, shown by print(model)."""
        return (f"arch={self.arch!r}, output_stride={self.output_stride}, "
                f"input_multiple={self.input_multiple}, head={self.head}")
