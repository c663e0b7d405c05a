"""`python -m depthlib ...` (and the `depthlib` console script): see depthlib.cli."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
