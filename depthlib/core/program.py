"""The name a user typed to start depthlib's command line, for usage lines and hints."""

from __future__ import annotations

import sys


def command_name() -> str:
    """"python -m depthlib" when the interpreter was started with -m (python -m depthlib, or an old module path such
    as python -m depthlib.pipeline), else "depthlib": the console script (or a caller of main(), e.g. a test)."""
    for arg in getattr(sys, "orig_argv", [])[1:]:   # the interpreter's own options come before the script or -m
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            return "python -m depthlib"
        if not arg.startswith("-"):
            break
    return "depthlib"
