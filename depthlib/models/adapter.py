"""Run a model on full frames the way it was trained: crop the border, resize to its input size.

A model trained at, say, 192x256 on border-cropped frames sees a different scale when fed whole
640x480 frames. `InputAdapter` wraps it so that `predict`, `evaluate`, the explorer and the CLI feed
every frame exactly as training did and get the prediction back on the frame's own pixel grid
(at half resolution, `output_stride` = 2 of the frame), border pixels filled from their neighbours.

The border crop belongs to one frame size: NYU's white border exists only in its 640x480 frames (the
training transform refuses the "nyu" crop on any other size). So the crop is replayed only on frames of
exactly `border_frame` (H, W); any other image (a phone photo, a resized frame) has no such border and
is resized whole. Building the adapter from a checkpoint is depthlib.inference's job.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class InputAdapter(nn.Module):
    """Wrap `model`: x[B,3,H,W] -> crop (top, bottom, left, right) -> resize to `input_size` -> model -> raw on HxW/stride.

    The crop applies to frames of size `border_frame` (H, W) only; None applies it to every size.
    """

    def __init__(self, model: nn.Module, *, input_size: Sequence[int] | None, border: Sequence[int] = (0, 0, 0, 0),
                 border_frame: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.border = tuple(int(b) for b in border)
        self.border_frame = None if border_frame is None else (int(border_frame[0]), int(border_frame[1]))
        self.head = model.head
        self.arch = model.arch
        self.config = model.config
        self.output_stride = model.output_stride
        self.input_multiple = 1 if self.input_size is not None else model.input_multiple

    def forward(self, x: Tensor) -> Tensor:
        """RGB float[B,3,H,W] in [0,1] -> raw float[B,1,ceil(H/s),ceil(W/s)] of the wrapped model's head."""
        h, w = x.shape[-2:]
        framed = self.border_frame is None or (h, w) == self.border_frame
        t, b, l, r = self.border if framed else (0, 0, 0, 0)
        inner = x[..., t : h - b, l : w - r]
        size = self.input_size or inner.shape[-2:]
        if tuple(inner.shape[-2:]) != tuple(size):
            inner = F.interpolate(inner, size=size, mode="bilinear", antialias=True, align_corners=False)
        raw = self.model(inner)
        s = self.output_stride
        oh, ow = -(-h // s), -(-w // s)
        # Place the prediction over the cropped region of the output grid, then replicate into the border.
        ct, cb, cl, cr = (round(t / s), round(b / s), round(l / s), round(r / s))
        raw = F.interpolate(raw, size=(oh - ct - cb, ow - cl - cr), mode="bilinear", align_corners=False)
        return F.pad(raw, (cl, cr, ct, cb), mode="replicate") if any((ct, cb, cl, cr)) else raw

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, border={self.border}, border_frame={self.border_frame}"

    def freeze_encoder(self, frozen: bool = True) -> Any:
        return self.model.freeze_encoder(frozen)
