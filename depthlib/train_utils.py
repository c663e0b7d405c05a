"""Pieces of the training loop that are pure or stateless: optimiser, LR schedule, targets at the
model's resolution, on-device augmentation, seeding and RNG snapshots, and the History record."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_write_text
from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .metrics import SUM_KEYS, metric_sums
from .precision import autocast

SCHEDULES = ("none", "cosine", "step", "onecycle")


def check_config(cfg: TrainConfig, n_train: int) -> None:
    """Refuse settings fit cannot run with, before any work is done."""
    from .losses import LOSSES  # late: keeps this module light for callers of its small helpers

    if cfg.loss not in LOSSES:
        raise ConfigError(f"TrainConfig.loss={cfg.loss!r} is unknown; known: {sorted(LOSSES)}.")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs < 0:
        raise ConfigError("TrainConfig needs batch_size >= 1, grad_accum >= 1 and epochs >= 0.")
    if cfg.select not in ("val_loss", "last"):
        raise ConfigError(f"TrainConfig.select={cfg.select!r}: use 'val_loss' (lowest validation loss) or 'last' "
                          "(a fixed schedule: best.pt is the final epoch).")
    if n_train == 0:
        raise ConfigError("the training set is empty. Fix: check the data source, split and indices.")


def init_weights(model: nn.Module, path: Path, device: torch.device) -> int:
    """Fine-tuning start: load only the weights of checkpoint `path` into `model` (strict) -> its step."""
    from .checkpoint import load_checkpoint

    src = load_checkpoint(path, map_location=device)
    arch = getattr(model, "arch", None)
    if src["arch"] != arch:
        raise CheckpointError(f"{path}: holds a {src['arch']!r} model but fit got {arch!r}. "
                              f"Fix: build the model with create_model({src['arch']!r}, **model_config).")
    model.load_state_dict(src["model"], strict=True)
    return int(src["step"])


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the parameters that require grad (a frozen encoder is left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters. Fix: set freeze_encoder=False.")
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
    )


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """LR multiplier after `step` optimiser steps of `total`: linear warmup, then the schedule.

    One pure function of the step (through LambdaLR) keeps resume exact and lets warmup combine
    with every schedule; torch's SequentialLR chains are harder to restore across versions.
    "onecycle" warms up over warmup_steps (30 % of the run when 0) then cosine-anneals, as
    OneCycleLR does, but leaves Adam's betas alone.
    """
    if cfg.scheduler not in SCHEDULES:
        raise ConfigError(f"TrainConfig.scheduler={cfg.scheduler!r} is not one of {SCHEDULES}.")
    warm = cfg.warmup_steps
    if cfg.scheduler == "onecycle" and warm == 0:
        warm = max(1, int(0.3 * total))
    if step < warm:
        return (step + 1) / warm
    if cfg.scheduler == "none":
        return 1.0
    if cfg.scheduler == "step":
        size = cfg.lr_step_size or max(1, total // 3)
        return cfg.lr_gamma ** ((step - warm) // size)
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def make_scheduler(opt: torch.optim.Optimizer, total: int, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimiser step over `total` steps."""
    lr_factor(0, total, cfg)  # validates the schedule name before training starts
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg))


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


def gpu_augment(batch: dict[str, Any], flip_p: float, swap_p: float) -> dict[str, Any]:
    """Per-sample horizontal flip (image, depth, valid) and RGB permutation (image) on the device.

    The random draws come from the CPU generator (B numbers per step), so seeding and resume
    cover them; only the masks travel to the device.
    """
    img = batch["image"]
    B = img.shape[0]
    flip = (torch.rand(B) < flip_p).to(img.device).view(B, 1, 1, 1)
    out = dict(batch)
    for k in ("image", "depth", "valid"):
        out[k] = torch.where(flip, batch[k].flip(-1), batch[k])
    swap = torch.rand(B) < swap_p
    perm = torch.argsort(torch.rand(B, 3), dim=1)
    perm = torch.where(swap.view(B, 1), perm, torch.arange(3).expand(B, 3)).to(img.device)
    idx = perm.view(B, 3, 1, 1).expand_as(out["image"])
    out["image"] = torch.gather(out["image"], 1, idx)
    return out


def batch_to(batch: dict[str, Any], device: torch.device, *, non_blocking: bool,
             channels_last: bool) -> dict[str, Any]:
    """Move a collated batch's tensors to `device` (async from pinned memory when non_blocking)."""
    out = {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}
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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def kernel_mode(deterministic: bool) -> Iterator[None]:
    """Deterministic kernels (or cudnn autotuning) for the duration of fit; restores the globals.

    warn_only=True: some CUDA backward kernels (bilinear upsampling) have no deterministic
    version; torch then warns instead of stopping the run.
    """
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = torch.cuda.is_available()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and builtins (weights_only-safe)."""
    np_state = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_num, np_state[2:])],
        "python": _listify(random.getstate()),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Inverse of rng_state (CUDA states only when the GPU count matches)."""
    torch.set_rng_state(st["torch"])
    name, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    v, internal, gauss = st["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def _num(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def _listify(x: Any) -> Any:
    return [_listify(i) for i in x] if isinstance(x, tuple) else x


@dataclass
class History:
    """Per-epoch rows (epoch, step, lr, train_loss, val_loss, val_abs_rel, val_delta1, seconds)
    and logged steps (step, loss, lr); `history["val_loss"]` gives a column."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = -1
    stopped_early: str = ""   # why the run ended before cfg.epochs ("max_steps"), if it did

    def __getitem__(self, key: str) -> list[float]:
        return [row.get(key, math.nan) for row in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins, as stored in history.json and in the checkpoint's extra."""
        best = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return {"epochs": self.epochs, "steps": self.steps, "best_val_loss": best,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        """Inverse of to_dict."""
        d = dict(d)
        d["best_val_loss"] = math.inf if d["best_val_loss"] is None else d["best_val_loss"]
        return cls(**d)

    def save(self, out_dir: Path) -> None:
        """Write out_dir/history.json (everything) and history.csv (epoch rows), atomically."""
        atomic_write_text(out_dir / "history.json", json.dumps(self.to_dict(), indent=1))
        cols: list[str] = []
        for row in self.epochs:
            cols += [k for k in row if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(self.epochs)
        atomic_write_text(out_dir / "history.csv", buf.getvalue())


LossFn = Callable[..., torch.Tensor]
