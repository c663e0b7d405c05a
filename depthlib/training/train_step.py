"""One training / validation step's pieces: batches to the device, targets at the model's resolution, the
forward pass and validation sums. (On-device flip and swap: depthlib.data.transforms.BatchFlipSwap.)"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ConfigError
from ..evaluation.metrics import SUM_KEYS, metric_sums
from .precision import autocast


def targets_at(depth: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """depth float[B,1,H,W], valid bool[B,1,H,W] -> both at size (h, w), H/h = W/w integral.

    An output pixel is valid only when every source pixel under it is valid (a min-pool), so a
    Kinect hole never leaks into a target; its depth is the mean of those source pixels.
    Invalid output pixels get depth 0.
    """
    H, W = depth.shape[-2:]
    h, w = size
    if (H, W) == (h, w):
        return depth, valid
    if H % h or W % w or H // h != W // w:
        raise ConfigError(
            f"model output {h}x{w} does not divide the input {H}x{W} evenly. "
            "Fix: use an image_size that is a multiple of the model's input_multiple (32)."
        )
    k = H // h
    v = valid.to(depth.dtype)
    frac = F.avg_pool2d(v, k)
    d = F.avg_pool2d(depth * v, k) / frac.clamp_min(1e-12)
    v_out = frac >= 1.0 - 1e-6
    return torch.where(v_out, d, torch.zeros_like(d)), v_out


def batch_to(batch: dict[str, Any], device: torch.device, *, non_blocking: bool,
             channels_last: bool) -> dict[str, Any]:
    """Move a collated batch's tensors to `device` (async from pinned memory when non_blocking).

    The focal lengths ("fx", float64) stay on the host: the loader has already scaled the targets by them, and
    float64 does not exist on every device (MPS)."""
    out = {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) and k != "fx" else v for k, v in batch.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def forward_with_targets(model: nn.Module, b: dict[str, Any], precision: str,
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw output float32 [B,1,h,w] (autocast forward) and depth / valid [B,1,h,w] at its size."""
    with autocast(precision, device):
        raw = model(b["image"])
    depth, valid = targets_at(b["depth"].float(), b["valid"].bool(), (raw.shape[-2], raw.shape[-1]))
    return raw.float(), depth, valid


@torch.no_grad()
def validation_sums(model: nn.Module, loader: Any, loss_fn: Callable[..., torch.Tensor], *, precision: str,
                    device: torch.device, channels_last: bool, non_blocking: bool,
                    preview: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """float64 [2 + len(SUM_KEYS)]: (loss x batch size summed, images, metric sums in metres),
    and the first batch's image / depth / valid / pred (<= 4, on CPU) when `preview`."""
    sums = torch.zeros(2 + len(SUM_KEYS), dtype=torch.float64, device=device)
    shown: dict[str, torch.Tensor] = {}
    for batch in loader:
        b = batch_to(batch, device, non_blocking=non_blocking, channels_last=channels_last)
        raw, depth, valid = forward_with_targets(model, b, precision, device)
        loss = loss_fn(pred=raw, target=depth, valid=valid, head=model.head)
        pred = model.head.to_depth(raw)
        sums[0] += loss.double() * len(raw)
        sums[1] += len(raw)
        sums[2:] += metric_sums(pred=pred, target=depth, valid=valid).sum(0)
        if preview and not shown:
            shown = {"image": b["image"][:4].float().cpu(), "depth": depth[:4].cpu(),
                     "valid": valid[:4].cpu(), "pred": pred[:4].cpu()}
    return sums, shown
