"""What the network predicts, and the one pair of functions that converts it to and from metres.

Every model carries a head (`model.head`). Losses convert the ground truth with
`head.to_target(depth)` and compare it to the raw output; `predict` and the metrics turn raw
outputs into metres with `head.to_depth(raw)`. `head.target_range` is the (lo, hi) interval
targets live in, which the DenseDepth loss uses as the SSIM value range and as the L1 scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..core.errors import ConfigError


@dataclass(frozen=True)
class DepthHead:
    """Base class: depth in metres is clamped to [min_depth, max_depth] before conversion."""

    min_depth: float = 0.1
    max_depth: float = 10.0
    name = "base"

    def __post_init__(self) -> None:
        if not (0.0 < self.min_depth < self.max_depth):
            raise ConfigError(
                f"{type(self).__name__}: need 0 < min_depth < max_depth, got "
                f"min_depth={self.min_depth}, max_depth={self.max_depth}. Fix the model kwargs."
            )

    @property
    def target_range(self) -> tuple[float, float]:
        """(lo, hi) of every value to_target can return."""
        raise NotImplementedError

    def to_target(self, depth: Tensor) -> Tensor:
        """Metres float[B,1,H,W] -> training target of the same shape (invalid pixels: any value)."""
        raise NotImplementedError

    def to_depth(self, raw: Tensor, *, clamp: bool = True) -> Tensor:
        """Raw network output float[B,1,h,w] -> metres of the same shape.

        clamp=True (default) clips to [min_depth, max_depth] as DenseDepth evaluates, which
        zeroes the gradient outside that range; clamp=False keeps the unclipped conversion.
        """
        raise NotImplementedError

    def to_log_depth(self, raw: Tensor) -> Tensor:
        """Raw output float[B,1,h,w] -> natural log of metres, unclamped (depths <= 0 floored at 1e-6 m)."""
        return self.to_depth(raw, clamp=False).clamp_min(1e-6).log()

    def config(self) -> dict[str, float | str]:
        """Plain dict that rebuilds this head through make_head(**config)."""
        return {"head": self.name, "min_depth": self.min_depth, "max_depth": self.max_depth}


@dataclass(frozen=True)
class InverseHead(DepthHead):
    """DenseDepth's target: max_depth / depth, in [1, max_depth / min_depth].

    DenseDepth (cm, maxDepth=1000, range [10, 1000]) is the same as metres with max_depth=10,
    min_depth=0.1: target = 10 / depth in [1, 100]. to_depth clamps the raw output to the target
    range before dividing, so it is the exact inverse of to_target there; a raw value <= 0 maps to
    max_depth (DenseDepth's clip(maxDepth / raw) would give minDepth for raw < 0, a jump).
    """

    name = "inverse"

    @property
    def target_range(self) -> tuple[float, float]:
        """(1, max_depth / min_depth)."""
        return 1.0, self.max_depth / self.min_depth

    def to_target(self, depth: Tensor) -> Tensor:
        """Metres -> max_depth / clamp(depth), float[B,1,H,W] in [1, max/min]."""
        return self.max_depth / depth.clamp(self.min_depth, self.max_depth)

    def to_depth(self, raw: Tensor, *, clamp: bool = True) -> Tensor:
        """Inverse-depth output -> metres, float[B,1,h,w]."""
        lo, hi = self.target_range
        if clamp:
            return self.max_depth / raw.clamp(lo, hi)
        return self.max_depth / raw


@dataclass(frozen=True)
class LogHead(DepthHead):
    """Natural log of depth in metres, in [log min_depth, log max_depth]."""

    name = "log"

    @property
    def target_range(self) -> tuple[float, float]:
        """(log min_depth, log max_depth)."""
        return math.log(self.min_depth), math.log(self.max_depth)

    def to_target(self, depth: Tensor) -> Tensor:
        """Metres -> log(clamp(depth)), float[B,1,H,W]."""
        return depth.clamp(self.min_depth, self.max_depth).log()

    def to_depth(self, raw: Tensor, *, clamp: bool = True) -> Tensor:
        """Log-depth output -> metres, float[B,1,h,w]."""
        if clamp:
            lo, hi = self.target_range
            return raw.clamp(lo, hi).exp()
        return raw.exp()

    def to_log_depth(self, raw: Tensor) -> Tensor:
        """The raw output is log depth already: no exp/log round trip that overflows for large raw values."""
        return raw


@dataclass(frozen=True)
class LinearHead(DepthHead):
    """Depth in metres directly, in [min_depth, max_depth]."""

    name = "linear"

    @property
    def target_range(self) -> tuple[float, float]:
        """(min_depth, max_depth)."""
        return self.min_depth, self.max_depth

    def to_target(self, depth: Tensor) -> Tensor:
        """Metres -> clamp(depth), float[B,1,H,W]."""
        return depth.clamp(self.min_depth, self.max_depth)

    def to_depth(self, raw: Tensor, *, clamp: bool = True) -> Tensor:
        """Metric output -> metres, float[B,1,h,w]."""
        return raw.clamp(self.min_depth, self.max_depth) if clamp else raw


HEADS: dict[str, Callable[..., DepthHead]] = {
    InverseHead.name: InverseHead,
    LogHead.name: LogHead,
    LinearHead.name: LinearHead,
}


def make_head(head: str = "inverse", *, min_depth: float = 0.1, max_depth: float = 10.0) -> DepthHead:
    """Build a registered head by name ("inverse", "log", "linear")."""
    if head not in HEADS:
        raise ConfigError(f"Unknown depth head {head!r}; known heads: {sorted(HEADS)}. Fix the "
                          "model's `head=` keyword.")
    return HEADS[head](min_depth=float(min_depth), max_depth=float(max_depth))

