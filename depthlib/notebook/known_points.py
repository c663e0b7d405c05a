"""Known distances in the explorer (issue #22 step 4): click a pixel, type the distance measured there, add it.

The points are kept per frame; with points on a frame, each shown prediction is rescaled by
depthlib.inference.calibrate.calibrate, the code `predict --known` runs, so the same map and points give the same
calibrated depth and the same residual table (`residual_table`, printed by predict, shown here preformatted).
A point reads the map at its nearest pixel, (x, y) of the frame as shown. This module holds the controls, the
points and the text; depthlib.notebook.widgets.Explorer calls it where it predicts and draws.
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable, Mapping

import ipywidgets as W
import numpy as np

from ..core.errors import ConfigError, DataError, DepthlibError
from ..inference.calibrate import Calibration, KnownPoint, calibrate, residual_table

REFUSED = "<span style='color:#b00020'>{}</span>"


def parse_metres(value: str | float) -> float:
    """A distance typed in the box (or passed) -> metres; ConfigError saying why when not a positive number."""
    text = str(value).strip()
    fix = "Fix: type the distance measured at the pixel in metres, e.g. 2.35."
    try:
        m = float(text)
    except ValueError:
        raise ConfigError(f"distance {text!r} is not a number of metres. {fix}") from None
    if not math.isfinite(m) or not m > 0:
        raise ConfigError(f"the distance must be positive metres, got {text!r}. {fix}")
    return m


def fit_words(cal: Calibration) -> str:
    """'scale 1.1234' with the second parameter when the fit has one (Fit.describe without its space)."""
    fit = cal.fit
    words = f"scale {fit.scale:.4f}"
    if fit.shift != 0.0:
        words += f", shift {fit.shift:+.4f} 1/m"
    if fit.power != 1.0:
        words += f", power {fit.power:.4f}"
    return words


def calibrated_words(cal: Calibration) -> str:
    """'calibrated x1.12' (' +shift' or ' ^power' when the fit has a second parameter): short for a panel title."""
    second = " +shift" if cal.fit.shift != 0.0 else " ^power" if cal.fit.power != 1.0 else ""
    return f"calibrated \u00d7{cal.fit.scale:.3g}{second}"


def panel_title(label: str, cal: Calibration) -> str:
    """A calibrated prediction's panel title, short enough for a 320 px panel: 'current, calibrated x1.12'."""
    return f"{label}, {calibrated_words(cal)}"


def summary(cals: Mapping[str, Calibration | str]) -> str:
    """'calibrated from 3 points: scale 1.1234' (naming each checkpoint when two are shown; a refusal says why)."""
    n = max((len(c.rows) for c in cals.values() if isinstance(c, Calibration)), default=0)
    parts = []
    for label, cal in cals.items():
        words = fit_words(cal) if isinstance(cal, Calibration) else f"not calibrated: {cal}"
        parts.append(words if len(cals) == 1 else f"{label} {words}")
    head = f"calibrated from {n} point{'s' if n != 1 else ''}" if n else "not calibrated"
    return f"{head}: {'; '.join(parts)}"


class KnownPoints:
    """The points of every frame (index -> [KnownPoint]) and their controls: distance box, add, clear, on/off."""

    def __init__(self) -> None:
        self._points: dict[int, list[KnownPoint]] = {}
        # the label at its own width: the default 90 px cut it to "distance (..." in JupyterLab (browser test screenshot)
        self.distance = W.Text(value="", placeholder="e.g. 2.35", description="distance (m)",
                               style={"description_width": "initial"}, layout=W.Layout(width="220px"))
        self.add = W.Button(description="add known point", tooltip="the distance at pixel (x, y) of this frame")
        self.clear = W.Button(description="clear points", tooltip="remove this frame's known points")
        self.use = W.Checkbox(value=True, description="calibrate to the known points", layout=W.Layout(width="auto"))
        self.message = W.HTML()
        self.residuals = W.HTML(layout=W.Layout(width="100%", overflow="auto"))
        self.controls = W.HBox([self.distance, self.add, self.clear, self.use],
                               layout=W.Layout(flex_flow="row wrap"))

    def of(self, i: int) -> list[KnownPoint]:
        """Frame i's points, in the order added."""
        return list(self._points.get(i, ()))

    def active(self, i: int) -> tuple[KnownPoint, ...]:
        """The points the shown predictions of frame i are calibrated to: none while the toggle is off."""
        return tuple(self._points.get(i, ())) if self.use.value else ()

    def new(self, i: int, x: float, y: float, metres: str | float) -> KnownPoint:
        """The next point of frame i (not yet kept); ConfigError for a distance that is not positive metres."""
        return KnownPoint(float(x), float(y), parse_metres(metres), where=f"known point {len(self.of(i)) + 1}")

    def keep(self, i: int, point: KnownPoint) -> None:
        self._points.setdefault(i, []).append(point)

    def clear_frame(self, i: int) -> None:
        self._points.pop(i, None)

    @staticmethod
    def calibrate(depth: np.ndarray, points: tuple[KnownPoint, ...], name: str) -> Calibration | str:
        """depth [H,W] metres rescaled to `points` by predict --known's own `calibrate`, or why a point is refused."""
        try:
            return calibrate(depth, points, name)
        except DataError as e:
            return str(e)

    def show(self, cals: Mapping[str, Calibration | str], frame_name: str) -> None:
        """Fill the residuals box: the summary line, then predict's residual table per calibrated checkpoint."""
        if not cals:
            self.residuals.value = ""
            return
        tables = [residual_table(c, f"frame {frame_name}, {label}") for label, c in cals.items()
                  if isinstance(c, Calibration)]
        pre = "<pre style='margin:2px 0'>{}</pre>".format(html.escape("\n\n".join(tables))) if tables else ""
        self.residuals.value = f"<b>{html.escape(summary(cals))}</b>{pre}"

    def say(self, text: str, refused: bool = False) -> None:
        """A one-line message under the controls (red when something was refused)."""
        self.message.value = REFUSED.format(html.escape(text)) if refused else html.escape(text)


class ExplorerKnownPoints:
    """The known-distance methods of depthlib.notebook.widgets.Explorer, which provides what they use: `known`
    (KnownPoints), the `frame` and `current` widgets, `labels_shown()`, `prediction()`, the `predictions` cache,
    `_names` and `refresh()`. In a module of its own so that widgets.py stays about drawing."""

    known: KnownPoints
    frame: Any  # the ipywidgets of the explorer
    current: Any
    flip: Any
    x: Any
    y: Any
    predictions: Any
    _names: list[str]
    labels_shown: Callable[[], list[str]]
    prediction: Callable[..., np.ndarray]
    refresh: Callable[[], None]

    def add_known(self, x: float, y: float, metres: str | float) -> KnownPoint:
        """Keep a distance in metres measured at pixel (x, y) of the shown frame, and show its predictions calibrated
        to the frame's points; ConfigError for a distance that is not positive metres, DataError for a point that
        `predict --known` refuses (outside the frame, or on a pixel without a predicted depth)."""
        i = self.frame.value
        point = self.known.new(i, x, y, metres)
        points = (*self.known.of(i), point)
        for label in self.labels_shown():  # refused before it is kept, as predict refuses it
            calibrate(self.prediction(label, i), points, self._image_name(i))
        self.known.keep(i, point)
        self.known.say(f"added {point.where}: {point.metres:g} m at ({point.x:g}, {point.y:g})")
        self.refresh()
        return point

    def _add_typed(self) -> None:
        """The "add known point" button: the distance box at the pixel (x, y); a refusal is said, not raised."""
        try:
            self.add_known(self.x.value, self.y.value, self.known.distance.value)
        except DepthlibError as e:
            self.known.say(f"not added: {e}", refused=True)
        else:
            self.known.distance.value = ""  # the next point has its own distance

    def clear_known(self) -> None:
        """Remove the shown frame's known points: its predictions are shown as predicted again."""
        n = len(self.known.of(self.frame.value))
        self.known.clear_frame(self.frame.value)
        self.known.say(f"cleared {n} known point{'s' if n != 1 else ''} of this frame")
        self.refresh()

    def known_points(self, i: int | None = None) -> list[KnownPoint]:
        """The known points of frame i (default: the shown one), in the order added."""
        return self.known.of(self.frame.value if i is None else i)

    def _image_name(self, i: int) -> str:
        return f"frame {self._names[i]}"

    def _calibrated(self, label: str, i: int) -> Calibration | str | None:
        """Frame i's prediction by `label` calibrated to its active known points (cached), why not, or None."""
        points, flip = self.known.active(i), bool(self.flip.value)
        if not points:
            return None
        return self.predictions.get(("known", label, i, flip, points), lambda: self.known.calibrate(
            self.prediction(label, i, flip), points, self._image_name(i)))

    def calibration(self, label: str | None = None, i: int | None = None) -> Calibration | None:
        """predict --known's calibration (depth [H,W] m, fit, residual rows [N,5]) of checkpoint `label` (default:
        current) on frame i (default: shown) to the frame's known points; None without points or with it off."""
        got = self._calibrated(label or self.current.value, self.frame.value if i is None else i)
        return got if isinstance(got, Calibration) else None

    def shown_prediction(self, label: str, i: int) -> np.ndarray:
        """Depth in metres float32 [H,W] on screen: calibrated to frame i's known points if any, else prediction()."""
        cal = self.calibration(label, i)
        return self.prediction(label, i) if cal is None else cal.depth
