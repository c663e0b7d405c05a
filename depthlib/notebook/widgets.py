"""Interactive explorer of a model's predictions (ipywidgets): RGB | ground truth | prediction | error.

A frame slider (with the frame's split: train / val / test), checkpoint choice (current vs previous),
colormap, depth range (by default each frame's ground-truth range), error range, flip averaging,
colour bars, and the depth at a pixel: click the picture, or type x / y. ipywidgets' Image has no
click events and the project adds no ipympl / ipyevents / anywidget dependency (nor a JupyterLab
extension), so a small script in an HTML widget forwards a click's position to a hidden Text
widget; this works in JupyterLab 4 and Notebook 7 as installed. Predictions are computed when first
shown and kept in an LRU cache, so returning to a frame or toggling the comparison is instant.
Without a frontend (papermill) everything still runs, and `save_static(path)` writes the current
view as a PNG figure. The metrics count every valid pixel, no crop, or with `protocol` (e.g. "densedepth")
the pixels 04 evaluates, computed as depthlib.evaluation.evaluate does, so a frame's numbers are the ones 04 gives it.
Distances measured at pixels (typed at the clicked pixel, or `add_known(x, y, metres)`) calibrate the shown
predictions as `predict --known` does: depthlib.notebook.known_points.
"""

from __future__ import annotations

import html
import io
import itertools
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import ipywidgets as W
import numpy as np
import torch
from PIL import Image

from ..core.errors import CheckpointError, ConfigError
from ..core.notices import notice
from ..core.paths import resolve
from ..data.frame import Frame, FrameSource
from ..evaluation.metrics import depth_metrics, metric_sums, metrics_from_sums
from ..evaluation.protocols import Protocol, get_protocol
from ..evaluation.report import LABELS
from ..figures.explorer import (COLUMNS, Layout, compose, difference_caption, difference_range, ground_truth_range,
                                histogram_panel, split_text, static_figure)
from ..figures.viz import colorize, save_figure, short_name
from ..inference.calibrate import Calibration
from .known_points import ExplorerKnownPoints, KnownPoints, calibrated_words, panel_title, summary

CMAPS = ("magma_r", "viridis_r", "plasma_r", "inferno_r", "turbo_r", "jet_r", "gray")
ERROR_CMAP = "RdBu_r"  # signed error pred - gt: blue = too near, red = too far
METRICS_SHOWN = ("delta1", "abs_rel", "rmse", "log10")
NONE = "(none)"
NOWRAP = "<span style='white-space:nowrap'>{}</span>"
# A line that never wraps: wider than the notebook (JupyterLab with the file browser open, a 1000 px window), it
# scrolls sideways inside its widget (ONE_LINE: the widget's layout) instead of breaking or being cut off.
ONE_LINE = dict(width="100%", overflow="auto")
RANGE_WIDTH = "440px"  # the depth-range slider: its track and its "lo – hi" value box both readable
_IDS = itertools.count()

# Runs once per rendered view (an <img> that fails to load): finds this explorer's picture and hidden
# click box, and on a click writes "fx,fy,n" (fractions of the picture, a counter) into the box.
_CLICK_JS = (
    "(function(el){{var tries=0;function hook(){{var root=el.closest('.{root}');"
    "var img=root&&root.querySelector('.widget-image');var box=root&&root.querySelector('.{box} input');"
    "if(!img||!box){{if(tries++<100)setTimeout(hook,100);return;}}"
    "if(img.dataset.depthlibClick)return;img.dataset.depthlibClick='1';img.style.cursor='crosshair';var n=0;"
    "img.addEventListener('click',function(e){{var r=img.getBoundingClientRect();"
    "box.value=((e.clientX-r.left)/r.width).toFixed(5)+','+((e.clientY-r.top)/r.height).toFixed(5)+','+(++n);"
    "box.dispatchEvent(new Event('change',{{bubbles:true}}));}});}}hook();}})(this)"
)


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


class Explorer(ExplorerKnownPoints):
    """Browse `source`'s frames with predictions of one or two checkpoints (labels -> paths).

    depth_range (lo, hi) metres fixes the depth colour scale; None or empty: each frame's ground-truth range.
    protocol: the metrics' pixels. "" (default): every valid pixel, no crop; a protocol name (e.g. "densedepth",
    as 04 evaluates): its crop, masks and clamps, applied as depthlib.evaluation.evaluate does, so a frame's numbers are
    the ones 04 gives that frame.
    """

    def __init__(self, source: FrameSource, checkpoints: Mapping[str, str | os.PathLike[str]], *,
                 current: str | None = None, previous: str | None = None, frame: int = 0,
                 cmap: str = "magma_r", depth_range: tuple[float, float] | list[float] | None = None, err_max: float = 1.0,
                 flip_average: bool = True, device: str = "auto", protocol: str = "",
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
        from ..core.distributed import resolve_device

        self.protocol: Protocol | None = get_protocol(protocol) if protocol else None
        self.source = source
        self.device = resolve_device(device)
        self.panel_width = int(panel_width)
        self.predictions = LRUCache(cache_size)
        self._frames = LRUCache(8)
        self._models: dict[str, torch.nn.Module] = {}
        self._said_unknown_fx = False  # the notice that a canonical model gets a frame of unknown focal length, once
        names = list(source.names)
        fixed = depth_range is not None and len(depth_range) > 0
        if fixed and (len(depth_range) != 2 or not float(depth_range[0]) < float(depth_range[1])):  # type: ignore[arg-type]
            raise ConfigError(f"depth_range must be [lo, hi] metres with lo < hi, or empty for each frame's "
                              f"ground-truth range; got {depth_range!r}.")
        lo, hi = (float(depth_range[0]), float(depth_range[1])) if fixed else ground_truth_range(self._frame(int(frame)))  # type: ignore[index]

        self.frame = W.IntSlider(value=int(frame), min=0, max=len(source) - 1, description="frame",
                                 continuous_update=False)  # predict on release, not on every step of a drag
        self.frame_name = W.Label(names[int(frame)])
        self.split = W.HTML()
        self.current = W.Dropdown(options=labels, value=current, description="current")
        self.previous = W.Dropdown(options=[NONE, *labels], value=previous or NONE, description="previous")
        self.cmap = W.Dropdown(options=list(CMAPS), value=cmap, description="colormap")
        self.depth_range = W.FloatRangeSlider(value=(lo, hi), min=0.0, max=max(hi, 10.0), step=0.1,
                                              description="depth (m)", continuous_update=False, readout_format=".1f",
                                              layout=W.Layout(width=RANGE_WIDTH, min_width=RANGE_WIDTH))
        self.auto_range = W.Checkbox(value=not fixed, description="range of each frame's ground truth",
                                     layout=W.Layout(width="auto"))
        self.err_max = W.BoundedFloatText(value=float(err_max), min=0.01, max=20.0, step=0.1, description="error ± (m)")
        self.flip = W.Checkbox(value=bool(flip_average), description="flip averaging")
        small = W.Layout(width="180px")
        self.x = W.BoundedIntText(value=0, min=0, max=0, description="x (px)", layout=small)
        self.y = W.BoundedIntText(value=0, min=0, max=0, description="y (px)", layout=small)
        self.known = KnownPoints()  # distances measured at pixels, per frame: the shown predictions are calibrated
        self.known.add.on_click(lambda _: self._add_typed())
        self.known.clear.on_click(lambda _: self.clear_known())
        self.image = W.Image(format="png", layout=W.Layout(width="100%", max_width=f"{4 * self.panel_width}px"))
        self.readout = W.HTML(layout=W.Layout(**ONE_LINE))
        self.table = W.HTML(layout=W.Layout(**ONE_LINE))
        root, box = f"depthlib-explorer-{next(_IDS)}", "depthlib-click"
        self.clicks = W.Text(value="", layout=W.Layout(display="none"))  # "fx,fy,n" from a click on the picture
        self.clicks.add_class(box)
        click_js = html.escape(_CLICK_JS.format(root=root, box=box), quote=True)
        self._click_bridge = W.HTML(f'<img src="data:image/gif;base64,AA==" alt="" style="display:none" onerror="{click_js}">')
        self._names = names
        splits = getattr(source, "splits", None)  # prepared files label every frame train / val / test
        self._splits: list[str] | None = None if splits is None else list(splits)
        self._quiet = False
        self._set_pixel_bounds(self._frame(self.frame.value), centre=True)
        for w in (self.frame, self.current, self.previous, self.cmap, self.depth_range, self.auto_range, self.err_max,
                  self.flip, self.x, self.y, self.known.use):
            w.observe(self._changed, names="value")
        self.clicks.observe(self._clicked, names="value")
        # Rows wrap between controls rather than squeezing them; the readout has a row of its own.
        row = lambda *ws: W.HBox(list(ws), layout=W.Layout(flex_flow="row wrap"))  # noqa: E731
        self.widget = W.VBox([
            row(self.frame, self.frame_name, self.split),
            row(self.current, self.previous, self.flip),
            row(self.cmap, self.depth_range, self.auto_range),
            row(self.err_max, self.x, self.y), self.known.controls, self.known.message,
            self.readout, self.image, self.table, self.known.residuals, self.clicks, self._click_bridge,
        ])
        self.widget.add_class(root)
        self.refresh()

    # --- data and predictions -------------------------------------------------------------------
    def _frame(self, i: int) -> Frame:
        return self._frames.get(i, lambda: self.source[i])

    def _model(self, label: str) -> torch.nn.Module:
        if label not in self._models:
            from .workbook import inference_model  # replays the training crop/resize on whole frames

            # the source's frames: without NYU's border crop when they have no such border (pairs)
            self._models[label] = inference_model(str(self.paths[label]), device=str(self.device), frames=self.source)
        return self._models[label]

    def prediction(self, label: str, i: int, flip_average: bool | None = None) -> np.ndarray:
        """Depth in metres float32 [H,W] of frame i by checkpoint `label` (cached)."""
        flip = self.flip.value if flip_average is None else bool(flip_average)
        return self.predictions.get((label, i, flip), lambda: self._predict(label, i, flip))

    def _predict(self, label: str, i: int, flip: bool) -> np.ndarray:
        from ..models.predict import predict

        f, model = self._frame(i), self._model(label)
        if f.fx is None and getattr(model, "canonical_fx", None) is not None and not self._said_unknown_fx:
            notice(f"{self.source.path}: frame {f.name!r} has no focal length: {label}'s depth is its canonical "
                   "camera's, not rescaled (the same for any other such frame).")
            self._said_unknown_fx = True
        x = torch.from_numpy(np.array(f.rgb)).permute(2, 0, 1)[None].float().div_(255.0)
        # the frame's own focal length: a camera_space="canonical" model gives metres for its camera
        out = predict(model, x.to(self.device), flip_average=flip, out_size=f.rgb.shape[:2], fx=f.fx)
        return out[0, 0].float().cpu().numpy()

    def metrics(self, label: str, i: int, calibrated: bool = True) -> dict[str, float]:
        """Metrics of checkpoint `label` on frame i over `pixels_text()`'s pixels (cached): of the prediction as
        shown, calibrated to the frame's known points when it has any (calibrated=False: as predicted)."""
        flip = bool(self.flip.value)
        cal = self.calibration(label, i) if calibrated else None

        def make() -> dict[str, float]:
            f = self._frame(i)
            if self.protocol is not None:
                return self._protocol_metrics(label, f, flip, cal)
            t = lambda a: torch.from_numpy(np.array(a))[None, None]  # noqa: E731
            pred = self.prediction(label, i, flip) if cal is None else cal.depth
            return depth_metrics(pred=t(pred), target=t(f.depth), valid=t(f.valid))

        points = self.known.active(i) if cal is not None else ()
        return self.predictions.get(("metrics", label, i, flip, points), make)

    def _protocol_metrics(self, label: str, f: Frame, flip: bool, cal: Calibration | None = None) -> dict[str, float]:
        """The metrics depthlib.evaluation.evaluate records for frame `f` under self.protocol (its per-image record)."""
        from ..data.frame import frame_to_sample
        from ..evaluation.evaluate import prepare_batch
        from ..models.fastpath import as_fast

        s = frame_to_sample(f)
        batch = {k: s[k][None] for k in ("image", "depth", "valid")} | {"fx": torch.tensor([s["fx"]])}
        pred, target, valid = prepare_batch(as_fast(self._model(label)), batch, self.protocol, flip_average=flip,
                                            alignment="none", device=self.device, source=f.name)
        if cal is not None:  # the fit to the known points maps each kept depth, then the protocol's clamp, as its
            # alignment is applied (depthlib.evaluation.protocols.Protocol.apply)
            pred = torch.from_numpy(cal.fit.apply(pred.cpu().numpy())).to(pred.device).clamp(*self.protocol.pred_range)
        return metrics_from_sums(metric_sums(pred=pred, target=target, valid=valid)[0])

    def pixels_text(self, short: bool = False) -> str:
        """Which pixels the metrics use: "valid pixels, no crop", or the protocol's (short: two lines, its crop's size)."""
        p = self.protocol
        if p is None:
            return "valid pixels, no crop"
        if p.crop is None or p.frame_size is None:
            crop = "no crop"
        elif short:
            crop = f"crop {p.crop_size[1]}x{p.crop_size[0]}"  # type: ignore[index]
        else:
            t, b, left, r = p.crop
            crop = f"crop rows {t}-{b - 1}, cols {left}-{r - 1} of {p.frame_size[1]}x{p.frame_size[0]}"
        return f"{p.name} protocol\n({crop}, as 04 evaluates)" if short else f"protocol {p.name} ({crop}), as 04 evaluates"

    def split_of(self, i: int) -> str:
        """Frame i's split in words ("test split: held out"), or that the source records none."""
        return split_text(None if self._splits is None else self._splits[i])

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
        """(title, uint8 [h,w,3]) panels of the current view at panel size, four per row ("" title: blank)."""
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
            p, cal = small(self.shown_prediction(label, i)), self.calibration(label, i)
            if first is None:
                first = (label, p)
            else:  # second row: how the two checkpoints differ, in their difference's own range (difference_max:
                # centimetres vanish in +-err_max), its distribution under the RGB (layout().blank: no pixel to click)
                d = self.difference_max()
                out += [("", histogram_panel(first[1] - p, d, (h, w), ERROR_CMAP, self.layout().text_size)),
                        (f"{first[0]} - {label}", colorize(first[1] - p, -d, d, ERROR_CMAP))]
            out.append((label if cal is None else panel_title(label, cal), colorize(p, lo, hi, self.cmap.value)))
            error = f"{label}{'' if cal is None else ', calibrated'}: pred - gt"
            out.append((error, colorize(p - gt, -e, e, ERROR_CMAP, valid=valid)))
        return out

    def difference_max(self) -> float:
        """Half-width in metres of the "current - previous" panel's colour range on the current frame
        (figures.explorer.difference_range: 98th percentile of |difference|); 0 with one checkpoint shown."""
        shown = self.labels_shown()
        if len(shown) < 2:
            return 0.0
        i = self.frame.value
        return difference_range(self.shown_prediction(shown[0], i) - self.shown_prediction(shown[1], i))

    def layout(self) -> Layout:
        """Geometry of the displayed picture (panel size, rows, colour-bar strip) for the current view."""
        h, w = self.panel_size()
        H, Wd = self._frame(self.frame.value).depth.shape
        rows = len(self.labels_shown())
        return Layout(h=h, w=w, rows=rows, frame_hw=(H, Wd), blank=(COLUMNS,) if rows > 1 else ())

    def render(self) -> np.ndarray:
        """The composite view uint8 [rows*h + colour bars, 4*w, 3] with titles and the pixel marker."""
        lay = self.layout()
        H, Wd = lay.frame_hw
        marker = ((self.x.value + 0.5) * lay.w / Wd, (self.y.value + 0.5) * lay.h / H)
        known = [((np.floor(p.x + 0.5) + 0.5) * lay.w / Wd, (np.floor(p.y + 0.5) + 0.5) * lay.h / H)
                 for p in self.known_points()]  # each at its nearest pixel's centre, as calibrate reads it
        lo, hi = self.depth_range.value
        shown = self.labels_shown()
        d = self.difference_max()
        difference = (difference_caption(shown, d, short=True), d) if len(shown) > 1 else None
        return compose(self.panels(), lay, marker=marker, depth=(lo, hi, self.cmap.value),
                       err_max=float(self.err_max.value), error_cmap=ERROR_CMAP, difference=difference, known=known)

    def pixel_text(self) -> str:
        """HTML of the depths at pixel (x, y): ground truth and every shown prediction, each entry on one line."""
        i, x, y = self.frame.value, self.x.value, self.y.value
        f = self._frame(i)
        gt = f"{f.depth[y, x]:.3f} m" if f.valid[y, x] else "hole"
        parts = [f"<b>({x}, {y})</b> ground truth {gt}"]
        for lb in self.labels_shown():
            cal, raw = self.calibration(lb, i), self.prediction(lb, i)[y, x]
            parts.append(f"{html.escape(lb)} {raw:.3f} m" if cal is None else
                         f"{html.escape(lb)}, calibrated {cal.depth[y, x]:.3f} m (predicted {raw:.3f} m)")
        # one line: never broken between a label and its value ("previous" / "1.775 m"), nor between entries
        return NOWRAP.format(" | ".join(parts))

    def metrics_html(self) -> str:
        """HTML table of METRICS_SHOWN for each shown checkpoint on the current frame."""
        head = "".join(f"<th style='padding:0 8px'>{html.escape(LABELS[m])}</th>" for m in METRICS_SHOWN)
        rows = []
        for lb in self.labels_shown():
            n = len(self.known.active(self.frame.value)) if self.calibration(lb) is not None else 0
            # calibrated: that row first and labelled, then the prediction as it came, to compare
            versions = [(f"{lb}, calibrated ({n} points)", True), (f"{lb}, as predicted", False)] if n else [(lb, True)]
            for name, calibrated in versions:
                m = self.metrics(lb, self.frame.value, calibrated)
                cells = "".join(f"<td style='padding:0 8px'>{m[k]:.4f}</td>" for k in METRICS_SHOWN)
                rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
        name = html.escape(self._names[self.frame.value])
        split = html.escape(self.split_of(self.frame.value))
        pixels = html.escape(self.pixels_text())
        caption = "<caption style='white-space:nowrap;text-align:left'>"  # one line: the widget scrolls (ONE_LINE)
        return (f"<table>{caption}frame {name} · {split} · metrics: {pixels}</caption><tr><th></th>{head}</tr>"
                f"{''.join(rows)}</table>")

    def refresh(self) -> None:
        """Recompute the picture, pixel readout and metrics from the widget values, then show them together."""
        # Everything is computed before anything is shown, so the numbers never trail the picture.
        picture, readout, table = _png(self.render()), self.pixel_text(), self.metrics_html()
        i = self.frame.value
        cals = {lb: c for lb in self.labels_shown() if (c := self._calibrated(lb, i)) is not None}
        self.known.show(cals, self._names[i])
        self.frame_name.value = self._names[self.frame.value]
        self.split.value = f"<i>{html.escape(self.split_of(self.frame.value))}</i>"
        self.table.value, self.readout.value, self.image.value = table, readout, picture

    def _quietly(self, **values: Any) -> None:
        """Set widget values (name -> value) without each one triggering a refresh."""
        self._quiet = True
        try:
            for name, value in values.items():
                setattr(getattr(self, name), "value", value)
        finally:
            self._quiet = False

    def _changed(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        owner = change["owner"]
        if owner is self.frame:
            self._set_pixel_bounds(self._frame(self.frame.value))
        if owner is self.depth_range:
            self._quietly(auto_range=False)  # a range the user chose stays until they tick the box again
        if self.auto_range.value and owner in (self.frame, self.auto_range):
            lo, hi = ground_truth_range(self._frame(self.frame.value))
            self._quiet = True
            try:
                self.depth_range.max = max(self.depth_range.max, hi)
                self.depth_range.value = (lo, hi)
            finally:
                self._quiet = False
        self.refresh()

    def _clicked(self, change: dict[str, Any]) -> None:
        """A click on the picture ("fx,fy,n" from the page): read the depth at the frame pixel under it."""
        try:
            fx, fy = (float(v) for v in str(change["new"]).split(",")[:2])
        except ValueError:
            return  # not a click position (the box is hidden; nothing else writes to it)
        at = self.layout().pixel_at(fx, fy)
        if at is None:  # on the colour bars
            return
        self._quietly(x=at[0], y=at[1])
        self.refresh()

    # --- programmatic use -----------------------------------------------------------------------
    def show(self, i: int) -> bytes:
        """Move the slider to frame i (as a user would) and return the displayed PNG bytes."""
        self.frame.value = int(i)
        return bytes(self.image.value)

    def save_static(self, path: str | os.PathLike[str], dpi: int = 100) -> Path:
        """Write the current view (panels with colour bars, metrics in the titles) as a PNG figure, atomically."""
        import matplotlib.pyplot as plt

        i = self.frame.value
        f = self._frame(i)
        shown = self.labels_shown()
        cals = {lb: self.calibration(lb, i) for lb in shown}
        rows = [(lb, self.shown_prediction(lb, i), self.metrics(lb, i)) for lb in shown]
        heading = (f"explorer: frame {short_name(self._names[i], 60)}, "
                   + (f"{shown[0]} and {shown[1]} (difference: {shown[0]} \u2212 {shown[1]})" if len(shown) > 1
                      else shown[0]))
        points = self.known_points()
        used = {lb: c for lb, c in cals.items() if c is not None}
        if used:
            heading += f"\n{summary(used)} (the numbered rings)"
        elif points:
            heading += f"\n{len(points)} known points (the numbered rings), calibration off"
        fig = static_figure(f, f"RGB {short_name(self._names[i], 40)}\n{self.split_of(i)}", rows,
                            depth=(*self.depth_range.value, self.cmap.value), err_max=float(self.err_max.value),
                            error_cmap=ERROR_CMAP, pixels=self.pixels_text(short=True), suptitle=heading,
                            known=[(p.x, p.y) for p in points],
                            notes=["" if c is None else ", " + calibrated_words(c) for c in cals.values()])
        try:
            return save_figure(fig, resolve(path), dpi=dpi)
        finally:
            plt.close(fig)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def explore(*, source: str, path: str, split: str = "test", current: str | os.PathLike[str],
            previous: str | os.PathLike[str] = "", options: dict[str, Any] | None = None,
            **kwargs: Any) -> Explorer:
    """Explorer over `split` of data source `source` at `path`: checkpoint `current` vs `previous` (optional).

    options: the reader's own settings (e.g. {"depth_scale": 0.001} for `pairs`). `split` goes to readers that
    have splits; the others (bts, pairs, raw_kinect, nyu_test_npy) show every frame at `path`.
    """
    from ..data import open_source
    from ..data.registry import source_options

    opts = dict(options or {})
    if "split" in source_options(source):
        opts.setdefault("split", split)
    checkpoints = {"current": current, **({"previous": previous} if previous else {})}
    return Explorer(open_source(source, path, **opts), checkpoints, previous="previous" if previous else None,
                    **kwargs)
