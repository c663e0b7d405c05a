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

from .atomic import atomic_path  # noqa: E402
from .paths import resolve  # noqa: E402

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
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return out


def depth_grid(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, titles: Sequence[str] | None = None,
               vmax: float | None = None, cmap: str = "magma_r", path: str | os.PathLike[str] | None = None,
               suptitle: str = "") -> plt.Figure:
    """One row per frame, one column per key of `columns` ("image" or any depth key), shared depth scale per row.

    Each row maps keys to tensors/arrays; "valid" (optional) marks ground-truth holes in the "depth" column;
    "name" (optional) labels the row.
    """
    titles = list(titles or columns)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.6 * len(columns), 2.0 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        depths = [_np(row[c]) for c in columns if c != "image"]
        hi = vmax if vmax is not None else max(float(np.nanmax(d)) for d in depths)
        for c, key in enumerate(columns):
            ax = axes[r][c]
            if key == "image":
                ax.imshow(to_rgb_uint8(row[key]))
            else:
                ax.imshow(colorize(row[key], 0.0, hi, cmap, valid=row.get("valid") if key == "depth" else None))
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        axes[r][0].set_ylabel(str(row.get("name", "")), fontsize=8)
        if len(depths):  # one depth scale per row, shown once at its end
            sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, hi), cmap=cmap)
            fig.colorbar(sm, ax=axes[r][-1], fraction=0.046, pad=0.02).set_label("m", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


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
