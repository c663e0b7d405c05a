"""A tiny random-init U-Net checkpoint whose depth varies across the image (for CLI/export/widget tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlib.models import create_model
from depthlib.models.checkpoint import save_checkpoint


def tiny_checkpoint(path: Path, *, seed: int = 0, data: dict[str, Any] | None = None) -> Path:
    """Save a width-4, depth-2 U-Net (input multiple 4); `data` is recorded as train_config.data."""
    torch.manual_seed(seed)
    model = create_model("unet", width=4, depth=2)
    # Random init gives raw ~0, which the inverse head clamps to max_depth everywhere; a gain and a
    # bias on the last conv spread the raw output over the head's range so depth varies per pixel.
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(500.0)
        last.bias.fill_(4.0)
    extra = {"train_config": {"data": data}} if data else None
    return save_checkpoint(path, model=model, extra=extra)
