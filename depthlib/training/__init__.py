"""Training a model: the one loop fit(model, train, val, cfg, callbacks=()) -> History (train.py), its setup
(train_setup.py: datasets of a prepared file, checks, initial weights, optimiser, schedule, seeds), one step's
pieces (train_step.py), the losses (losses.py), precision and speed switches (precision.py), callbacks and the
TensorBoard logger (callbacks.py), the History (history.py) and the `depthlib train` command (train_cli.py).
fit and History are re-exported here; fit is imported when first asked for, so that importing the light modules
(losses, history) does not import the networks.
"""

from __future__ import annotations

from typing import Any

from .history import History

__all__ = ["History", "fit"]


def __getattr__(name: str) -> Any:
    """depthlib.training.fit, imported on first use (PEP 562)."""
    if name == "fit":
        from .train import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
