"""Depth units of files whose format does not say them: declared, never guessed.

A depth file stores numbers; ``depth_scale`` (metres per stored unit) turns them into metres. Integer
files (PNG, integer TIFF or .npy) carry no unit, and every common choice is in use (millimetres for
Kinect / RealSense / NYU PNGs, 1/5000 m for TUM RGB-D, 0.1 mm for NYU's labeled export, 1/256 m for
KITTI): reading them without a declared scale is refused with the stored value range and what each
common scale would make of it. Float files (float TIFF, float .npy) default to metres. A declared scale
that puts a checked frame's median depth below 10 cm or above 100 m, or the median of the checked frames beyond
max_depth (where nearly every pixel would be masked), is refused with the scales that would fit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..core.errors import DataError

# (metres per stored unit, where that unit is used), in the order the refusal lists them.
UNIT_CANDIDATES: list[tuple[float, str]] = [
    (1e-3, "millimetres: Kinect, RealSense, Azure Kinect, ScanNet, NYU / BTS PNGs"),
    (1 / 5000, "1/5000 m: TUM RGB-D, ICL-NUIM"),
    (1e-4, "0.1 mm: NYU labeled set exported by Depth2HHA"),
    (1 / 256, "1/256 m: KITTI depth PNGs"),
    (10 / 255, "0..255 = 0..10 m: DenseDepth's 8-bit train PNGs"),
    (1e-2, "centimetres"),
    (1.0, "metres"),
]
PLAUSIBLE_MEDIAN_M = (0.1, 100.0)  # a frame whose median depth is outside this is almost surely in a wrong unit

InvalidSpec = float | int | str | Sequence[float | int | str] | None


def invalid_codes(invalid: InvalidSpec, dtype: np.dtype) -> list[float]:
    """Declared invalid stored values -> numbers: a value, "nan", "max" (the dtype's largest), or a list of them."""
    items = [] if invalid is None else list(invalid) if isinstance(invalid, (list, tuple)) else [invalid]
    out = []
    for v in items:
        if isinstance(v, str):
            if v.lower() == "nan":
                continue  # non-finite values are always invalid
            if v.lower() != "max":
                raise DataError(None, f"invalid value {v!r} is not understood.", "use a number, 'nan' or 'max'.")
            v = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else math.inf
        out.append(float(v))
    return out


def stored_valid(raw: np.ndarray, invalid: InvalidSpec) -> np.ndarray:
    """bool [H,W]: stored values that are finite, positive and not a declared invalid value."""
    ok = np.isfinite(raw) & (raw > 0) if np.issubdtype(raw.dtype, np.floating) else raw > 0
    for code in invalid_codes(invalid, raw.dtype):
        ok &= raw != code
    return ok


def is_integer(raw: np.ndarray) -> bool:
    """True when a depth array holds integer codes (which need a declared depth_scale)."""
    return bool(np.issubdtype(raw.dtype, np.integer))


# How to declare a unit, in both places a user does: a profile (TOML) and Python (a notebook's source_options).
DECLARE_MM = ("e.g. for millimetres: in the profile's [01_data_prep], source_options = { depth_scale = 0.001 }; "
              "in Python, source_options={'depth_scale': 0.001} (open_source('pairs', path, depth_scale=0.001))")


def undeclared_scale_error(where: str, raw: np.ndarray, invalid: InvalidSpec) -> DataError:
    """The refusal for integer depth without depth_scale: the stored range and what each common scale makes of it."""
    vals = raw[stored_valid(raw, invalid)]
    if vals.size == 0:
        return DataError(where, f"integer depth ({raw.dtype}) has no valid value to show, and no depth_scale is declared.",
                         f"declare depth_scale (metres per stored unit), {DECLARE_MM}.")
    lo, med, hi = (float(x) for x in np.percentile(vals, [0, 50, 100]))
    lines = [f"depth_scale={s:.6g} ({what}) -> median {med * s:.3g} m"
             for s, what in UNIT_CANDIDATES if PLAUSIBLE_MEDIAN_M[0] <= med * s <= PLAUSIBLE_MEDIAN_M[1]]
    return DataError(
        where,
        f"integer depth ({raw.dtype}) in undeclared units: stored values {lo:g}..{hi:g}, median {med:g} "
        f"({vals.size} non-zero pixels). Likely choices: {'; '.join(lines) or 'none of the common scales'}.",
        f"declare the unit your sensor or dataset documents, as metres per stored unit, {DECLARE_MM}; depth is never "
        "read in a guessed unit.",
    )


def to_metres(raw: np.ndarray, *, depth_scale: float | None, invalid: InvalidSpec, max_depth: float,
              where: str) -> tuple[np.ndarray, np.ndarray]:
    """Stored values [H,W] -> (depth float32 metres [H,W], 0 where invalid; valid bool [H,W], also <= max_depth)."""
    if depth_scale is None and is_integer(raw):
        raise undeclared_scale_error(where, raw, invalid)
    scale = 1.0 if depth_scale is None else float(depth_scale)
    ok = stored_valid(raw, invalid)
    metres = np.where(ok, raw.astype(np.float64) * scale, 0.0)
    valid = ok & (metres <= max_depth)
    return np.where(valid, metres, 0.0).astype(np.float32), valid


def check_plausible(raws: Sequence[np.ndarray], *, depth_scale: float | None, invalid: InvalidSpec, where: str,
                    names: Sequence[str] | None = None, max_depth: float = math.inf) -> float:
    """Median depth in metres of the stored values of `raws` under the scale (before max_depth).

    Refuses (DataError) a frame whose median is outside PLAUSIBLE_MEDIAN_M, or a pooled median beyond max_depth:
    both mean a wrong depth_scale (metres stored as millimetres, 8-bit 0..255 read as millimetres, 0.1 mm as mm).
    `names` name each raw in the message.
    """
    scale = 1.0 if depth_scale is None else float(depth_scale)
    valid = [r[stored_valid(r, invalid)].ravel().astype(np.float64) for r in raws]
    vals = np.concatenate(valid)
    if vals.size == 0:
        raise DataError(where, "no valid depth in the frames checked.", "check the depth files and the invalid value.")
    stated = "undeclared (float files are read as metres)" if depth_scale is None else f"{depth_scale:g}"
    lo, hi = PLAUSIBLE_MEDIAN_M

    def refuse(what: str, stored_median: float, band: tuple[float, float], dtype: np.dtype) -> DataError:
        likely = [f"{s:.6g} ({w.split(':')[0]})" for s, w in UNIT_CANDIDATES if band[0] <= stored_median * s <= band[1]]
        bits = f"{dtype} " if np.issubdtype(dtype, np.integer) else ""
        return DataError(what, f"with depth_scale {stated} the {bits}depth's median is {stored_median * scale:.4g} m "
                         f"(plausible: {band[0]:g}-{band[1]:g} m): the scale is probably wrong. Scales that fit: "
                         f"{', '.join(likely) or 'none of the common ones'}.",
                         "declare the unit the files are stored in (depth_scale = metres per stored value); "
                         "if the depth really is so, check_frames=0 skips this check.")

    for k, (raw, v) in enumerate(zip(raws, valid)):
        if v.size and not lo <= float(np.median(v)) * scale <= hi:
            raise refuse(names[k] if names else where, float(np.median(v)), (lo, hi), raw.dtype)
    med = float(np.median(vals)) * scale
    if med > max_depth:
        raise refuse(where, med / scale, (lo, min(hi, max_depth)), raws[0].dtype)
    return med
