"""One frame through longer lenses (issue #22): the RGB each zoom shows over the depth predicted for it, one scale."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .viz import _np, percentile_range, save_figure, to_rgb_uint8


def zoom_figure(views: Sequence[Mapping[str, Any]], *, path: str | os.PathLike[str] | None = None,
                suptitle: str = "", percentiles: tuple[float, float] = (2.0, 98.0), cmap: str = "magma_r") -> plt.Figure:
    """Columns = views (depthlib.evaluation.lens.zoom_views: "z", "image" [3,H,W], "pred" [H,W] m, "ratio", and
    "depth" / "valid" [H,W]), RGB row over prediction row, each column titled with z and its median ratio predicted /
    true. The predictions share one colour range, `percentiles` of the first view's ground truth (the whole frame's
    metres; else of its prediction), with one colour bar in metres: a colour is the same depth at every zoom."""
    if not views:
        raise ValueError("zoom_figure needs at least one view")
    first = views[0]
    ref, valid = (first["depth"], first.get("valid")) if "depth" in first else (first["pred"], None)
    lo, hi = percentile_range(ref, valid, percentiles)
    n = len(views)
    fig, axes = plt.subplots(2, n, figsize=(2.7 * n + 0.8, 4.6), squeeze=False, layout="constrained")
    im = None
    for c, v in enumerate(views):
        axes[0][c].imshow(to_rgb_uint8(v["image"]))
        d = _np(v["pred"]).astype(np.float32).squeeze()
        im = axes[1][c].imshow(d, cmap=matplotlib.colormaps[cmap], vmin=lo, vmax=hi, interpolation="nearest")
        axes[0][c].set_title(f"z = {v['z']:g} (focal length ×{v['z']:g})\nmedian predicted / true {v['ratio']:.3f}",
                             fontsize=9)
        for ax in (axes[0][c], axes[1][c]):
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
    axes[0][0].set_ylabel("RGB", fontsize=9)
    axes[1][0].set_ylabel("prediction", fontsize=9)
    # one bar for the prediction row, laid out with it (an inset bar past the last panel fell off the saved picture)
    bar = fig.colorbar(im, ax=list(axes[1]), extend="both", fraction=0.04, pad=0.02)
    bar.set_label("depth (m)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig
