"""The History of a training run: per-epoch rows and logged steps, saved as history.json / history.csv."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write_text


@dataclass
class History:
    """Per-epoch rows (epoch, step, lr, train_loss, val_loss, val_abs_rel, val_delta1, seconds)
    and logged steps (step, loss, lr); `history["val_loss"]` gives a column."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = -1
    stopped_early: str = ""   # why the run ended before cfg.epochs ("max_steps"), if it did

    def __getitem__(self, key: str) -> list[float]:
        return [row.get(key, math.nan) for row in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins, as stored in history.json and in the checkpoint's extra."""
        best = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return {"epochs": self.epochs, "steps": self.steps, "best_val_loss": best,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        """Inverse of to_dict."""
        d = dict(d)
        d["best_val_loss"] = math.inf if d["best_val_loss"] is None else d["best_val_loss"]
        return cls(**d)

    def save(self, out_dir: Path) -> None:
        """Write out_dir/history.json (everything) and history.csv (epoch rows), atomically."""
        atomic_write_text(out_dir / "history.json", json.dumps(self.to_dict(), indent=1))
        cols: list[str] = []
        for row in self.epochs:
            cols += [k for k in row if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(self.epochs)
        atomic_write_text(out_dir / "history.csv", buf.getvalue())
