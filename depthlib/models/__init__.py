"""Model registry: create_model(name, **kwargs) builds any registered architecture by name.

Every model is a DepthModel (see base.py): forward(x float[B,3,H,W] in [0,1]) -> raw
float[B,1,H/s,W/s] with s = model.output_stride; `model.head` converts raw outputs to metres;
`model.arch` + `model.config` rebuild it through create_model(model.arch, **model.config).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import ConfigError
from .base import DepthModel
from .densedepth import densedepth
from .heads import HEADS, DepthHead, make_head
from .unet import unet

MODELS: dict[str, Callable[..., DepthModel]] = {
    "densedepth": densedepth,
    "unet": unet,
}


def list_models() -> list[str]:
    """Names accepted by create_model, sorted."""
    return sorted(MODELS)


def create_model(name: str, **kwargs: Any) -> DepthModel:
    """Build the registered model `name` with its keyword arguments (see each builder's signature)."""
    if name not in MODELS:
        raise ConfigError(f"Unknown model {name!r}; registered models: {list_models()}. "
                          "Fix ModelConfig.name.")
    builder = MODELS[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"Model {name!r} has no setting(s) {unknown}; known: {sorted(params)}. "
                          "Fix ModelConfig.kwargs.")
    return builder(**kwargs)


__all__ = ["DepthHead", "DepthModel", "HEADS", "MODELS", "create_model", "list_models", "make_head"]
