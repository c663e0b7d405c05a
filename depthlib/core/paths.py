"""Project-root path resolution: notebooks run by papermill see the caller's cwd, so never trust it."""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("pyproject.toml", "depthlib")


def project_root() -> Path:
    """Return the repository root: $DEPTH_WORKBOOK_ROOT, else the folder above this package."""
    env = os.environ.get("DEPTH_WORKBOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]  # depthlib/core/paths.py -> the folder holding depthlib/
    if all((here / m).exists() for m in _MARKERS):
        return here
    # Installed non-editable: fall back to the cwd, which is then the caller's choice.
    return Path.cwd().resolve()


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a relative path against the project root; absolute paths pass through."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p)


def display_path(path: str | os.PathLike[str]) -> str:
    """An absolute `path` inside the project as relative to its root (portable in reports); anything else as given."""
    if not os.path.isabs(path):
        return os.fspath(path)
    p = Path(path).resolve()
    try:
        return p.relative_to(project_root()).as_posix()
    except ValueError:
        return str(p)
