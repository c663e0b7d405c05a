"""Hooks into fit: a Callback base class, the TrainState it sees, and the TensorBoard logger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import TrainConfig


@dataclass
class TrainState:
    """What fit shares with callbacks; read it, don't replace its objects."""

    cfg: TrainConfig
    model: nn.Module              # the unwrapped model (no DDP / compile wrapper)
    optimizer: torch.optim.Optimizer
    out_dir: Path
    is_main: bool                 # rank 0: the process that logs and writes files
    epoch: int = 0                # 0-based epoch being trained
    step: int = 0                 # optimiser steps done so far (continues across resume)
    loss: float = float("nan")    # mean loss of the last optimiser step (over ranks)
    lr: float = 0.0
    data_wait_s: float = 0.0      # seconds this fit call has waited for training batches (loader stalls)
    metrics: dict[str, float] = field(default_factory=dict)   # last epoch's row
    preview: dict[str, torch.Tensor] = field(default_factory=dict)  # image/depth/valid/pred, first val batch


class Callback:
    """Override any of these; fit calls them on every rank (check state.is_main to write)."""

    def on_train_start(self, state: TrainState) -> None:
        """After setup and resume, before the first step."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimiser step (state.step already counts it)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After validation and the end-of-epoch checkpoint (state.metrics holds the row)."""

    def on_train_end(self, state: TrainState) -> None:
        """Once, when fit returns normally."""

    def teardown(self, state: TrainState) -> None:
        """Once, however fit ends (after on_train_end, or when training raises): release files and processes."""


class TensorBoardLogger(Callback):
    """Scalars (train/loss, train/lr every log_every steps; epoch metrics) and prediction images.

    Writes out_dir/tensorboard on rank 0; view with `tensorboard --logdir <out_dir>/tensorboard`.
    """

    def __init__(self, max_images: int = 4) -> None:
        self.max_images = max_images
        self.writer: Any = None

    def on_train_start(self, state: TrainState) -> None:
        """Open the event file (appends after a resume: TensorBoard orders events by step)."""
        if state.is_main:
            from torch.utils.tensorboard import SummaryWriter  # late: pulls in tensorboard

            self.writer = SummaryWriter(log_dir=str(state.out_dir / "tensorboard"))

    def on_step_end(self, state: TrainState) -> None:
        """Training loss and learning rate."""
        if self.writer is not None and state.step % max(1, state.cfg.log_every) == 0:
            self.writer.add_scalar("train/loss", state.loss, state.step)
            self.writer.add_scalar("train/lr", state.lr, state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        """Epoch metrics and an image strip: input | ground truth | prediction (same colour scale)."""
        if self.writer is None:
            return
        for k, v in state.metrics.items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)):  # not the row's "loss_name"
                self.writer.add_scalar(f"epoch/{k}", v, state.step)
        if state.preview:
            self.writer.add_images("val/input|gt|pred", preview_strip(state.preview, self.max_images,
                                                                       state.model), state.step,
                                   dataformats="NHWC")
        self.writer.flush()

    def teardown(self, state: TrainState) -> None:
        """Close the event file (flushing it), also when training raised."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def preview_strip(preview: dict[str, torch.Tensor], n: int, model: nn.Module) -> np.ndarray:
    """uint8 [N,h,3w,3]: RGB input, colourised GT and prediction (metres, shared range) per row."""
    from ..figures.viz import colorize  # late: matplotlib

    head = model.head
    img = torch.nn.functional.interpolate(preview["image"][:n].float(), size=preview["depth"].shape[-2:],
                                          mode="area")
    rows = []
    for i in range(img.shape[0]):
        gt, valid, pred = preview["depth"][i], preview["valid"][i], preview["pred"][i]
        rgb = (img[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lo, hi = head.min_depth, head.max_depth
        rows.append(np.concatenate([rgb, colorize(gt, lo, hi, valid=valid), colorize(pred, lo, hi)], axis=1))
    return np.stack(rows)
