"""What the explorer (depthlib.notebook.widgets) draws: its live picture and its static figure.

The live picture is panels four to a row with readable titles, a pixel marker and colour bars,
drawn with PIL rather than matplotlib because the slider waits on it (a few ms instead of ~0.3 s).
The colour bars under the panels give the depth scale in metres and the sign of the error maps;
`Layout.pixel_at` maps a click on the picture back to the frame pixel under it. `static_figure`
is the same view in matplotlib, for the PNG a headless run keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from ..data.frame import Frame
from .viz import percentile_range, to_rgb_uint8

COLUMNS = 4
SPLITS = {"train": "train split: seen in training", "val": "val split: not trained on (monitored)",
          "test": "test split: held out"}
BACKGROUND = (32, 32, 32)
MARKER = (0, 255, 0)


def split_text(split: str | None) -> str:
    """What a frame's train / val / test label says about it; None: the source records none."""
    if split is None:  # e.g. DenseDepth's "test" half is a download's split, not this project's
        return "split not recorded (not a prepared file)"
    return SPLITS.get(str(split), f"{split} split")


def ground_truth_range(frame: Frame) -> tuple[float, float]:
    """(lo, hi) metres: 2nd-98th percentiles of the frame's valid ground truth (as depthlib.figures.viz's grids), widened
    to 0.1 m steps; (0, 10) without any. A few far pixels (a window) no longer flatten the room."""
    if not frame.valid.any():
        return 0.0, 10.0
    p_lo, p_hi = percentile_range(frame.depth, frame.valid)
    lo, hi = float(np.floor(p_lo * 10) / 10), float(np.ceil(p_hi * 10) / 10)
    return lo, max(hi, lo + 0.1)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (matplotlib's own, so no extra font file) at `size` pixels."""
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)


@dataclass(frozen=True)
class Layout:
    """Where things are on the picture: `rows` rows of panels h x w, then the colour-bar strip."""

    h: int
    w: int
    rows: int
    frame_hw: tuple[int, int]   # (H, W) of the frame the panels show
    blank: tuple[int, ...] = ()  # panels (row-major index) with nothing drawn: no frame pixel there

    @property
    def legend_h(self) -> int:
        """Height of the colour-bar strip in pixels."""
        return 3 * self.text_size + 16

    @property
    def text_size(self) -> int:
        """Font size of titles, in pixels: grows with the panel width (15 px at 320)."""
        return max(11, round(self.w / 21))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the whole picture."""
        return self.rows * self.h + self.legend_h, COLUMNS * self.w

    def pixel_at(self, fx: float, fy: float) -> tuple[int, int] | None:
        """Frame pixel (x, y) under the point at fractions (fx, fy) of the picture; None off the panels."""
        H, W = self.size
        px, py = fx * W, fy * H
        if not (0 <= px < W and 0 <= py < self.rows * self.h):
            return None
        if int(py // self.h) * COLUMNS + int(px // self.w) in self.blank:
            return None
        fh, fw = self.frame_hw
        x = int((px % self.w) * fw / self.w)
        y = int((py % self.h) * fh / self.h)
        return min(max(x, 0), fw - 1), min(max(y, 0), fh - 1)


def _title(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int) -> None:
    f = font(size)
    x0, y0, x1, y1 = draw.textbbox((xy[0] + 4, xy[1] + 2), text, font=f)
    draw.rectangle((xy[0], xy[1], x1 + 4, y1 + 3), fill=(0, 0, 0))
    draw.text((xy[0] + 4, xy[1] + 2), text, fill=(255, 255, 255), font=f)


def _colour_bar(canvas: Image.Image, box: tuple[int, int, int], cmap: str, lo: float, hi: float,
                ticks: list[tuple[float, str]], caption: str, size: int) -> None:
    """A horizontal colour bar from (x0, y) to x1: gradient, tick labels under it, then the caption, centred."""
    x0, y0, x1 = box
    draw = ImageDraw.Draw(canvas)
    small = font(max(10, size - 2))
    bar_h = max(8, size - 4)
    ramp = np.linspace(0, 1, x1 - x0)[None, :].repeat(bar_h, 0)
    canvas.paste(Image.fromarray((matplotlib.colormaps[cmap](ramp)[..., :3] * 255).astype(np.uint8)), (x0, y0))
    for value, label in ticks:
        tx = x0 + round((value - lo) / max(hi - lo, 1e-9) * (x1 - x0 - 1))
        draw.line((tx, y0 + bar_h, tx, y0 + bar_h + 3), fill=(230, 230, 230))
        lw = draw.textlength(label, font=small)
        draw.text((min(max(tx - lw / 2, x0), x1 - lw), y0 + bar_h + 4), label, fill=(230, 230, 230), font=small)
    cw = draw.textlength(caption, font=small)
    draw.text(((x0 + x1 - cw) / 2, y0 + bar_h + size + 6), caption, fill=(255, 255, 255), font=small)


def _fmt(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 0.95 or v == 0 else f"{v:.2f}"


def compose(panels: list[tuple[str, np.ndarray]], layout: Layout, *, marker: tuple[float, float] | None,
            depth: tuple[float, float, str], err_max: float, error_cmap: str, has_error: bool = True,
            difference: str | None = None) -> np.ndarray:
    """uint8 [H,W,3] picture: `panels` ((title, uint8 [h,w,3]); "" title = blank) and the colour bars under them.

    marker (sx, sy) is the pixel's position inside a panel, drawn on every titled panel; `depth` is
    (lo, hi, cmap) of the depth panels and err_max the +- range of the signed error panels. Each bar sits
    under the bottom row's panel it belongs to; `difference` (the caption of a second row's second panel,
    e.g. "current \u2212 previous (m)") gives that panel its own +- err_max bar, and the depth bar moves to
    the third column, under the predictions.
    """
    H, W = layout.size
    h, w, size = layout.h, layout.w, layout.text_size
    canvas = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, (title, rgb) in enumerate(panels):
        ox, oy = (k % COLUMNS) * w, (k // COLUMNS) * h
        canvas.paste(Image.fromarray(rgb), (ox, oy))
        if title:
            _title(draw, (ox, oy), title, size)
            if marker is not None:
                cx, cy = ox + marker[0], oy + marker[1]
                draw.line((cx - 7, cy, cx + 7, cy), fill=MARKER, width=2)
                draw.line((cx, cy - 7, cx, cy + 7), fill=MARKER, width=2)
    lo, hi, cmap = depth
    y = layout.rows * h + 6
    mid = (lo + hi) / 2
    e = err_max
    signed = [(-e, f"\u2212{_fmt(e)}"), (0.0, "0"), (e, f"+{_fmt(e)} m")]
    if difference:
        _colour_bar(canvas, (w + 8, y, 2 * w - 8), error_cmap, -e, e, signed, difference, size)
    _colour_bar(canvas, ((2 if difference else 1) * w + 8, y, 3 * w - 8), cmap, lo, hi,
                [(lo, f"{_fmt(lo)} m"), (mid, f"{_fmt(mid)} m"), (hi, f"{_fmt(hi)} m")], "depth (m)", size)
    if has_error:
        _colour_bar(canvas, (3 * w + 8, y, 4 * w - 8), error_cmap, -e, e, signed,
                    "pred \u2212 gt: \u2212 too near, + too far", size)
    return np.asarray(canvas)


def static_figure(frame: Frame, rgb_title: str, rows: Sequence[tuple[str, np.ndarray, Mapping[str, float]]], *,
                  depth: tuple[float, float, str], err_max: float, error_cmap: str,
                  pixels: str = "its valid pixels, no crop") -> Any:
    """matplotlib Figure of the view: per (label, prediction [H,W] m, metrics) row: prediction and its error map.

    The first row adds the RGB (titled `rgb_title`) and the ground truth (its title says the metrics' `pixels`),
    later rows the difference to the first prediction. Each depth / error panel has its own colour bar, as tall
    as the picture.
    """
    import matplotlib.pyplot as plt

    lo, hi, cmap = depth
    e = err_max
    # constrained layout keeps titles, colour bars and their labels apart
    fig, axes = plt.subplots(len(rows), 4, figsize=(16, 3.6 * len(rows)), squeeze=False, layout="constrained")
    gt = np.where(frame.valid, frame.depth, np.nan)
    depth_kw, err_kw = dict(cmap=cmap, vmin=lo, vmax=hi), dict(cmap=error_cmap, vmin=-e, vmax=e)
    bars = {"depth": "depth (m)", "error": "pred \u2212 gt (m)\n\u2212 too near, + too far", "diff": "difference (m)"}
    if len(rows) > 1:
        bars["diff"] = f"{rows[0][0]} \u2212 {rows[1][0]} (m)"
    first = rows[0]
    for r, (label, pred, m) in enumerate(rows):
        scores = f"\u03b41 {m['delta1']:.3f}  AbsRel {m['abs_rel']:.3f}\nRMSE {m['rmse']:.3f} m  log10 {m['log10']:.3f}"
        truth = (f"ground truth\nmetrics: {pixels}", gt, depth_kw, "depth")
        left = ([(rgb_title, to_rgb_uint8(frame.rgb), {}, ""), truth] if r == 0
                else [None, (f"{first[0]} \u2212 {label}", first[1] - pred, err_kw, "diff")])
        cells = [*left, (f"{label}\n{scores}", pred, depth_kw, "depth"), (f"{label}: pred \u2212 gt", pred - gt, err_kw, "error")]
        for c, cell in enumerate(cells):
            ax = axes[r][c]
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            if cell is None:
                ax.set_axis_off()
                continue
            title, image, kw, bar = cell
            im = ax.imshow(image, **kw)
            ax.set_title(title, fontsize=11)
            if bar:  # beside the picture and exactly as tall (the axes box hugs an imshow)
                fig.colorbar(im, cax=ax.inset_axes((1.03, 0.0, 0.05, 1.0))).set_label(bars[bar], fontsize=9)
    return fig
