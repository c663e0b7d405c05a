"""Evaluation outputs: metrics JSON (atomic), markdown comparison tables, worst frames, error maps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..core.atomic import atomic_write_text
from ..core.distributed import resolve_device
from ..core.errors import ConfigError, DataError
from ..core.paths import resolve
from ..models.fastpath import as_fast
from .evaluate import EvalResult, prepare_batch
from .metrics import HIGHER_IS_BETTER, METRIC_NAMES
from .protocols import Protocol, get_protocol

LABELS = {"delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "abs_rel": "AbsRel", "sq_rel": "SqRel",
          "rmse": "RMSE", "rmse_log": "RMSE(log)", "log10": "log10", "silog": "SILog"}


def write_metrics_json(path: str | os.PathLike[str], result: EvalResult, *, include_per_image: bool = True) -> Path:
    """Write `result` as JSON atomically (temp file in the same folder + os.replace); returns the path."""
    out = resolve(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = result.to_dict()
    if not include_per_image:
        d["per_image"] = []
    atomic_write_text(out, json.dumps(d, indent=2, allow_nan=False) + "\n")
    return out


def read_metrics_json(path: str | os.PathLike[str]) -> EvalResult:
    """Read a file written by write_metrics_json back into an EvalResult."""
    p = resolve(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(p, "metrics file not found.", "run the evaluation first (notebook 04) or fix the path.") from None
    except json.JSONDecodeError as e:
        raise DataError(p, f"is not valid JSON ({e}).", "re-run the evaluation to rewrite it.") from None
    missing = [k for k in ("protocol", "metrics", "source") if k not in d] if isinstance(d, dict) else ["everything"]
    if missing:
        raise DataError(p, f"is not a depthlib metrics file (missing {missing}).", "write it with write_metrics_json.")
    try:
        return EvalResult.from_dict(d)
    except ConfigError as e:
        raise DataError(p, str(e), "write it with this depthlib version's write_metrics_json.") from None


def _protocol_line(r: EvalResult) -> str:
    s = r.protocol_settings
    if not s:
        return r.protocol
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
    return Protocol(**kw).describe()


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}"


def comparison_table(results: Mapping[str, EvalResult], *, metrics: Sequence[str] = METRIC_NAMES,
                     digits: int = 4) -> str:
    """Markdown table, one column per named result (e.g. previous vs current), protocol named above it."""
    if not results:
        raise ConfigError("comparison_table needs at least one result.")
    protos = {r.protocol for r in results.values()}
    if len(protos) > 1:
        raise ConfigError(f"results were computed under different protocols {sorted(protos)}; numbers are not "
                          "comparable. Re-evaluate them under one protocol.")
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; use names from {list(METRIC_NAMES)}.")
    names = list(results)
    first = results[names[0]]
    two = len(names) == 2
    head = ["metric", *names] + (["change"] if two else [])
    lines = [f"**Protocol: {first.protocol}** ({_protocol_line(first)})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        arrow = "↑" if m in HIGHER_IS_BETTER else "↓"
        vals = [results[n].metrics[m] for n in names]
        row = [f"{LABELS[m]} {arrow}", *(_fmt(v, digits) for v in vals)]
        if two:
            row.append(f"{vals[1] - vals[0]:+.{digits}f}")
        lines.append("| " + " | ".join(row) + " |")
    info: list[tuple[str, Callable[[EvalResult], str]]] = [
        ("protocol", lambda r: r.protocol),
        ("images", lambda r: str(r.n_images)),
        ("pixels", lambda r: str(r.n_pixels)),
        ("reduce", lambda r: r.reduce),
        ("alignment", lambda r: r.alignment),
        ("flip averaging", lambda r: "yes" if r.flip_average else "no"),
        ("model", lambda r: r.model or "-"),
        ("source", lambda r: f"`{r.source}`"),
    ]
    for label, get in info:
        lines.append("| " + " | ".join([label, *(get(results[n]) for n in names)] + ([""] if two else [])) + " |")
    return "\n".join(lines) + "\n"


def headline(results: Mapping[str, EvalResult], *, current: str = "current",
             against: Sequence[str] = ("previous", "mean-depth baseline", "scratch control"),
             markdown: bool = True) -> str:
    """One line per reference in `against` (those present): does `current` beat it on AbsRel and δ1 together?

    "beats" needs a lower AbsRel and a higher δ1; "is worse than" a higher AbsRel and a lower δ1; anything else is
    "is level with" (identical numbers: e.g. fine-tuning kept its starting weights) or "is mixed against".
    """
    if current not in results:
        raise ConfigError(f"headline: no result named {current!r}; have {sorted(results)}.")
    cur = results[current].metrics
    b = "**" if markdown else ""
    lines = []
    for name in against:
        if name == current or name not in results:
            continue
        ref = results[name].metrics
        lower = cur["abs_rel"] < ref["abs_rel"]
        higher = cur["delta1"] > ref["delta1"]
        if cur["abs_rel"] == ref["abs_rel"] and cur["delta1"] == ref["delta1"]:
            verdict = "is level with"
        elif lower and higher:
            verdict = "beats"
        elif not lower and not higher:
            verdict = "is worse than"
        else:
            verdict = "is mixed against"
        lines.append(f"{b}{current} {verdict} {name}{b}: AbsRel {cur['abs_rel']:.3f} vs {ref['abs_rel']:.3f}, "
                     f"δ1 {cur['delta1']:.3f} vs {ref['delta1']:.3f}")
    if not lines:
        return f"{current}: nothing to compare it with (none of {list(against)} was evaluated)"
    return ("\n\n" if markdown else "\n").join(lines)


def worst_table(result: EvalResult, *, n: int = 5, key: str = "abs_rel", digits: int = 4) -> str:
    """Markdown table of the n worst frames by `key`, protocol named above it."""
    rows = result.worst_frames(n, key)
    cols = ["abs_rel", "rmse", "delta1", "silog"]
    lines = [f"**Worst {len(rows)} frames by {LABELS[key]} — protocol: {result.protocol}** "
             f"({result.n_images} images, `{result.source}`)", "",
             "| rank | index | name | " + " | ".join(LABELS[c] for c in cols) + " | pixels |",
             "|" + "---|" * (len(cols) + 4)]
    for rank, r in enumerate(rows, 1):
        vals = " | ".join(_fmt(r[c], digits) for c in cols)
        lines.append(f"| {rank} | {r['index']} | {r['name']} | {vals} | {r['n_pixels']} |")
    return "\n".join(lines) + "\n"


ERROR_KINDS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "abs_rel": lambda p, g: (p - g).abs() / g,
    "abs": lambda p, g: (p - g).abs(),
    "signed": lambda p, g: p - g,
    "log10": lambda p, g: (p.log10() - g.log10()).abs(),
}


def error_map(*, pred: Tensor, target: Tensor, valid: Tensor, kind: str = "abs_rel") -> np.ndarray:
    """float32 [H,W] error map of one image (pred/target/valid [1,H,W] or [H,W]), NaN where invalid."""
    if kind not in ERROR_KINDS:
        raise ConfigError(f"unknown error map {kind!r}; use one of {sorted(ERROR_KINDS)}.")
    p, g, m = (t.detach().to("cpu").reshape(t.shape[-2:]) for t in (pred, target, valid))
    p, g = p.to(torch.float64), g.to(torch.float64)
    g_safe = torch.where(m, g, torch.ones_like(g))
    p_safe = torch.where(m, p, torch.ones_like(p))
    err = ERROR_KINDS[kind](p_safe, g_safe)
    return torch.where(m, err, torch.full_like(err, float("nan"))).to(torch.float32).numpy()


def error_maps(model: nn.Module, dataset: Dataset, indices: Sequence[int], *, protocol: str | Protocol = "densedepth",
               flip_average: bool | None = None, alignment: str = "none", device: str = "auto",
               kinds: Sequence[str] = ("abs_rel",)) -> list[dict[str, Any]]:
    """Re-predict frames `indices` (e.g. the worst ones) -> [{"index","name","pred","target","valid", kind: map}] as arrays of the crop."""
    proto = get_protocol(protocol)
    flip = proto.flip_average if flip_average is None else bool(flip_average)
    dev = resolve_device(device)
    model.to(dev)
    fast = as_fast(model)
    out = []
    for idx in indices:
        s = dataset[int(idx)]
        batch = {"image": s["image"][None], "depth": s["depth"][None], "valid": s["valid"][None]}
        pred, target, valid = prepare_batch(fast, batch, proto, flip_average=flip, alignment=alignment, device=dev)
        rec: dict[str, Any] = {
            "index": int(idx), "name": str(s.get("name", "")), "protocol": proto.name,
            "pred": pred[0, 0].detach().cpu().float().numpy(),
            "target": target[0, 0].detach().cpu().float().numpy(),
            "valid": valid[0, 0].detach().cpu().numpy(),
        }
        for k in kinds:
            rec[k] = error_map(pred=pred[0], target=target[0], valid=valid[0], kind=k)
        out.append(rec)
    return out
