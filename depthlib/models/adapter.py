"""Run a model on full frames the way it was trained: crop the border, resize to its input size.

A model trained at, say, 192x256 on border-cropped frames sees a different scale when fed whole
640x480 frames. `InputAdapter` wraps it so that `predict`, `evaluate`, the explorer and the CLI feed
every frame exactly as training did and get the prediction back on the frame's own pixel grid
(at half resolution, `output_stride` = 2 of the frame), border pixels filled from their neighbours.

The border crop belongs to one frame size: NYU's white border exists only in its 640x480 frames (the
training transform refuses the "nyu" crop on any other size). So the crop is replayed only on frames of
exactly `border_frame` (H, W); any other image (a phone photo, a resized frame) has no such border and
is resized whole. Building the adapter from a checkpoint is depthlib.inference's job.

A checkpoint trained with camera_space="canonical" (depthlib.data.camera_space) predicts the depth a camera of
`canonical_fx` pixels at the input size would see; `focal_scale` gives the factor f / canonical_fx that turns it into
metres for an image whose focal length at the input size is f, after this adapter's own crop and resize
(depthlib.models.predict applies it when given the images' focal lengths).

The adapter traces with torch.export for any H, W (depthlib.inference.export): there the frame-size test is symbolic, so
both windows go into the graph under torch.cond and the input's size picks one at run time, as it does here.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def place(raw: Tensor, frame: Sequence[int], border: Sequence[int], stride: int) -> Tensor:
    """raw float[B,C,h,w] predicted for the window inside `border` (top, bottom, left, right) of a frame (H, W)
    -> float[B,C,ceil(H/stride),ceil(W/stride)] on the frame's output grid, bilinear; pixels centred outside the
    window repeat its edge.

    Output pixel i is centred at frame coordinate stride * (i + 0.5). The window is placed at its exact span:
    rounding the crop to whole output pixels would misplace NYU's 7-column left border (round(7 / 2) = 4
    output pixels, 8 frame columns) and stretch 625 columns over 624.
    """
    (h, w), (t, b, l, r) = frame, border
    # ceil(h / stride) with non-negative operands: ONNX's integer division truncates, so -(-h // stride) came out short
    oh, ow = (h + stride - 1) // stride, (w + stride - 1) // stride

    def axis(n: int, size: int, lo: int, hi: int) -> Tensor:  # grid_sample's [-1, 1] spans the window's edges
        centre = stride * (torch.arange(n, dtype=torch.float64) + 0.5)
        return (2 * (centre - lo) / (size - lo - hi) - 1).to(raw.device, raw.dtype)

    ys, xs = axis(oh, h, t, b), axis(ow, w, l, r)
    grid = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1).expand(raw.shape[0], oh, ow, 2)
    return F.grid_sample(raw, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InputAdapter(nn.Module):
    """Wrap `model`: x[B,3,H,W] -> crop (top, bottom, left, right) -> resize to `input_size` -> model -> raw on HxW/stride,
    placed over the crop's span (see `place`).

    The crop applies to frames of size `border_frame` (H, W) only; None applies it to every size. canonical_fx: the
    focal length in pixels at `input_size` of a camera_space="canonical" checkpoint (None: trained on metres).
    """

    def __init__(self, model: nn.Module, *, input_size: Sequence[int] | None, border: Sequence[int] = (0, 0, 0, 0),
                 border_frame: Sequence[int] | None = None, canonical_fx: float | None = None) -> None:
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
        self.canonical_fx = None if canonical_fx is None else float(canonical_fx)

    def forward(self, x: Tensor, mirror: bool = False) -> Tensor:
        """RGB float[B,3,H,W] in [0,1] -> raw float[B,1,ceil(H/s),ceil(W/s)] of the wrapped model's head.

        mirror=True: the prediction of the mirrored window, mirrored back (flip averaging's second pass). The
        window is mirrored after the crop: NYU's border is uneven (7 columns left, 8 right), so mirroring the
        whole frame first would show the model another window, a white border column in view.
        """
        h, w = x.shape[-2:]
        framed = self.border_frame is None or (h == self.border_frame[0]) & (w == self.border_frame[1])
        if isinstance(framed, bool):  # a size known here (not traced with a dynamic H, W)
            return self._window(x, self.border if framed else (0, 0, 0, 0), mirror)
        return torch.cond(framed, partial(self._window, border=self.border, mirror=mirror),
                          partial(self._window, border=(0, 0, 0, 0), mirror=mirror), (x,))

    def focal_scale(self, x: Tensor, fx: Tensor) -> Tensor:
        """Images float[B,3,H,W] and their focal lengths fx float[B] (or [1]) in pixels of W -> float[B,1,1,1]: f / canonical_fx,
        f being fx after this adapter's crop and resize (what the canonical depth is multiplied by to give metres)."""
        h, w = x.shape[-2:]
        framed = self.border_frame is None or (h == self.border_frame[0]) & (w == self.border_frame[1])
        if isinstance(framed, bool):
            return self._scale(x, fx, self.border if framed else (0, 0, 0, 0))
        return torch.cond(framed, partial(self._scale, border=self.border),
                          partial(self._scale, border=(0, 0, 0, 0)), (x, fx))

    def _scale(self, x: Tensor, fx: Tensor, border: Sequence[int]) -> Tensor:
        """focal_scale with the crop `border` decided: the window is W - left - right wide, resized to input_size's W."""
        assert self.canonical_fx is not None, "a model trained on metres has no canonical focal length"
        if self.input_size is None:  # no resize: the focal length in pixels is the image's
            return (fx / self.canonical_fx).view(-1, 1, 1, 1)
        _, _, l, r = border
        return (fx * (self.input_size[1] / self.canonical_fx) / (x.shape[-1] - l - r)).view(-1, 1, 1, 1)

    def _window(self, x: Tensor, border: Sequence[int], mirror: bool) -> Tensor:
        """forward with the crop `border` (top, bottom, left, right) decided."""
        h, w = x.shape[-2:]
        t, b, l, r = border
        inner = x[..., t : h - b, l : w - r]
        if self.input_size is not None:  # at the window's own size this resize is exact (weights 1 and 0): no size test to trace
            inner = F.interpolate(inner, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
        raw = self.model(inner.flip(-1)).flip(-1) if mirror else self.model(inner)
        return place(raw, (h, w), (t, b, l, r), self.output_stride)

    def extra_repr(self) -> str:
        camera = "" if self.canonical_fx is None else f", canonical_fx={self.canonical_fx:.4f}"
        return f"input_size={self.input_size}, border={self.border}, border_frame={self.border_frame}{camera}"

    def freeze_encoder(self, frozen: bool = True) -> Any:
        return self.model.freeze_encoder(frozen)
