"""Rescale a predicted depth map from a few distances the user measured in the scene (issue #22, step 4).

Points come from `--known X,Y,METRES` (one image) or a CSV file `image,x,y,metres` (many). X, Y are pixels of the
image as it is shown (upright), at its full size, 0-based with pixel centres at integers; the predicted map has that
size, and a point reads the map at its nearest pixel.

The fit (measured in benchmarks/RESULTS_known_points.md on the sample model's zoomed frames): a scale in log depth,
the geometric mean of the ratios given / predicted (least squares of log depth; inverse depth tied with it); from 4
points up also a shift of inverse depth, 1/d' = 1/(s d) + t (as MiDaS aligns disparity), kept only where it lowers
the leave-one-out error (mean |fitted - given| / given over the points, each predicted by a fit to the others) and
keeps every depth of the map positive and finite. A power of log depth, d' = s d^p, the other two-parameter map,
is kept as an option of `fit_known`: from few points it can extrapolate wildly (mean AbsRel above 50 from 3 points).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.errors import ConfigError, DataError

SPACES = ("log", "inverse")
# A second parameter is considered from 4 points up: with 3, leave-one-out judges it by 2-point fits that interpolate
# exactly, and on the sample it raised the mean AbsRel (benchmarks/RESULTS_known_points.md).
MIN_POINTS_SECOND = 4
HEADER = ("image", "x", "y", "metres")


@dataclass(frozen=True)
class KnownPoint:
    """A distance in metres measured at pixel (x, y) of an image; `where` names it in messages."""

    x: float
    y: float
    metres: float
    where: str


def _point(fields: Sequence[str]) -> tuple[float, float, float] | str:
    """(x, y, metres) of three text fields, or the reason they are not one."""
    try:
        x, y, m = (float(f) for f in fields)
    except ValueError:
        return f"X, Y and METRES must be numbers, got {','.join(fields)!r}"
    if not all(math.isfinite(v) for v in (x, y, m)):
        return f"X, Y and METRES must be finite numbers, got {','.join(fields)!r}"
    if not m > 0:
        return f"the distance must be positive metres, got {m:g}"
    return x, y, m


def parse_known(text: str) -> KnownPoint:
    """'X,Y,METRES' of --known -> KnownPoint; ConfigError naming the option when malformed or not positive."""
    fields = text.split(",")
    got = _point(fields) if len(fields) == 3 else f"it needs 3 comma-separated numbers X,Y,METRES, got {text!r}"
    if isinstance(got, str):
        raise ConfigError(f"--known {text}: {got}. Fix: pixel x, pixel y of the image as shown, and the distance "
                          "measured there in metres, e.g. --known 320,240,2.35.")
    return KnownPoint(*got, where=f"--known {text}")


def _same_file(a: str | os.PathLike[str], b: Path) -> bool:
    return os.path.normpath(Path(a).expanduser().absolute()) == os.path.normpath(b)


def read_known_file(path: str | os.PathLike[str], images: Sequence[Path]) -> dict[Path, list[KnownPoint]]:
    """Points of a CSV `image,x,y,metres` per input image (absolute paths `images`); DataError naming the row.

    `image` names an input by its file name or by its path (relative to the working directory, as on the command
    line). An image the file names that is not among `images` is refused; inputs it does not name get no points.
    """
    path = Path(path).expanduser().absolute()
    fix = f"rows 'image,x,y,metres', e.g. 'room.jpg,320,240,2.35' under the header '{','.join(HEADER)}'."
    try:
        text = path.read_text(encoding="utf-8-sig")   # Excel writes a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"--known-file cannot be read ({e}).", "check the path (relative to the working "
                        "directory) and that it is a UTF-8 CSV file.") from e
    rows = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), start=1) if any(f.strip() for f in r)]
    if not rows:
        raise DataError(path, "--known-file is empty.", fix)
    if tuple(f.strip().lower() for f in rows[0][1]) != HEADER:
        raise DataError(path, f"the header must be '{','.join(HEADER)}', got {','.join(rows[0][1])!r}.", fix)
    out: dict[Path, list[KnownPoint]] = {}
    for n, row in rows[1:]:
        fields = [f.strip() for f in row]
        if len(fields) != 4:
            raise DataError(path, f"row {n} has {len(fields)} fields, not 4: {','.join(row)!r}.", fix)
        got = _point(fields[1:])
        if isinstance(got, str):
            raise DataError(path, f"row {n}: {got}.", fix)
        name = fields[0]
        hits = [p for p in images if _same_file(name, p)] or [p for p in images if p.name == name]
        if len(hits) != 1:
            problem = (f"row {n}: image {name!r} is not among the {len(images)} input image(s)" if not hits else
                       f"row {n}: image {name!r} names {len(hits)} inputs")
            raise DataError(path, problem + ".", "name an input by its file name or its path as given on the "
                            "command line, or add the image to the inputs.")
        out.setdefault(hits[0], []).append(KnownPoint(*got, where=f"{path.name} row {n}"))
    return out


def known_points(images: Sequence[Path], known: Sequence[str] = (),
                 known_file: str | os.PathLike[str] | None = None) -> dict[Path, list[KnownPoint]]:
    """Points per input image (absolute paths) from --known texts (one image only) or a --known-file."""
    if known and known_file is not None:
        raise ConfigError("--known and --known-file both give known distances. Fix: put every point in the file "
                          "(a row 'image,x,y,metres' each), or pass --known alone for a single image.")
    if known:
        if len(images) != 1:
            raise ConfigError(f"--known is for one input image, and {len(images)} were given. Fix: predict the image "
                              "alone, or list the points per image in --known-file (columns image,x,y,metres).")
        return {images[0]: [parse_known(k) for k in known]}
    return read_known_file(known_file, images) if known_file is not None else {}


def _pixel(pt: KnownPoint, width: int, height: int, image: str | os.PathLike[str]) -> tuple[int, int]:
    """The nearest pixel (column, row) of a point; DataError naming the point and the image when it is outside."""
    ix, iy = math.floor(pt.x + 0.5), math.floor(pt.y + 0.5)
    if not (0 <= ix < width and 0 <= iy < height):
        raise DataError(image, f"{pt.where}: pixel ({pt.x:g}, {pt.y:g}) is outside the image's {width}x{height} "
                        "pixels.", f"x runs 0..{width - 1} and y 0..{height - 1}, from the top-left corner of the "
                        "image as shown.")
    return ix, iy


def check_inside(points: Sequence[KnownPoint], width: int, height: int, image: str | os.PathLike[str]) -> None:
    """DataError naming the first point outside a width x height image (checked before anything is predicted)."""
    for pt in points:
        _pixel(pt, width, height, image)


def read_points(depth: np.ndarray, points: Sequence[KnownPoint], image: str | os.PathLike[str]) -> np.ndarray:
    """Predicted depth [H,W] at each point's nearest pixel -> float64 [N]; DataError naming the point and the image
    when it lies outside the image or on a pixel the map has no valid depth for (not finite or not positive)."""
    h, w = depth.shape
    out = np.empty(len(points))
    for i, pt in enumerate(points):
        ix, iy = _pixel(pt, w, h, image)
        d = float(depth[iy, ix])
        if not (math.isfinite(d) and d > 0):
            raise DataError(image, f"{pt.where}: the predicted map has no valid depth at pixel ({ix}, {iy}) "
                            f"(it holds {d:g}).", "choose a point on a pixel with a depth.")
        out[i] = d
    return out


@dataclass(frozen=True)
class Fit:
    """A map from predicted to calibrated depth d -> d'. A scale: d' = scale d. With a second parameter, in log
    depth d' = scale d^power, in inverse depth 1/d' = 1/(scale d) + shift. `space`: where it was fitted."""

    space: str
    scale: float
    power: float = 1.0
    shift: float = 0.0
    note: str = ""

    @property
    def two_params(self) -> bool:
        return self.power != 1.0 or self.shift != 0.0

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """Calibrated depth, same shape and dtype as `depth` (metres)."""
        d = np.asarray(depth, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = (self.scale * d ** self.power if self.space == "log" else
                   1.0 / (1.0 / (self.scale * d) + self.shift))
        return out.astype(np.asarray(depth).dtype, copy=False)

    def describe(self) -> str:
        """'scale 1.2345 fitted in log depth', with the second parameter when there is one."""
        second = ""
        if self.two_params:
            second = (f" and power {self.power:.4f} (d' = s d^p)" if self.space == "log" else
                      f" and shift {self.shift:+.4f} 1/m (1/d' = 1/(s d) + t)")
        return f"scale {self.scale:.4f}{second} fitted in {self.space} depth"


def _scale(p: np.ndarray, m: np.ndarray, space: str) -> Fit:
    """Least-squares scale: log depth, the geometric mean of m / p; inverse depth, of 1/m on 1/p."""
    if space == "log":
        return Fit(space, float(np.exp(np.mean(np.log(m) - np.log(p)))))
    r, q = 1.0 / p, 1.0 / m
    return Fit(space, float(np.dot(r, r) / np.dot(r, q)))


def _two(p: np.ndarray, m: np.ndarray, space: str) -> Fit | None:
    """Least squares of the two-parameter map in `space`; None when it reverses the order of depths."""
    x, y = (np.log(p), np.log(m)) if space == "log" else (1.0 / p, 1.0 / m)
    (g, a), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
    if not g > 0:
        return None
    return Fit(space, float(np.exp(a)), power=float(g)) if space == "log" else Fit(space, float(1.0 / g), shift=float(a))


def _valid_over(fit: Fit | None, span: tuple[float, float]) -> bool:
    """Whether `fit` maps every depth in span (the map's min..max) to a positive finite depth."""
    if fit is None:
        return False
    out = fit.apply(np.array(span, dtype=np.float64))
    return bool(np.all(np.isfinite(out)) and np.all(out > 0))


def loo_error(p: np.ndarray, m: np.ndarray, fit: Callable[[np.ndarray, np.ndarray], Fit | None]) -> float:
    """Mean |fitted - given| / given, each point predicted by `fit` to the others (inf where a fit is invalid)."""
    errs = []
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        f = fit(p[keep], m[keep])
        d = f.apply(p[i:i + 1])[0] if f is not None else math.nan
        errs.append(abs(d - m[i]) / m[i] if math.isfinite(d) and d > 0 else math.inf)
    return float(np.mean(errs))


def fit_known(predicted: np.ndarray, metres: np.ndarray, *, scale_space: str = "log", space: str = "inverse",
              second: bool | None = None, min_points: int = MIN_POINTS_SECOND,
              span: tuple[float, float] | None = None) -> Fit:
    """Fit predicted depths [N] to measured metres [N]: a scale in `scale_space`, or a scale and a second parameter
    in `space` (second=None: from `min_points` points up, where it lowers the leave-one-out error).

    span: the map's (min, max) depth, which a two-parameter fit must keep positive and finite (default the points').
    """
    for what, sp in (("scale_space", scale_space), ("space", space)):
        if sp not in SPACES:
            raise ConfigError(f"{what} {sp!r} is not one of {SPACES}.")
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(metres, dtype=np.float64)
    if len(p) < 1 or len(p) != len(m):
        raise ValueError(f"need as many predicted as measured depths (>= 1), got {len(p)} and {len(m)}")
    span = span if span is not None else (float(p.min()), float(p.max()))
    one = _scale(p, m, scale_space)
    if second is False or (second is None and len(p) < max(3, min_points)):
        return one
    if len(p) < 3:
        raise ValueError(f"a second parameter needs at least 3 points, got {len(p)}")
    two = _two(p, m, space)
    if not _valid_over(two, span):
        what = "reverses the order of depths" if two is None else "makes some depths of the map non-positive"
        return Fit(scale_space, one.scale, note=f"a second parameter was not used: it {what}")
    if second:
        return two
    e1 = loo_error(p, m, lambda a, b: _scale(a, b, scale_space))
    e2 = loo_error(p, m, lambda a, b: _two(a, b, space))
    name = "power" if space == "log" else "shift"
    note = (f"{name} {'used' if e2 < e1 else 'not used'}: leave-one-out error {100 * e2:.1f} % with it, "
            f"{100 * e1:.1f} % without")
    best = two if e2 < e1 else one
    return Fit(best.space, best.scale, best.power, best.shift, note=note)


@dataclass(frozen=True)
class Calibration:
    """A rescaled map [H,W] metres, the fit, and per point (x, y, given, predicted, fitted) in metres [N,5]."""

    depth: np.ndarray
    fit: Fit
    rows: np.ndarray


def calibrate(depth: np.ndarray, points: Sequence[KnownPoint], image: str | os.PathLike[str], *,
              second: bool | None = None) -> Calibration:
    """Rescale predicted depth [H,W] metres of `image` to the known points; DataError for a bad point."""
    if not points:
        raise ValueError("no known points")
    p = read_points(depth, points, image)
    m = np.array([pt.metres for pt in points])
    valid = depth[np.isfinite(depth) & (depth > 0)]
    fit = fit_known(p, m, second=second, span=(float(valid.min()), float(valid.max())))
    fitted = fit.apply(p)
    rows = np.stack([[pt.x for pt in points], [pt.y for pt in points], m, p, fitted], 1)
    return Calibration(fit.apply(depth), fit, rows)


def residual_table(cal: Calibration, name: str) -> str:
    """The lines predict prints: the fit, then per point given, predicted, fitted and the error in metres and %."""
    n = len(cal.rows)
    head = f"known distances in {name}: {cal.fit.describe()} from {n} point{'s' if n != 1 else ''}"
    lines = [head + (f" ({cal.fit.note})" if cal.fit.note else ""),
             f"{'x':>7} {'y':>7} {'given m':>8} {'predicted m':>11} {'fitted m':>8} {'error m':>8} {'error %':>8}"]
    for x, y, m, p, f in cal.rows:
        lines.append(f"{x:7g} {y:7g} {m:8.3f} {p:11.3f} {f:8.3f} {f - m:+8.3f} {100 * (f - m) / m:+8.1f}")
    return "\n".join(lines)
