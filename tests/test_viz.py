"""Figures: where they are written, and what their axes say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depthlib import viz


@pytest.fixture()
def lab_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root in tmp_path, with the working directory in its notebooks/ folder (as JupyterLab runs them)."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    monkeypatch.setenv("DEPTH_WORKBOOK_ROOT", str(root))
    monkeypatch.chdir(root / "notebooks")
    return root


def test_relative_figure_paths_resolve_from_the_project_root(lab_cwd: Path) -> None:
    history = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
    out = viz.save_figure(viz.curves(history), "figures/p/curves.png")
    assert out == lab_cwd / "figures/p/curves.png" and out.is_file()
    row = {"image": np.zeros((3, 8, 8), np.float32), "depth": np.ones((8, 8), np.float32), "name": "f"}
    viz.depth_grid([row], ["image", "depth"], path="figures/p/grid.png")
    viz.curves(history, path="figures/p/curves2.png")
    assert {p.name for p in (lab_cwd / "figures/p").iterdir()} == {"curves.png", "grid.png", "curves2.png"}
    assert not (lab_cwd / "notebooks" / "figures").exists(), "a figure went to the working directory"
