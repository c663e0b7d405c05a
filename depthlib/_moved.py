"""The modules that moved into sub-packages, still importable under their old names, with a DeprecationWarning.

`import depthlib.train` (and `from depthlib.train import fit`, `from depthlib import train`) gives the module
object of its new home, depthlib.training.train, itself: one copy, so `depthlib.train.fit is
depthlib.training.train.fit` and a monkeypatch through either name reaches both. `python -m depthlib.pipeline`
and `python -m depthlib.train_cli` still run (runpy asks the finder for the code), warning on stderr that the
command is now `python -m depthlib pipeline` / `python -m depthlib train`.

The finder is installed by depthlib/__init__.py. This module imports nothing of depthlib: the new homes are
imported by name, only when an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType
from typing import Sequence

# old module -> its new home. depthlib.inference (the old module) is not here: it is now the package
# depthlib.inference, which re-exports the old module's names from depthlib.inference.load.
MOVED: dict[str, str] = {
    "depthlib.ahead": "depthlib.core.ahead",
    "depthlib.atomic": "depthlib.core.atomic",
    "depthlib.config": "depthlib.core.config",
    "depthlib.distributed": "depthlib.core.distributed",
    "depthlib.errors": "depthlib.core.errors",
    "depthlib.lock": "depthlib.core.lock",
    "depthlib.notices": "depthlib.core.notices",
    "depthlib.paths": "depthlib.core.paths",
    "depthlib.reproducibility": "depthlib.core.reproducibility",
    "depthlib.checkpoint": "depthlib.models.checkpoint",
    "depthlib.fastpath": "depthlib.models.fastpath",
    "depthlib.predict": "depthlib.models.predict",
    "depthlib.viz": "depthlib.figures.viz",
    "depthlib.explorer_figures": "depthlib.figures.explorer",
    "depthlib.align": "depthlib.evaluation.align",
    "depthlib.evaluate": "depthlib.evaluation.evaluate",
    "depthlib.metrics": "depthlib.evaluation.metrics",
    "depthlib.protocols": "depthlib.evaluation.protocols",
    "depthlib.report": "depthlib.evaluation.report",
    "depthlib.callbacks": "depthlib.training.callbacks",
    "depthlib.history": "depthlib.training.history",
    "depthlib.losses": "depthlib.training.losses",
    "depthlib.precision": "depthlib.training.precision",
    "depthlib.train": "depthlib.training.train",
    "depthlib.train_cli": "depthlib.training.train_cli",
    "depthlib.train_setup": "depthlib.training.train_setup",
    "depthlib.train_step": "depthlib.training.train_step",
    "depthlib.export": "depthlib.inference.export",
    "depthlib.pipeline": "depthlib.notebook.pipeline",
    "depthlib.pipeline_kernel": "depthlib.notebook.pipeline_kernel",
    "depthlib.widgets": "depthlib.notebook.widgets",
    "depthlib.workbook": "depthlib.notebook.workbook",
}

# old `python -m` commands -> the command that replaces them
COMMANDS: dict[str, str] = {
    "depthlib.pipeline": "python -m depthlib pipeline",
    "depthlib.train_cli": "python -m depthlib train",
}


def moved_message(old: str) -> str:
    """The warning an import of the old name `old` gives."""
    return f"{old} moved to {MOVED[old]}; import it from there"


class _AliasSpec(importlib.machinery.ModuleSpec):
    """The spec of an old name. Its parent is the new home's, so that code runpy runs under the old name
    (`python -m depthlib.pipeline`) resolves its relative imports from where the file now is."""

    @property
    def parent(self) -> str:
        return MOVED[self.name].rpartition(".")[0]


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the new module object itself; gives runpy the new module's code."""

    def __init__(self, old: str) -> None:
        self.old, self.new = old, MOVED[old]

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # stacklevel 2: the importing line (the import system's own frames are skipped by warnings)
        warnings.warn(moved_message(self.old), DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.new)
        self._spec = module.__spec__  # the import system sets __spec__ to the alias spec: put it back below
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # nothing to run: the new module is already imported

    def get_code(self, fullname: str) -> CodeType | None:
        """The new module's code, for `python -m OLD` (runpy); warns as coming from the command line."""
        command = COMMANDS.get(self.old)
        message = (f"{self.old} moved to {self.new}; run `{command}` instead" if command
                   else moved_message(self.old))
        # attributed to __main__ so the default filters show it (they hide DeprecationWarnings of other modules)
        warnings.warn_explicit(message, DeprecationWarning, f"python -m {self.old}", 0, module="__main__")
        spec = importlib.util.find_spec(self.new)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
            raise ImportError(f"{self.new} (the new home of {self.old}) has no code to run", name=self.new)
        return spec.loader.get_code(self.new)


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of MOVED; every other name is left to the finders after it."""

    depthlib_moved = True  # how install() knows its own finder, from this module or an earlier load of it

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        new_spec = importlib.util.find_spec(MOVED[fullname])
        return _AliasSpec(fullname, _AliasLoader(fullname), origin=new_spec.origin if new_spec else None)


def install() -> None:
    """Put one MovedFinder at the front of sys.meta_path (never two, also after a reload of depthlib)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "depthlib_moved", False)]
    sys.meta_path.insert(0, MovedFinder())
