"""Figures: where they are written, and what their axes say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import pytest

from depthlib.figures import viz


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


def test_loss_curves_say_which_loss(tmp_path: Path) -> None:
    from _train_helpers import SynthDepth, cfg, tiny_model
    from depthlib.training.train import fit

    history = fit(tiny_model(), SynthDepth(4), SynthDepth(2, seed=1), cfg(tmp_path, epochs=2, loss="silog"))
    assert history.epochs[-1]["loss_name"] == "silog"  # history.csv / .json say which loss their numbers are
    fig = viz.curves(history.epochs, ["train_loss", "val_loss"])
    assert fig.axes[0].get_ylabel() == "silog loss"
    assert viz.curves(history.epochs, ["val_delta1"]).axes[0].get_ylabel() == "val_delta1"
    assert viz.curves(history.epochs, ylabel="m").axes[0].get_ylabel() == "m"


def test_epoch_axis_has_whole_numbers_only() -> None:
    # A 5-epoch fine-tune once showed ticks at 1.5, 2.5, ...
    fig = viz.curves([{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 6)], ["train_loss"])
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 5]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _ramp_row(lo: float, hi: float, name: str = "f") -> dict[str, object]:
    """A row whose ground truth ramps lo..hi m (a hole in one corner) and whose prediction is 0.5 m too far."""
    depth = np.linspace(lo, hi, 40 * 30, dtype=np.float32).reshape(1, 30, 40)
    valid = np.ones_like(depth, bool)
    valid[0, :3, :3] = False
    return {"image": np.zeros((3, 30, 40), np.float32), "depth": depth, "valid": valid, "pred": depth + 0.5,
            "name": name}


def test_depth_colours_span_each_rows_ground_truth() -> None:
    # Coloured from 0 m, a room 2-4 m deep came out nearly one colour (figures/sample/milestone.png).
    rows = [_ramp_row(2.0, 4.0), _ramp_row(5.0, 9.0)]
    fig = viz.depth_grid(rows, ["image", "depth", "pred"])
    for r, row in enumerate(rows):
        gt = np.asarray(row["depth"])[np.asarray(row["valid"])]
        want = tuple(np.percentile(gt, [2, 98]))
        depth_axes = fig.axes[3 * r + 1: 3 * r + 3]  # ground truth and prediction share the row's range
        assert [ax.images[0].get_clim() for ax in depth_axes] == [pytest.approx(want)] * 2, r
    bars = [bar for ax in fig.axes for bar in ax.child_axes if bar.get_ylabel() == "depth (m)"]
    assert len(bars) == len(rows)  # one colour bar per row, labelled


def test_long_frame_names_keep_their_end() -> None:
    name = "rgbd_dataset_freiburg1_desk/rgb/1305031452.791720"
    fig = viz.depth_grid([_ramp_row(2.0, 4.0, name)], ["image", "depth"])
    fig.canvas.draw()
    ax = fig.axes[0]
    label = ax.yaxis.label
    assert label.get_text().startswith("\u2026") and label.get_text().endswith("/1305031452.791720")
    renderer = fig.canvas.get_renderer()
    assert label.get_window_extent(renderer).height <= ax.get_window_extent(renderer).height  # not clipped
    assert viz.short_name("scene/frame_0001", 30) == "scene/frame_0001"
    assert viz.short_name("a_very_long_scene_name/frame_0001", 20) == "\u2026/frame_0001"
    assert viz.short_name("frame_" + "9" * 30, 12) == "\u2026" + "9" * 11


def _cells(nb: str) -> list[dict[str, object]]:
    import json

    return json.loads((Path(__file__).resolve().parent.parent / "notebooks" / nb).read_text())["cells"]


def test_every_grid_04_draws_has_a_heading() -> None:
    # 04's training-frame grid had none: it looked like the held-out grid above it.
    import ast

    code = "\n".join("".join(c["source"]) for c in _cells("04_evaluate.ipynb") if c["cell_type"] == "code")
    grids = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "depth_grid"]
    assert len(grids) >= 3
    for call in grids:
        heading = [k.value for k in call.keywords if k.arg == "suptitle"]
        assert heading and not (isinstance(heading[0], ast.Constant) and not heading[0].value), ast.unparse(call)


def test_04_says_what_the_scratch_control_is_where_it_first_appears() -> None:
    cells = _cells("04_evaluate.ipynb")
    first = next(i for i, c in enumerate(cells) if "control" in "".join(c["source"]))
    told = " ".join("".join(c["source"]) for c in cells[:first + 1] if c["cell_type"] == "markdown").lower()
    assert "scratch control" in told, "04 uses the scratch control before its text says what it is"
    for words in ("same architecture", "random weights", "as many steps", "imagenet weights buy"):
        assert words in " ".join(told.split()), words


_BARS_CELL = """
import sys
sys.path.insert(0, {tests!r})
from _train_helpers import SynthDepth, cfg, tiny_model
from depthlib.data import open_source
from depthlib.evaluation.evaluate import evaluate
from depthlib.notebook import workbook
from depthlib.training.train import fit

workbook.prepare(open_source("bts", {raw!r}), {h5!r}, labels=["train", "val", "test"])
fit(tiny_model(), SynthDepth(4), SynthDepth(2, seed=1), cfg({out!r}, epochs=1, progress=True))
evaluate(tiny_model(), SynthDepth(3), protocol="no_crop_valid", device="cpu")
"""


def _as_shown(text: str) -> list[str]:
    """The lines a notebook viewer shows for a stream's text: each line as its last carriage return left it."""
    return [line.split("\r")[-1] for line in text.split("\n")]


@pytest.mark.slow
def test_a_saved_notebook_shows_where_its_progress_bars_ended(tmp_path: Path) -> None:
    # Executed notebooks in runs/ showed "0%" bars: a tqdm.auto widget saves its first state as its text.
    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parent.parent
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_BARS_CELL.format(
        tests=str(root / "tests"), raw=str(root / "data/sample/raw_depth"), h5=str(tmp_path / "p.h5"),
        out=str(tmp_path / "run")))]
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    blocks: list[tuple[str, str]] = []  # a viewer joins consecutive outputs of one stream, as written
    for out in nb.cells[0].outputs:
        if out.output_type == "stream" and blocks and blocks[-1][0] == out.name:
            blocks[-1] = (out.name, blocks[-1][1] + out.text)
        elif out.output_type == "stream":
            blocks.append((out.name, out.text))
        elif "text/plain" in out.get("data", {}):  # what a viewer without the live widget shows
            blocks.append(("display", out.data["text/plain"]))
    shown = [line for _, text in blocks for line in _as_shown(text)]
    bars = [line for line in shown if "%|" in line]
    stuck = [line for line in bars if "100%|" not in line]
    assert not stuck, stuck
    for name in ("p.h5", "epoch 1/1", "evaluate"):
        assert any(line.startswith(name) for line in bars), (name, bars)


def test_04_says_its_verdict_once_in_the_headline() -> None:
    # 04 printed the headline, then at the end the old "current AbsRel ... vs baseline ...; delta1 ..." again.
    import ast

    code = "\n".join("".join(c["source"]) for c in _cells("04_evaluate.ipynb") if c["cell_type"] == "code")
    prints = [ast.unparse(n) for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name) and n.func.id == "print"]
    verdicts = [p for p in prints if "baseline" in p or "abs_rel" in p or "delta1" in p or "headline" in p]
    assert verdicts == ["print(headline(metric, markdown=False))"], verdicts
    assert "require_beat_baseline" in code and "require_beat_control" in code  # the asserts stay


def test_save_figure_keeps_what_a_tight_save_keeps(tmp_path) -> None:
    # 04's grids lost the colour bars at their right edge (768 -> 705 px wide) once save_figure passed only the
    # figure-level artists as the tight box's extra artists: a figure with nothing out of the layout must come out
    # as matplotlib's own tight save makes it.
    import matplotlib.pyplot as plt
    from PIL import Image

    from depthlib.figures.viz import depth_grid, save_figure

    row = {"image": torch.rand(3, 24, 32), "depth": 1 + torch.rand(1, 24, 32) * 3, "current": 1 + torch.rand(1, 24, 32) * 3}
    fig = depth_grid([row, row], ["image", "depth", "current"], suptitle="two rows")
    ours = save_figure(fig, tmp_path / "ours.png")
    fig.savefig(tmp_path / "plain.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (ours, tmp_path / "plain.png"))
    assert a.shape == b.shape and np.array_equal(a, b)


def test_a_heading_kept_out_of_the_layout_is_saved_with_the_figure(tmp_path) -> None:
    # 05_explore.png (second user trial, after the heading was added): the heading sat outside the constrained
    # layout, and the tight box, which takes only artists in the layout, cut it off the saved picture.
    import matplotlib.pyplot as plt
    from PIL import Image

    from depthlib.figures.viz import save_figure

    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.imshow(np.zeros((8, 8)))
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.85))
    fig.suptitle("HEADING", fontsize=20, y=0.99, va="top").set_in_layout(False)
    path = save_figure(fig, tmp_path / "h.png")
    plt.close(fig)
    img = np.asarray(Image.open(path).convert("L"))
    rows_dark = np.nonzero((img < 128).any(axis=1))[0]
    first_block = rows_dark[: int(np.nonzero(np.diff(rows_dark) > 3)[0][0]) + 1]
    # the picture starts with the heading's letters (a few dark pixels a row), not with the black image's rows
    assert (img[first_block] < 128).mean() < 0.3, (first_block, img.shape)
