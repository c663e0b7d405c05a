"""Exceptions that name the file at fault and the fix."""

from __future__ import annotations

import os


class DepthlibError(Exception):
    """Base class of every error depthlib raises on purpose."""


class DataError(DepthlibError, ValueError):
    """Bad or missing input data. The message names the file and what to do."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, fix: str = "") -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        msg = f"{where}{problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class CheckpointError(DepthlibError, ValueError):
    """A checkpoint file that is missing, foreign, truncated or does not match the model."""


class ConfigError(DepthlibError, ValueError):
    """An unknown or ill-typed setting."""
