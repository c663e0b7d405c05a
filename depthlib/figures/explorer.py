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
KNOWN = (0, 230, 255)  # rings of the known points (cyan: unlike the green cross, and clear on magma and RdBu)


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


def difference_range(diff: np.ndarray, percentile: float = 98.0) -> float:
    """Half-width in metres of the symmetric colour range of a difference map (e.g. current - previous): the
    `percentile`-th percentile of |diff| over its finite pixels, rounded up to two significant digits (at least 1 mm).
    Two models of one lineage differ by centimetres: a +-err_max range (1 m) showed them as one flat colour."""
    a = np.abs(np.asarray(diff, dtype=np.float64))
    a = a[np.isfinite(a)]
    e = float(np.percentile(a, percentile)) if a.size else 0.0
    if e <= 0.001:
        return 0.001
    step = 10.0 ** (np.floor(np.log10(e)) - 1)  # two significant digits
    return float(np.ceil(e / step - 1e-9) * step)


def difference_caption(labels: Sequence[str], e: float, *, short: bool = False) -> str:
    """The colour bar caption of a difference panel: what it subtracts, in metres, and where its range comes from
    (short: for the live picture's narrower bars, whose ticks give +-e)."""
    if short:
        return f"{labels[0]} \u2212 {labels[1]} (m), \u00b1 p98"
    return f"{labels[0]} \u2212 {labels[1]} (m), \u00b1{e:g}: 98th percentile of |difference|"


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


def _known_ring(draw: ImageDraw.ImageDraw, c: tuple[float, float], number: int, size: int, box: tuple[int, int, int, int]) -> None:
    """A ring at c (dark outline, so it reads on light and dark panels) and its number beside it, inside box."""
    cx, cy = c
    r = max(4, size // 3)
    draw.ellipse((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1), outline=(0, 0, 0), width=4)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=KNOWN, width=2)
    f = font(max(10, size - 3))
    label = str(number)
    tw = draw.textlength(label, font=f)
    x0, y0, x1, y1 = box  # beside the ring, on the side that stays in the panel
    tx = cx + r + 2 if cx + r + 2 + tw + 2 <= x1 else cx - r - 2 - tw
    ty = min(max(cy - size / 2, y0), y1 - size)
    draw.rectangle((tx - 1, ty, tx + tw + 1, ty + size - 2), fill=(0, 0, 0))
    draw.text((tx, ty - 1), label, fill=KNOWN, font=f)


def histogram_panel(diff: np.ndarray, d: float, hw: tuple[int, int], cmap: str, size: int) -> np.ndarray:
    """uint8 [h,w,3]: the distribution of a difference map in metres, for the slot under the RGB (as the static
    figure's): bars over +-2.5 d coloured as the difference panel colours them, its +-d range shaded, the median red."""
    h, w = hw
    v = np.asarray(diff, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    canvas = Image.new("RGB", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small = font(max(10, size - 2))
    span, bins = 2.5 * d, max(8, min(60, w // 5))
    top, bottom, x0, x1 = size + 10, h - size - 8, 6, w - 6   # under the title; over the tick labels
    sx = lambda m: x0 + (m + span) / (2 * span) * (x1 - x0)  # noqa: E731  metres -> x
    _title(draw, (0, 0), "pixels per difference", size)
    if bottom - top < 4 or x1 - x0 < bins:   # a panel too small for a plot keeps its title
        return np.asarray(canvas)
    draw.rectangle((sx(-d), top, sx(d), bottom), fill=(46, 52, 66))
    counts, edges = np.histogram(np.clip(v, -span, span), bins=bins, range=(-span, span))
    colours = (matplotlib.colormaps[cmap](np.clip((edges[:-1] + edges[1:]) / 2 / (2 * d) + 0.5, 0, 1))[:, :3] * 255)
    for c, a, b, rgb in zip(counts, edges[:-1], edges[1:], colours.astype(int)):
        if c:
            draw.rectangle((sx(a), bottom - (bottom - top) * c / counts.max(), sx(b) - 1, bottom), fill=tuple(rgb))
    if v.size:
        mx = sx(float(np.clip(np.median(v), -span, span)))
        draw.line((mx, top, mx, bottom), fill=(230, 40, 40), width=2)
    for value, label in ((-span, f"\u2212{span:g}"), (0.0, "0 m"), (span, f"+{span:g}")):
        lw = draw.textlength(label, font=small)
        draw.text((min(max(sx(value) - lw / 2, 2), w - lw - 2), bottom + 3), label, fill=(230, 230, 230), font=small)
    return np.asarray(canvas)


def _fmt(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 0.95 or v == 0 else f"{v:.2g}" if abs(v) < 0.095 else f"{v:.2f}"


def compose(panels: list[tuple[str, np.ndarray]], layout: Layout, *, marker: tuple[float, float] | None,
            depth: tuple[float, float, str], err_max: float, error_cmap: str, has_error: bool = True,
            difference: tuple[str, float] | None = None, known: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """uint8 [H,W,3] picture: `panels` ((title, uint8 [h,w,3]); "" title = blank) and the colour bars under them.

    marker (sx, sy) is the pixel's position inside a panel, drawn on every titled panel, as are the known points
    (`known`: their positions inside a panel, numbered from 1 in the order given); `depth` is
    (lo, hi, cmap) of the depth panels and err_max the +- range of the signed error panels. Each bar sits
    under the bottom row's panel it belongs to; `difference` (caption, e) of a second row's second panel
    (difference_caption, difference_range) gives that panel its own +- e bar, and the depth bar moves to the
    third column, under the predictions.
    """
    H, W = layout.size
    h, w, size = layout.h, layout.w, layout.text_size
    canvas = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, (title, rgb) in enumerate(panels):
        ox, oy = (k % COLUMNS) * w, (k // COLUMNS) * h
        canvas.paste(Image.fromarray(rgb), (ox, oy))
        if title:
            for n, (kx, ky) in enumerate(known, start=1):
                _known_ring(draw, (ox + kx, oy + ky), n, size, (ox, oy, ox + w, oy + h))
            _title(draw, (ox, oy), title, size)  # over a ring near the corner: the title stays readable
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
        caption, d = difference
        _colour_bar(canvas, (w + 8, y, 2 * w - 8), error_cmap, -d, d,
                    [(-d, f"\u2212{_fmt(d)}"), (0.0, "0"), (d, f"+{_fmt(d)} m")], caption, size)
    _colour_bar(canvas, ((2 if difference else 1) * w + 8, y, 3 * w - 8), cmap, lo, hi,
                [(lo, f"{_fmt(lo)} m"), (mid, f"{_fmt(mid)} m"), (hi, f"{_fmt(hi)} m")], "depth (m)", size)
    if has_error:
        _colour_bar(canvas, (3 * w + 8, y, 4 * w - 8), error_cmap, -e, e, signed,
                    "pred \u2212 gt: \u2212 too near, + too far", size)
    return np.asarray(canvas)


def static_figure(frame: Frame, rgb_title: str, rows: Sequence[tuple[str, np.ndarray, Mapping[str, float]]], *,
                  depth: tuple[float, float, str], err_max: float, error_cmap: str,
                  pixels: str = "its valid pixels, no crop", suptitle: str = "",
                  known: Sequence[tuple[float, float]] = (), notes: Sequence[str] = ()) -> Any:
    """matplotlib Figure of the view: per (label, prediction [H,W] m, metrics) row: prediction and its error map.

    The first row adds the RGB (titled `rgb_title`) and the ground truth (its title says the metrics' `pixels`),
    a second row the difference to the first prediction (its own symmetric range: difference_range) and, in the
    slot under the RGB, that difference's distribution. Every depth / error panel has its colour bar under it, as
    the live view does; `suptitle` heads the figure. `known`: frame pixels (x, y) of known points, ringed and
    numbered from 1 on every picture; `notes`: per row, words after the label in its prediction's title (e.g.
    ", calibrated x1.12"; the error panel then says "calibrated" too).
    """
    import matplotlib.pyplot as plt

    lo, hi, cmap = depth
    e = err_max
    # constrained layout keeps titles, colour bars and their labels apart
    extra = 0.25 * suptitle.count("\n")  # inches per further line of the heading: the panels keep their room
    height = 4.4 * len(rows) + 0.4 + extra
    fig, axes = plt.subplots(len(rows), 4, figsize=(16, height), squeeze=False, layout="constrained")
    if suptitle:  # in a strip of its own above the layout: placed by the layout, a 3-line panel title reached it
        fig.get_layout_engine().set(rect=(0, 0, 1, 1 - (0.45 + extra) / height))
        fig.suptitle(suptitle, fontsize=13, y=1 - 0.08 / height, va="top").set_in_layout(False)
    gt = np.where(frame.valid, frame.depth, np.nan)
    depth_kw, err_kw = dict(cmap=cmap, vmin=lo, vmax=hi), dict(cmap=error_cmap, vmin=-e, vmax=e)
    bars = {"depth": "depth (m)", "error": "pred \u2212 gt (m): \u2212 too near, + too far"}
    first = rows[0]
    for r, (label, pred, m) in enumerate(rows):
        scores = f"\u03b41 {m['delta1']:.3f}  AbsRel {m['abs_rel']:.3f}\nRMSE {m['rmse']:.3f} m  log10 {m['log10']:.3f}"
        if r == 0:
            left = [(rgb_title, to_rgb_uint8(frame.rgb), {}, ""), (f"ground truth\nmetrics: {pixels}", gt, depth_kw, "depth")]
        else:
            diff = first[1] - pred
            d = difference_range(diff)
            bars["diff"] = difference_caption((first[0], label), d)
            left = [("hist", diff, d), (f"{first[0]} \u2212 {label}", diff, dict(cmap=error_cmap, vmin=-d, vmax=d), "diff")]
        note = notes[r] if r < len(notes) else ""
        error = f"{label}{', calibrated' if note else ''}: pred \u2212 gt"
        cells = [*left, (f"{label}{note}\n{scores}", pred, depth_kw, "depth"), (error, pred - gt, err_kw, "error")]
        for c, cell in enumerate(cells):
            ax = axes[r][c]
            if cell[0] == "hist":
                _difference_histogram(ax, cell[1], cell[2], (first[0], label))
                continue
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
            title, image, kw, bar = cell
            im = ax.imshow(image, **kw)
            ax.set_title(title, fontsize=11)
            _known_rings(ax, known)
            if bar:  # under the picture, as wide as it (constrained layout makes room)
                cb = fig.colorbar(im, ax=ax, location="bottom", fraction=0.06, pad=0.02, aspect=30)
                cb.set_label(bars[bar], fontsize=9)
                cb.ax.tick_params(labelsize=8)
    return fig


def _known_rings(ax: Any, known: Sequence[tuple[float, float]]) -> None:
    """Known points on a picture: a ring at each one's nearest pixel, numbered from 1 as in the residual table."""
    import matplotlib.patheffects as pe

    outline = [pe.withStroke(linewidth=3.5, foreground="black")]
    for n, (x, y) in enumerate(known, start=1):
        cx, cy = np.floor(x + 0.5), np.floor(y + 0.5)
        ax.plot([cx], [cy], marker="o", markersize=9, markerfacecolor="none", markeredgewidth=1.8,
                color=np.array(KNOWN) / 255, path_effects=outline)
        ax.annotate(str(n), (cx, cy), xytext=(6, 4), textcoords="offset points", fontsize=9, fontweight="bold",
                    color=np.array(KNOWN) / 255, path_effects=outline)


def _difference_histogram(ax: Any, diff: np.ndarray, d: float, labels: tuple[str, str]) -> None:
    """The distribution of a difference map in metres, its +-d colour range shaded (the slot under the RGB)."""
    v = np.asarray(diff, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    span = 2.5 * d
    ax.hist(np.clip(v, -span, span), bins=60, range=(-span, span), color="0.35")
    ax.axvspan(-d, d, color="tab:blue", alpha=0.12, lw=0)
    ax.axvline(float(np.median(v)) if v.size else 0.0, color="tab:red", lw=1)
    ax.set_title(f"{labels[0]} \u2212 {labels[1]}: pixels per difference\n(shaded: the \u00b1{d:g} m colour range; "
                 "red: median)", fontsize=10)
    ax.set_xlabel("difference (m)", fontsize=9)
    ax.set_yticks([])
    ax.tick_params(labelsize=8)
