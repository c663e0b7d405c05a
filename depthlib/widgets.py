"""Interactive explorer of a model's predictions (ipywidgets): RGB | ground truth | prediction | error.

A frame slider, checkpoint choice (current vs previous), colormap, depth range, error range, flip
averaging, and the depth at a pixel (x/y boxes: ipywidgets' Image has no click events and the
project adds no ipympl/ipyevents dependency). Predictions are computed when first shown and kept
in an LRU cache, so returning to a frame or toggling the comparison is instant. Without a frontend
(papermill) everything still runs, and `save_static(path)` writes the current view as a PNG figure.
"""

from __future__ import annotations

import html
import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import ipywidgets as W
import numpy as np
import torch
from PIL import Image, ImageDraw

from .data.frame import Frame, FrameSource
from .errors import CheckpointError, ConfigError
from .metrics import depth_metrics
from .paths import resolve
from .viz import colorize, save_figure, to_rgb_uint8

CMAPS = ("magma_r", "viridis_r", "plasma_r", "inferno_r", "turbo_r", "jet_r", "gray")
ERROR_CMAP = "RdBu_r"  # signed error pred - gt: blue = too near, red = too far
METRICS_SHOWN = ("delta1", "abs_rel", "rmse", "log10")
NONE = "(none)"


class LRUCache:
    """Least-recently-used cache with hit/miss counters (the explorer's prediction store)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ConfigError(f"cache size must be >= 1, got {maxsize}. Fix the explorer's cache_size.")
        self.maxsize = maxsize
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Return the cached value of key, computing it with make() (and evicting the oldest) on a miss."""
        if key in self._d:
            self.hits += 1
            self._d.move_to_end(key)
            return self._d[key]
        self.misses += 1
        value = make()
        self._d[key] = value
        if len(self._d) > self.maxsize:
            self._d.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)  # fast: the slider waits on it
    return buf.getvalue()


class Explorer:
    """Browse `source`'s frames with predictions of one or two checkpoints (labels -> paths)."""

    def __init__(self, source: FrameSource, checkpoints: Mapping[str, str | os.PathLike[str]], *,
                 current: str | None = None, previous: str | None = None, frame: int = 0,
                 cmap: str = "magma_r", depth_range: tuple[float, float] = (0.0, 10.0), err_max: float = 1.0,
                 flip_average: bool = True, device: str = "auto",
                 panel_width: int = 320, cache_size: int = 64) -> None:
        if len(source) == 0:
            raise ConfigError(f"{source.path}: the data source has no frames. Fix the data path.")
        if not checkpoints:
            raise ConfigError("Explorer needs at least one checkpoint (label -> path). Fix the `checkpoints` parameter.")
        self.paths = {str(k): resolve(v) for k, v in checkpoints.items()}
        for label, p in self.paths.items():
            if not p.is_file():
                raise CheckpointError(f"{p}: checkpoint {label!r} does not exist. Fix: run the training notebooks "
                                      "(02_train, 03_finetune) first, or set the checkpoint paths in the parameters.")
        labels = list(self.paths)
        current = current or labels[0]
        for name, v in (("current", current), ("previous", previous)):
            if v is not None and v != NONE and v not in self.paths:
                raise ConfigError(f"{name}={v!r} is not one of the checkpoints {labels}.")
        if cmap not in CMAPS:
            raise ConfigError(f"colormap {cmap!r} is not offered; use one of {CMAPS}.")
        if not 0 <= int(frame) < len(source):
            raise ConfigError(f"frame {frame} is out of range: {source.path} has {len(source)} frames (0..{len(source) - 1}).")
        from .distributed import resolve_device

        self.source = source
        self.device = resolve_device(device)
        self.panel_width = int(panel_width)
        self.predictions = LRUCache(cache_size)
        self._frames = LRUCache(8)
        self._models: dict[str, torch.nn.Module] = {}
        names = list(source.names)
        lo, hi = float(depth_range[0]), float(depth_range[1])

        self.frame = W.IntSlider(value=int(frame), min=0, max=len(source) - 1, description="frame",
                                 continuous_update=False)  # predict on release, not on every step of a drag
        self.frame_name = W.Label(names[int(frame)])
        self.current = W.Dropdown(options=labels, value=current, description="current")
        self.previous = W.Dropdown(options=[NONE, *labels], value=previous or NONE, description="previous")
        self.cmap = W.Dropdown(options=list(CMAPS), value=cmap, description="colormap")
        self.depth_range = W.FloatRangeSlider(value=(lo, hi), min=0.0, max=max(hi, 10.0), step=0.1,
                                              description="depth (m)", continuous_update=False)
        self.err_max = W.BoundedFloatText(value=float(err_max), min=0.01, max=20.0, step=0.1, description="error ± (m)")
        self.flip = W.Checkbox(value=bool(flip_average), description="flip averaging")
        small = W.Layout(width="180px")
        self.x = W.BoundedIntText(value=0, min=0, max=0, description="x (px)", layout=small)
        self.y = W.BoundedIntText(value=0, min=0, max=0, description="y (px)", layout=small)
        self.image = W.Image(format="png", layout=W.Layout(width="100%", max_width=f"{4 * self.panel_width}px"))
        self.readout = W.HTML()
        self.table = W.HTML()
        self._names = names
        self._quiet = False
        self._set_pixel_bounds(self._frame(self.frame.value), centre=True)
        for w in (self.frame, self.current, self.previous, self.cmap, self.depth_range, self.err_max,
                  self.flip, self.x, self.y):
            w.observe(self._changed, names="value")
        self.widget = W.VBox([
            W.HBox([self.frame, self.frame_name]),
            W.HBox([self.current, self.previous, self.flip]),
            W.HBox([self.cmap, self.depth_range, self.err_max]),
            W.HBox([self.x, self.y, self.readout]),
            self.image, self.table,
        ])
        self.refresh()

    # --- data and predictions -------------------------------------------------------------------
    def _frame(self, i: int) -> Frame:
        return self._frames.get(i, lambda: self.source[i])

    def _model(self, label: str) -> torch.nn.Module:
        if label not in self._models:
            from .workbook import inference_model  # replays the training crop/resize on whole frames

            self._models[label] = inference_model(str(self.paths[label]), device=str(self.device))
        return self._models[label]

    def prediction(self, label: str, i: int, flip_average: bool | None = None) -> np.ndarray:
        """Depth in metres float32 [H,W] of frame i by checkpoint `label` (cached)."""
        flip = self.flip.value if flip_average is None else bool(flip_average)
        return self.predictions.get((label, i, flip), lambda: self._predict(label, i, flip))

    def _predict(self, label: str, i: int, flip: bool) -> np.ndarray:
        from .predict import predict

        rgb = self._frame(i).rgb
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float().div_(255.0)
        out = predict(self._model(label), x.to(self.device), flip_average=flip, out_size=rgb.shape[:2])
        return out[0, 0].float().cpu().numpy()

    def metrics(self, label: str, i: int) -> dict[str, float]:
        """depth_metrics of checkpoint `label` on frame i over its valid pixels, no crop (cached)."""
        flip = bool(self.flip.value)

        def make() -> dict[str, float]:
            f = self._frame(i)
            t = lambda a: torch.from_numpy(np.array(a))[None, None]  # noqa: E731
            return depth_metrics(pred=t(self.prediction(label, i, flip)), target=t(f.depth), valid=t(f.valid))

        return self.predictions.get(("metrics", label, i, flip), make)

    def labels_shown(self) -> list[str]:
        """Checkpoint labels on screen: current, then previous if chosen and different."""
        out = [self.current.value]
        if self.previous.value not in (NONE, self.current.value):
            out.append(self.previous.value)
        return out

    # --- rendering ------------------------------------------------------------------------------
    def _set_pixel_bounds(self, f: Frame, centre: bool = False) -> None:
        h, w = f.depth.shape
        self._quiet = True  # bounds may clamp x/y; one refresh afterwards is enough
        try:
            self.x.max, self.y.max = w - 1, h - 1
            if centre:
                self.x.value, self.y.value = w // 2, h // 2
        finally:
            self._quiet = False

    def panel_size(self) -> tuple[int, int]:
        """(h, w) of one displayed panel: panel_width wide, the frame's aspect ratio."""
        H, Wd = self._frame(self.frame.value).depth.shape
        return max(1, round(H * self.panel_width / Wd)), self.panel_width

    def panels(self) -> list[tuple[str, np.ndarray]]:
        """(title, uint8 [h,w,3]) panels of the current view at panel size, four per row."""
        i = self.frame.value
        f = self._frame(i)
        h, w = self.panel_size()
        lo, hi = self.depth_range.value
        e = float(self.err_max.value)
        # Colourise at display size: 4x fewer pixels than the frame, so a cached frame shows at once.
        small = lambda a: np.asarray(Image.fromarray(a.astype(np.float32)).resize((w, h), Image.BILINEAR))  # noqa: E731
        valid = np.asarray(Image.fromarray(f.valid).resize((w, h), Image.NEAREST))
        gt = small(f.depth)
        out = [("RGB", np.asarray(Image.fromarray(f.rgb).resize((w, h), Image.BILINEAR))),
               ("ground truth", colorize(gt, lo, hi, self.cmap.value, valid=valid))]
        first = None
        for label in self.labels_shown():
            p = small(self.prediction(label, i))
            if first is None:
                first = (label, p)
            else:  # second row: how the two checkpoints differ, under their own panels
                out += [("", np.full((h, w, 3), 32, np.uint8)),
                        (f"{first[0]} - {label}", colorize(first[1] - p, -e, e, ERROR_CMAP))]
            out.append((f"{label}", colorize(p, lo, hi, self.cmap.value)))
            out.append((f"{label}: pred - gt", colorize(p - gt, -e, e, ERROR_CMAP, valid=valid)))
        return out

    def render(self) -> np.ndarray:
        """The composite view uint8 [rows*h, 4*w, 3] with labels and the pixel marker."""
        H, Wd = self._frame(self.frame.value).depth.shape
        h, w = self.panel_size()
        sx, sy = (self.x.value + 0.5) * w / Wd, (self.y.value + 0.5) * h / H
        panels = self.panels()
        rows = (len(panels) + 3) // 4
        canvas = Image.new("RGB", (4 * w, rows * h), (32, 32, 32))
        draw = ImageDraw.Draw(canvas)
        for k, (title, rgb) in enumerate(panels):
            ox, oy = (k % 4) * w, (k // 4) * h
            canvas.paste(Image.fromarray(rgb), (ox, oy))
            if title:
                draw.rectangle((ox, oy, ox + 6 * len(title) + 6, oy + 13), fill=(0, 0, 0))
                draw.text((ox + 3, oy + 1), title, fill=(255, 255, 255))
                cx, cy = ox + sx, oy + sy
                draw.line((cx - 6, cy, cx + 6, cy), fill=(0, 255, 0))
                draw.line((cx, cy - 6, cx, cy + 6), fill=(0, 255, 0))
        return np.asarray(canvas)

    def pixel_text(self) -> str:
        """HTML of the depths at pixel (x, y): ground truth and every shown prediction."""
        i, x, y = self.frame.value, self.x.value, self.y.value
        f = self._frame(i)
        gt = f"{f.depth[y, x]:.3f} m" if f.valid[y, x] else "hole"
        parts = [f"<b>({x}, {y})</b> ground truth {gt}"]
        parts += [f"{html.escape(lb)} {self.prediction(lb, i)[y, x]:.3f} m" for lb in self.labels_shown()]
        return " &nbsp;|&nbsp; ".join(parts)

    def metrics_html(self) -> str:
        """HTML table of METRICS_SHOWN for each shown checkpoint on the current frame."""
        head = "".join(f"<th style='padding:0 8px'>{m}</th>" for m in METRICS_SHOWN)
        rows = []
        for lb in self.labels_shown():
            m = self.metrics(lb, self.frame.value)
            cells = "".join(f"<td style='padding:0 8px'>{m[k]:.4f}</td>" for k in METRICS_SHOWN)
            rows.append(f"<tr><td>{html.escape(lb)}</td>{cells}</tr>")
        name = html.escape(self._names[self.frame.value])
        return f"<table><caption>frame {name}, valid pixels, no crop</caption><tr><th></th>{head}</tr>{''.join(rows)}</table>"

    def refresh(self) -> None:
        """Recompute the displayed image, pixel readout and metrics from the widget values."""
        self.image.value = _png(self.render())
        self.readout.value = self.pixel_text()
        self.table.value = self.metrics_html()

    def _changed(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        if change["owner"] is self.frame:
            f = self._frame(self.frame.value)
            self.frame_name.value = self._names[self.frame.value]
            self._set_pixel_bounds(f)
        self.refresh()

    # --- programmatic use -----------------------------------------------------------------------
    def show(self, i: int) -> bytes:
        """Move the slider to frame i (as a user would) and return the displayed PNG bytes."""
        self.frame.value = int(i)
        return bytes(self.image.value)

    def save_static(self, path: str | os.PathLike[str], dpi: int = 100) -> Path:
        """Write the current view (panels, colour bars, metrics) as a PNG figure, atomically."""
        import matplotlib.pyplot as plt

        i = self.frame.value
        f = self._frame(i)
        lo, hi = self.depth_range.value
        e = float(self.err_max.value)
        labels = self.labels_shown()
        fig, axes = plt.subplots(len(labels), 4, figsize=(13, 2.8 * len(labels)), squeeze=False)
        gt = np.where(f.valid, f.depth, np.nan)
        depth_kw, err_kw = dict(cmap=self.cmap.value, vmin=lo, vmax=hi), dict(cmap=ERROR_CMAP, vmin=-e, vmax=e)
        try:
            for r, lb in enumerate(labels):
                p = self.prediction(lb, i)
                m = self.metrics(lb, i)
                left = ([(f"RGB {self._names[i]}", to_rgb_uint8(f.rgb), {}), ("ground truth", gt, depth_kw)] if r == 0
                        else [None, (f"{labels[0]} - {lb} (m)", self.prediction(labels[0], i) - p, err_kw)])
                for c, cell in enumerate([*left, (lb, p, depth_kw), (f"{lb}: pred - gt (m)", p - gt, err_kw)]):
                    ax = axes[r][c]
                    ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
                    if cell is None:
                        ax.set_axis_off()
                        continue
                    im = ax.imshow(cell[1], **cell[2])
                    ax.set_title(cell[0], fontsize=9)
                    if cell[2]:
                        fig.colorbar(im, ax=ax, fraction=0.035)
                axes[r][2].set_xlabel(", ".join(f"{k} {m[k]:.3f}" for k in METRICS_SHOWN), fontsize=8)
            return save_figure(fig, resolve(path), dpi=dpi)
        finally:
            plt.close(fig)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def explore(*, source: str, path: str, split: str = "test", current: str | os.PathLike[str],
            previous: str | os.PathLike[str] = "", **kwargs: Any) -> Explorer:
    """Explorer over `split` of data source `source` at `path`: checkpoint `current` vs `previous` (optional)."""
    from .data import open_source

    checkpoints = {"current": current, **({"previous": previous} if previous else {})}
    return Explorer(open_source(source, path, split=split), checkpoints, previous="previous" if previous else None,
                    **kwargs)
