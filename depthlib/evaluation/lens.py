"""How a model's metric depth follows a longer lens (issue #22): frames zoomed by z, the ratio and AbsRel per z, drift.

A frame "through a z-times longer lens" is its centre 1/z resized back to its size: the same camera and room, the
focal length in pixels z times the frame's (zoom_sample). For each z, every frame's median predicted / true depth
and its AbsRel over the pixels with ground truth in DEPTH_RANGE and a finite, positive prediction; then the median
of the ratios and the mean of the AbsRels over frames (lens_scores), and the worst drift, the largest
|ln(ratio at z / ratio at z = 1)| (worst_drift). A model whose metres hold for any lens keeps its ratio; one that
reads distance from apparent size alone, blind to the lens, sees everything z times nearer: its ratio falls as 1/z.
These are the definitions of benchmarks/RESULTS_lens.md, whose script (benchmarks/bench_lens.py) measures with these
functions; read_lens_table reads that file's median rows back. This AbsRel is per frame over its whole picture, not a
protocol's (no crop, no clamp, not pooled).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..core.errors import ConfigError, DataError
from ..core.paths import display_path, resolve
from ..models.predict import predict

Sample = dict[str, Any]
ZOOMS = (1.0, 1.5, 2.0)
DEPTH_RANGE = (1e-3, 10.0)   # metres: the ground truth the ratio and AbsRel count (RESULTS_lens.md's)
FrameScores = Mapping[float, tuple[float, float]]   # {z: (median ratio predicted / true, AbsRel)} of one frame


def check_zooms(zooms: Sequence[float]) -> tuple[float, ...]:
    """The zooms as floats, or ConfigError: each finite and >= 1 (a crop cannot widen the lens), 1 among them."""
    zs = tuple(float(z) for z in zooms)
    if not zs or any(not math.isfinite(z) or z < 1.0 for z in zs) or 1.0 not in zs:
        raise ConfigError(f"lens zooms {list(zooms)!r}: each must be a number >= 1 (z: a z-times longer lens, a crop "
                          "of 1/z), and 1 must be among them (the drift is measured from the frame as taken). Fix: "
                          "e.g. [1.0, 1.5, 2.0] (04's lens_zooms; [] there skips the lens section).")
    return zs


def zoom_box(height: int, width: int, z: float) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of the centre 1/z of a height x width frame, rounded to whole pixels."""
    ch, cw = max(1, round(height / z)), max(1, round(width / z))
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def zoom_sample(sample: Mapping[str, Any], z: float) -> Sample:
    """A frame {"image": float[3,H,W] in [0,1], "depth": [1,H,W] m, "valid": bool[1,H,W], "fx"} through a z-times longer
    lens: its centre 1/z (zoom_box) resized back to H x W, and "fx" times z (NaN when unknown stays NaN). Other keys
    are kept.

    The picture goes through 8 bits and PIL's bicubic resize, as a photo's would (and as the lens table was measured:
    torch's bicubic weighs differently); depth and valid nearest, so no depth is invented between surfaces. fx is
    times z, the lens table's rule: the whole-pixel crop makes the true factor W / crop width (1.4988 for z = 1.5 at
    640 wide), which changes only a model trained in the canonical camera space, by under 0.1 %.
    """
    check_zooms([1.0, z])
    image, depth = sample["image"], sample["depth"]
    h, w = depth.shape[-2:]
    top, left, ch, cw = zoom_box(h, w, z)
    box = (left, top, left + cw, top + ch)
    rgb = (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    rgb = np.array(Image.fromarray(rgb).crop(box).resize((w, h), Image.BICUBIC))

    def nearest(a: Tensor) -> Tensor:
        a = a.detach().cpu().reshape(h, w).numpy().astype(np.float32)
        return torch.from_numpy(np.array(Image.fromarray(a).crop(box).resize((w, h), Image.NEAREST)))[None]

    valid = sample.get("valid")
    out = dict(sample)
    out["image"] = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    out["depth"] = nearest(depth)
    out["valid"] = torch.ones(1, h, w, dtype=torch.bool) if valid is None else nearest(valid) > 0.5
    out["fx"] = float(sample.get("fx", math.nan)) * z
    return out


def predict_frame(model: nn.Module, sample: Mapping[str, Any], *, flip_average: bool = True) -> Tensor:
    """Metres float[H,W] (CPU) of one frame, through depthlib.models.predict with the frame's own fx: the path every
    caller runs (a loaded checkpoint's border crop, camera space and flip averaging)."""
    return predict(model, sample["image"][None], flip_average=flip_average, fx=sample.get("fx"))[0, 0].float().cpu()


def ratio_abs_rel(*, pred: Any, depth: Any, valid: Any = None) -> tuple[float, float]:
    """(median of pred / depth, mean |pred - depth| / depth) over the pixels [H,W] with depth in DEPTH_RANGE, `valid`,
    and a finite, positive prediction; (NaN, NaN) when there are none."""
    p, g = (np.asarray(torch.as_tensor(a).cpu(), dtype=np.float64).squeeze() for a in (pred, depth))
    m = (g > DEPTH_RANGE[0]) & (g < DEPTH_RANGE[1]) & np.isfinite(p) & (p > 0)
    if valid is not None:
        m &= np.asarray(torch.as_tensor(valid).cpu()).squeeze().astype(bool)
    if not m.any():
        return math.nan, math.nan
    return float(np.median(p[m] / g[m])), float(np.mean(np.abs(p[m] - g[m]) / g[m]))


def frame_scores(predict_fn: Callable[[Sample], Tensor], frames: Any, zooms: Sequence[float] = ZOOMS
                 ) -> list[tuple[str, dict[float, tuple[float, float]]]]:
    """[(frame name, {z: ratio_abs_rel})] for frames (a dataset or list of samples) at each zoom, predict_fn(zoomed
    sample) -> metres [H,W] (predict_frame for a model as it is run). One frame at a time: no map is kept."""
    zs = check_zooms(zooms)
    out = []
    for i in range(len(frames)):
        s = frames[i]
        per_z = {}
        for z in zs:
            zs_ = zoom_sample(s, z)
            per_z[z] = ratio_abs_rel(pred=predict_fn(zs_), depth=zs_["depth"], valid=zs_["valid"])
        out.append((str(s.get("name", i)), per_z))
    return out


def lens_scores(per_frame: Iterable[FrameScores], zooms: Sequence[float] = ZOOMS) -> dict[float, dict[str, float]]:
    """{z: {"ratio": median over frames of their median ratio, "abs_rel": mean over frames}}; frames without a counted
    pixel at z (NaN) are left out of that z."""
    frames = list(per_frame)
    out = {}
    for z in check_zooms(zooms):
        ratios = np.array([f[z][0] for f in frames], dtype=np.float64)
        rels = np.array([f[z][1] for f in frames], dtype=np.float64)
        ok = np.isfinite(ratios) & np.isfinite(rels)
        if not ok.any():
            raise DataError(None, f"no frame has ground truth in {DEPTH_RANGE[0]:g}-{DEPTH_RANGE[1]:g} m where the "
                            f"prediction is positive at zoom {z:g}.", "measure on frames with ground truth.")
        out[z] = {"ratio": float(np.median(ratios[ok])), "abs_rel": float(np.mean(rels[ok]))}
    return out


def worst_drift(per_z: Mapping[float, Mapping[str, float]]) -> float:
    """The largest |ln(ratio at z / ratio at z = 1)| over the zooms of lens_scores' result."""
    return max(abs(math.log(s["ratio"] / per_z[1.0]["ratio"])) for s in per_z.values())


@dataclass(frozen=True)
class LensResult:
    """One model's lens measurement: per z the ratio and AbsRel (lens_scores), each frame's scores, the worst drift."""

    per_z: dict[float, dict[str, float]]
    frames: list[tuple[str, dict[float, tuple[float, float]]]]

    @property
    def drift(self) -> float:
        return worst_drift(self.per_z)


def measure_lens(model: nn.Module, frames: Any, zooms: Sequence[float] = ZOOMS, *,
                 flip_average: bool = True) -> LensResult:
    """A loaded model (depthlib.inference.load_for_inference) on frames [3,H,W] at each zoom, as predict runs it."""
    if getattr(model, "canonical_fx", None) is not None and len(frames):
        fx = float(frames[0].get("fx", math.nan))
        if not (math.isfinite(fx) and fx > 0):
            raise DataError(None, "the frames have no focal length, and this model (camera_space 'canonical') needs one "
                            "to say how a longer lens changes its metres.", "re-run 01_data_prep so the prepared file "
                            "records each frame's focal length (format 2), or leave the lens section out (lens_zooms=[]).")
    per_frame = frame_scores(lambda s: predict_frame(model, s, flip_average=flip_average), frames, zooms)
    return LensResult(per_z=lens_scores((f for _, f in per_frame), zooms), frames=per_frame)


def zoom_views(model: nn.Module, sample: Mapping[str, Any], zooms: Sequence[float] = ZOOMS, *,
               flip_average: bool = True) -> list[dict[str, Any]]:
    """One frame at each zoom: [{"z", "image", "depth", "valid", "pred" [H,W] m, "ratio", "abs_rel", "name"}], the
    columns of depthlib.figures.lens.zoom_figure."""
    out = []
    for z in check_zooms(zooms):
        s = zoom_sample(sample, z)
        p = predict_frame(model, s, flip_average=flip_average)
        ratio, rel = ratio_abs_rel(pred=p, depth=s["depth"], valid=s["valid"])
        out.append({"z": z, "image": s["image"], "depth": s["depth"][0], "valid": s["valid"][0], "pred": p,
                    "ratio": ratio, "abs_rel": rel, "name": str(sample.get("name", ""))})
    return out


def table_header(zooms: Sequence[float] = ZOOMS) -> list[str]:
    """The lens table's columns: recipe, seed, ratio and AbsRel per z, worst drift."""
    return ["recipe", "seed", *(f"{k} z={z:g}" for z in zooms for k in ("ratio", "AbsRel")), "worst drift"]


@dataclass(frozen=True)
class LensTable:
    """The median rows of a lens table file (RESULTS_lens.md): its header, [(section, cells)], or a note on why none."""

    path: str
    header: list[str]
    rows: list[tuple[str, list[str]]]
    note: str = ""


def _cells(line: str) -> list[str]:
    return [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]


def read_lens_table(path: str | os.PathLike[str]) -> LensTable:
    """The "median" rows of every table in a file benchmarks/bench_lens.py writes, with the `## ` section each is in;
    a missing file, or one without such rows, gives no rows and a one-line note saying so."""
    shown = display_path(resolve(path))
    p = resolve(path)
    if not p.is_file():
        return LensTable(shown, [], [], f"{shown} is missing: no committed lens table to show "
                         "(benchmarks/bench_lens.py writes it).")
    header: list[str] = []
    rows: list[tuple[str, list[str]]] = []
    section, prev_table = "", False
    for line in p.read_text().splitlines():
        is_table = line.lstrip().startswith("|")
        if line.startswith("## "):
            section = line[3:].strip()
        elif is_table and not prev_table:
            header = header or _cells(line)
        elif is_table and not re.fullmatch(r"[|\s:-]+", line):
            cells = _cells(line)
            if len(cells) > 1 and cells[1] == "median":
                rows.append((section, cells))
        prev_table = is_table
    note = "" if rows else f"{shown} has no median rows: not a lens table from benchmarks/bench_lens.py."
    return LensTable(shown, header if rows else [], rows, note)


def lens_markdown(table: LensTable, live: LensResult, *, label: str = "current model") -> str:
    """Markdown: the committed median rows and, in the same table when the zooms match, `live`'s row; else two tables."""
    zooms = list(live.per_z)
    head = table_header(zooms)
    row = [label, f"live, {len(live.frames)} frames", *(f"{live.per_z[z][k]:.3f}" for z in zooms
                                                        for k in ("ratio", "abs_rel")), f"{live.drift:.3f}"]

    def md(header: list[str], rows: list[list[str]]) -> str:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(r) + " |" for r in rows)])

    sections = {s for s, _ in table.rows}
    committed = [[f"{c[0]} ({s})" if len(sections) > 1 else c[0], *c[1:]] for s, c in table.rows]
    live_line = f"{label}: measured now on this run's {len(live.frames)} frames."
    if table.note:
        return f"{table.note}\n\n{live_line}\n\n{md(head, [row])}\n"
    what = f"Committed: the medians over seeds in `{table.path}` ({'; '.join(sorted(sections))})."
    if table.header == head:
        return f"{what} Last row, {live_line}\n\n{md(head, [*committed, row])}\n"
    return f"{what}\n\n{md(table.header, committed)}\n\n{live_line}\n\n{md(head, [row])}\n"
