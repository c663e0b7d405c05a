"""Figures: depth colourisation, RGB | ground truth | prediction grids, comparisons, curves.

Every figure function returns a matplotlib Figure and, given `path` (relative: from the project root, whatever the
working directory), also saves it atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..core.atomic import atomic_path  # noqa: E402
from ..core.paths import resolve  # noqa: E402

HOLE_COLOUR = (255, 0, 255)  # magenta: no ground truth here


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def to_rgb_uint8(image: Any) -> np.ndarray:
    """float[3,H,W] in [0,1] (tensor or array) or uint8 [H,W,3] -> uint8 [H,W,3]."""
    a = _np(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return a


def colorize(depth: Any, vmin: float | None = None, vmax: float | None = None, cmap: str = "magma_r",
             valid: Any = None) -> np.ndarray:
    """Depth [H,W] or [1,H,W] metres -> uint8 [H,W,3]; invalid pixels (if `valid` given) in magenta."""
    d = _np(depth).astype(np.float64).squeeze()
    m = np.isfinite(d) if valid is None else (_np(valid).squeeze().astype(bool) & np.isfinite(d))
    lo = float(np.min(d[m])) if vmin is None and m.any() else (vmin if vmin is not None else 0.0)
    hi = float(np.max(d[m])) if vmax is None and m.any() else (vmax if vmax is not None else 1.0)
    t = np.clip((d - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = (matplotlib.colormaps[cmap](np.nan_to_num(t))[..., :3] * 255).round().astype(np.uint8)
    rgb[~m] = HOLE_COLOUR
    return rgb


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Save `fig` to `path` (relative: from the project root) via a temporary file and rename -> the path written.

    Notebooks run with the notebook's folder as working directory in JupyterLab and with the project
    root under the pipeline: resolving here sends every figure to the same place either way.
    """
    out = resolve(path)
    # A heading kept out of the layout (explorer.static_figure places it in a strip of its own) is still part of the
    # picture, but matplotlib's tight box takes only what is in the layout. Passing it as bbox_extra_artists does
    # not do: that list replaces every axes' own (the colour bars were cut off 04's grids), and the full list
    # instead made each axes measure every artist of the figure (save_static 1.0 -> 1.7 s). So: the tight box of
    # the figure, widened to those artists.
    left_out = [a for a in fig.get_children() if a not in fig.axes and a.get_visible() and not a.get_in_layout()
                and a is not fig.patch]
    box: Any = "tight"
    if left_out:
        from matplotlib.transforms import Bbox

        fig.draw_without_rendering()  # the layout, as the save will draw it
        renderer = fig.canvas.get_renderer()
        to_inches = fig.dpi_scale_trans.inverted()
        box = Bbox.union([fig.get_tightbbox(renderer), *(a.get_window_extent(renderer).transformed(to_inches)
                                                          for a in left_out)])
        box = box.padded(plt.rcParams["savefig.pad_inches"])
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches=box)
    return out


def short_name(name: str, max_chars: int) -> str:
    """`name` in at most max_chars characters, cut from the left so its end (the frame) stays: "…/scene/frame_0001".

    Whole path components are kept where they fit; a last component longer than that keeps its end.
    """
    name = str(name)
    if len(name) <= max_chars:
        return name
    parts = name.split("/")
    kept = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(kept) + 2 > max_chars:  # room for the "…/" in front
            break
        kept = f"{part}/{kept}"
    if len(kept) + 2 <= max_chars:
        return f"…/{kept}"
    return "…" + name[-(max_chars - 1):]


def percentile_range(depth: Any, valid: Any = None, percentiles: tuple[float, float] = (2.0, 98.0)) -> tuple[float, float]:
    """(lo, hi) metres: the given percentiles of the valid, finite pixels of `depth` [H,W] or [1,H,W]; (0, 1) without any.

    Percentiles rather than min / max (or 0 m) so a few far or near pixels do not flatten the rest of the room.
    """
    d = _np(depth).astype(np.float64).squeeze()
    m = np.isfinite(d) if valid is None else (_np(valid).squeeze().astype(bool) & np.isfinite(d))
    if not m.any():
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(d[m], percentiles))
    return lo, max(hi, lo + 1e-3)  # a flat frame still gets a range


def depth_grid(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, titles: Sequence[str] | None = None,
               fixed_range: tuple[float, float] | None = None, percentiles: tuple[float, float] = (2.0, 98.0),
               cmap: str = "magma_r", path: str | os.PathLike[str] | None = None, suptitle: str = "") -> plt.Figure:
    """One row per frame, one column per key of `columns` ("image" or any depth key), one depth range per row.

    Each row maps keys to tensors/arrays [H,W] / [1,H,W] (the image [3,H,W] or uint8 [H,W,3]); "valid" (optional)
    marks ground-truth holes (magenta) in the "depth" column; "name" (optional) labels the row, shortened from
    the left. A row's depth panels share one colour range, `percentiles` of its ground truth ("depth", else its
    first depth column), shown by one colour bar at the row's end; `fixed_range` (lo, hi) m fixes it for every row instead.
    """
    titles = list(titles or columns)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.6 * len(columns), 2.0 * len(rows)), squeeze=False)
    colours = matplotlib.colormaps[cmap].with_extremes(bad=np.array(HOLE_COLOUR) / 255)
    depth_keys = [c for c in columns if c != "image"]
    for r, row in enumerate(rows):
        if fixed_range is not None:
            lo, hi = fixed_range
        elif depth_keys:
            ref = "depth" if "depth" in depth_keys else depth_keys[0]
            lo, hi = percentile_range(row[ref], row.get("valid") if ref == "depth" else None, percentiles)
        im = None
        for c, key in enumerate(columns):
            ax = axes[r][c]
            if key == "image":
                ax.imshow(to_rgb_uint8(row[key]))
            else:
                d = _np(row[key]).astype(np.float32).squeeze()
                hole = ~np.isfinite(d)
                if key == "depth" and row.get("valid") is not None:
                    hole |= ~_np(row["valid"]).squeeze().astype(bool)
                im = ax.imshow(np.ma.masked_array(d, hole), cmap=colours, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        if im is not None:  # the row's one depth range, beside its last panel and as tall (the axes box hugs an imshow)
            bar = fig.colorbar(im, cax=axes[r][-1].inset_axes((1.04, 0.0, 0.06, 1.0)), extend="both")
            bar.set_label("depth (m)", fontsize=8)
            bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    for r, row in enumerate(rows):  # vertical: the length does not change the margin tight_layout makes
        axes[r][0].set_ylabel(str(row.get("name", "")), fontsize=8)
    fig.tight_layout()
    for r, row in enumerate(rows):
        _fit_row_label(axes[r][0], str(row.get("name", "")))
    if path is not None:
        save_figure(fig, path)
    return fig


def _fit_row_label(ax: plt.Axes, name: str, fontsize: float = 8) -> None:
    """Label a row with `name`, shortened from the left until it is no taller than the row's first panel."""
    renderer = ax.figure.canvas.get_renderer()
    ax.apply_aspect()  # the panel as drawn: an imshow shrinks the axes box to the image's aspect
    room = ax.get_window_extent(renderer).height
    for n in range(len(name), 0, -1):
        label = ax.set_ylabel(short_name(name, n), fontsize=fontsize)
        if label.get_window_extent(renderer).height <= room:
            return


def curves(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("train_loss", "val_loss"), *,
           x: str = "epoch", path: str | os.PathLike[str] | None = None, title: str = "",
           ylabel: str | None = None) -> plt.Figure:
    """Plot history columns `keys` against `x`; the y label names the loss (rows' "loss_name") unless given."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in keys:
        pts = [(h[x], h[k]) for h in history if h.get(k) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
    if ylabel is None:
        names = sorted({str(h["loss_name"]) for h in history if h.get("loss_name")})
        loss = f"{' / '.join(names)} loss" if names else "loss"
        ylabel = loss if all(k.endswith("loss") for k in keys) else ", ".join(keys)
    ax.set_xlabel(x); ax.set_ylabel(ylabel); ax.legend(); ax.grid(alpha=0.3)  # noqa: E702
    if x in ("epoch", "step"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
