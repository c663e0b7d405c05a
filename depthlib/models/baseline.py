"""The mean-depth baseline: a model that ignores its image and predicts the training frames' mean depth map.

It is a DepthModel in all but training (arch, config, output_stride, input_multiple, head), so predict(),
evaluation and the figures run it like any network; depthlib.notebook.workbook.mean_depth_baseline builds it
from a dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import make_head


class MeanDepthBaseline(nn.Module):
    """The trivial baseline: predicts the per-pixel mean depth of the training frames, whatever the image."""

    def __init__(self, mean_depth: Tensor, *, min_depth: float = 0.1, max_depth: float = 10.0) -> None:
        super().__init__()
        self.head = make_head("linear", min_depth=min_depth, max_depth=max_depth)
        self.register_buffer("mean_target", self.head.to_target(mean_depth.reshape(1, 1, *mean_depth.shape[-2:])))
        self.arch, self.config, self.output_stride, self.input_multiple = "mean_depth", {}, 2, 1
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives predict() a device and dtype

    def forward(self, x: Tensor) -> Tensor:
        """RGB float[B,3,H,W] -> the mean map at [B,1,H/2,W/2] (the image is ignored)."""
        size = (-(-x.shape[-2] // 2), -(-x.shape[-1] // 2))
        return F.interpolate(self.mean_target, size=size, mode="bilinear", align_corners=False).expand(x.shape[0], -1, -1, -1)
