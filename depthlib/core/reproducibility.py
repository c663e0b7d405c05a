"""Reproducibility: seeding, deterministic kernels, and RNG snapshots that a checkpoint can carry."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator

import numpy as np
import torch


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
