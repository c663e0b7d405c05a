"""The model registry: create_model(name, **kwargs) builds any registered architecture by name."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..core.errors import ConfigError
from .base import DepthModel
from .densedepth import densedepth
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
