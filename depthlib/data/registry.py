"""Named readers: every NYU form a user may download is one entry, opened by name."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError
from .frame import FrameSource

_SOURCES: dict[str, Callable[..., FrameSource]] = {}


def register_source(name: str) -> Callable[[Callable[..., FrameSource]], Callable[..., FrameSource]]:
    """Class/function decorator adding a reader under `name`."""

    def deco(fn: Callable[..., FrameSource]) -> Callable[..., FrameSource]:
        if name in _SOURCES:
            raise ConfigError(f"source {name!r} registered twice")
        _SOURCES[name] = fn
        return fn

    return deco


def list_sources() -> list[str]:
    """Names accepted by open_source, sorted."""
    return sorted(_SOURCES)


def open_source(name: str, path: str, **kwargs: Any) -> FrameSource:
    """Open the reader `name` on `path` (resolved from the project root)."""
    from ..paths import resolve

    if name not in _SOURCES:
        raise ConfigError(f"unknown data source {name!r}; known: {list_sources()}.")
    return _SOURCES[name](str(resolve(path)), **kwargs)
