"""Speed switches of fit: autocast precision, GradScaler, channels_last, torch.compile."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from typing import ContextManager

import torch
from torch import nn

from ..core.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse unknown names and bf16 on a GPU without it, naming the setting to change."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"TrainConfig.precision={precision!r} is not one of {sorted(PRECISIONS)}."
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"{torch.cuda.get_device_name(device)} has no bfloat16 support. "
            "Fix: set TrainConfig.precision='fp16' (uses a GradScaler) or 'fp32'."
        )


def autocast(precision: str, device: torch.device) -> ContextManager[object]:
    """The autocast context for this precision (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store conv weights NHWC; inputs are converted per batch in fit."""
    return model.to(memory_format=torch.channels_last)


def _cxx_compiler() -> str | None:
    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def check_compile(backend: str, device: torch.device) -> None:
    """Fail early, with the fix, when torch.compile's backend cannot build kernels here."""
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        raise ConfigError(
            f"TrainConfig.compile_backend={backend!r} is unknown; "
            f"known: {sorted(torch.compiler.list_backends())}."
        )
    if backend != "inductor":
        return
    if device.type == "cpu" and _cxx_compiler() is None:
        raise ConfigError(
            "torch.compile (inductor) on CPU needs a C++ compiler and none was found "
            "(looked for $CXX, g++, c++, clang++). Fix: install g++ (apt-get install g++), "
            "or set TrainConfig.compile=False."
        )
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise ConfigError(
            "torch.compile (inductor) on CUDA needs the 'triton' package, which is not installed. "
            "Fix: pip install triton (matching your torch build), or set TrainConfig.compile=False."
        )


def compile_model(model: nn.Module, backend: str, device: torch.device) -> nn.Module:
    """torch.compile(model) after checking the toolchain; the original module keeps the weights."""
    check_compile(backend, device)
    return torch.compile(model, backend=backend)  # type: ignore[return-value]
