"""Named readers: every NYU form a user may download is one entry, opened by name."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from ..core.errors import ConfigError
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


def source_options(name: str) -> list[str]:
    """The options reader `name` takes besides its path, in its own order."""
    if name not in _SOURCES:
        raise ConfigError(f"unknown data source {name!r}; known: {list_sources()}.")
    params = list(inspect.signature(_SOURCES[name]).parameters.values())[1:]   # [0] is the path
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def open_source(name: str, path: str, **kwargs: Any) -> FrameSource:
    """Open the reader `name` on `path` (resolved from the project root); an option it lacks is refused by name."""
    from ..core.paths import resolve

    known = source_options(name)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        near = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
        fixes = [f"{u} -> {near[u][0]}" for u in unknown if near[u]]
        fix = (f"correct the name ({', '.join(fixes)})" if fixes else f"drop {', '.join(unknown)}")
        if "split" in unknown:
            fix = "drop split: this reader has no splits and reads every frame at the path"
        raise ConfigError(f"data source {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                          f"{', '.join(known) or 'none'}. Fix: {fix}.")
    return _SOURCES[name](str(resolve(path)), **kwargs)
