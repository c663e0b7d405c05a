"""Streaming evaluation of a model on a dataset under a named protocol (see depthlib.evaluation.protocols).

Predictions are made batch by batch and reduced at once to per-image metric sums
(depthlib.evaluation.metrics.metric_sums): memory stays at one batch whatever the test set's size, and
both the pooled and the per-image reduction come out exactly as if everything had been held.

Each frame's focal length (its sample's "fx": the reader's, through the prepared file) goes to predict, so a model
trained with camera_space="canonical" gives metres for that frame's camera; frames without one are taken to be of the
model's canonical camera, and evaluate says how many.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ..core.distributed import resolve_device
from ..core.errors import ConfigError, DataError
from ..core.notices import notice
from ..core.paths import display_path
from ..models.fastpath import as_fast
from ..models.predict import predict
from .align import ALIGNERS
from .metrics import METRIC_NAMES, metric_sums, metrics_from_sums, reduce_sums
from .protocols import Protocol, get_protocol

RESULT_FORMAT = 1


@dataclass
class EvalResult:
    """Metrics of one evaluation plus everything needed to say how they were obtained."""

    protocol: str                           # protocol name, e.g. "densedepth"
    metrics: dict[str, float]               # METRIC_NAMES + n_images + n_pixels, reduced as the protocol says
    source: str                             # data source (path) that was evaluated
    alignment: str = "none"
    flip_average: bool = True
    reduce: str = "pooled"
    protocol_settings: dict[str, Any] = field(default_factory=dict)
    model: str = ""                         # model.arch when known
    per_image: list[dict[str, Any]] = field(default_factory=list)   # {"index","name","n_pixels", metrics}
    worst: list[dict[str, Any]] = field(default_factory=list)       # worst frames by abs_rel, worst first

    @property
    def n_images(self) -> int:
        """Number of images evaluated."""
        return int(self.metrics["n_images"])

    @property
    def n_pixels(self) -> int:
        """Number of valid pixels evaluated."""
        return int(self.metrics["n_pixels"])

    def worst_frames(self, n: int = 5, key: str = "abs_rel") -> list[dict[str, Any]]:
        """The n worst per-image records by `key` (needs keep_per_image=True unless key='abs_rel')."""
        records = self.per_image or self.worst
        if key not in METRIC_NAMES:
            raise ConfigError(f"unknown metric {key!r}; use one of {list(METRIC_NAMES)}.")
        if not records:
            raise ConfigError("this result kept no per-image records; evaluate with keep_per_image=True.")
        if not self.per_image and key != "abs_rel":
            raise ConfigError(f"only the worst frames by abs_rel were kept; evaluate with keep_per_image=True to rank by {key}.")
        higher_better = key.startswith("delta")
        return sorted(records, key=lambda r: r[key], reverse=not higher_better)[:n]

    def to_dict(self) -> dict[str, Any]:
        """Plain-builtin dict (the metrics JSON layout)."""
        return {"format": RESULT_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        """Inverse of to_dict; refuses unknown keys."""
        d = dict(d)
        d.pop("format", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"EvalResult has no field(s) {unknown}; known: {sorted(names)}.")
        return cls(**d)


def _find_path(obj: Any, depth: int = 3) -> str | None:
    """`.path` of obj or of what it wraps (.source: DepthDataset, .src: prepared files, .dataset: wrappers)."""
    path = getattr(obj, "path", None)
    if isinstance(path, (str, os.PathLike)):
        return str(path)
    if depth == 0:
        return None
    for attr in ("source", "src", "dataset"):
        inner = getattr(obj, attr, None)
        found = None if inner is None else _find_path(inner, depth - 1)
        if found is not None:
            return found
    return None


def _source_name(dataset: Dataset, source: str | None) -> str:
    if source is not None:
        return source
    # Recorded as-is: a result says which data it came from, even when that is only a class name.
    found = _find_path(dataset)
    return display_path(found) if found else f"<{type(dataset).__name__}>"


def prepare_batch(model: nn.Module, batch: dict[str, Any], protocol: Protocol, *, flip_average: bool,
                  alignment: str, device: torch.device, source: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Sample batch -> (pred, target, valid) [B,1,h',w'] after prediction, upsampling, crop, mask, alignment, clamp."""
    images = batch["image"].to(device)
    target = batch["depth"].to(device)
    valid = batch["valid"].to(device)
    # "native": the protocol, not predict, decides how and when to upsample (DenseDepth clips first).
    pred = predict(model, images, flip_average=flip_average, out_size="native", fx=batch.get("fx"))
    return protocol.apply(pred, target, valid, alignment=alignment, source=source)


def _batches(dataset: Dataset, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of the three tensors evaluation needs, the focal lengths ("fx" float64[B], NaN where unknown) and names;
    other sample keys are ignored (not collated)."""
    n = len(dataset)  # type: ignore[arg-type]
    for start in range(0, n, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, n))]
        missing = sorted({"image", "depth", "valid"} - set(samples[0]))
        if missing:
            raise DataError(None, f"evaluation samples need keys image/depth/valid; missing {missing}.",
                            "evaluate a depthlib dataset (DepthDataset, prepared frames) of sample dicts.")
        yield {k: torch.stack([s[k] for s in samples]) for k in ("image", "depth", "valid")} | {
            "fx": torch.tensor([float(s.get("fx", math.nan)) for s in samples], dtype=torch.float64),
            "name": [str(s.get("name", start + j)) for j, s in enumerate(samples)]}


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    protocol: str | Protocol = "densedepth",
    flip_average: bool | None = None,
    alignment: str = "none",
    batch_size: int = 2,
    device: str = "auto",
    progress: bool = True,
    keep_per_image: bool = True,
    worst_n: int = 8,
    source: str | None = None,
    desc: str = "",
) -> EvalResult:
    """Metrics of `model` on a dataset of samples {"image" [3,H,W], "depth"/"valid" [1,H,W]} under `protocol`.

    flip_average=None takes the protocol's default. Moves the model to `device`. Per-image records
    hold metrics only (no maps); `worst` keeps the worst_n frames by abs_rel even without them.
    `desc` names the model on the progress bar (e.g. "previous").
    """
    return evaluate_alignments(model, dataset, alignments=(alignment,), protocol=protocol, flip_average=flip_average,
                               batch_size=batch_size, device=device, progress=progress, keep_per_image=keep_per_image,
                               worst_n=worst_n, source=source, desc=desc)[alignment]


def evaluate_alignments(
    model: nn.Module,
    dataset: Dataset,
    *,
    alignments: Sequence[str] = ("none",),
    protocol: str | Protocol = "densedepth",
    flip_average: bool | None = None,
    batch_size: int = 2,
    device: str = "auto",
    progress: bool = True,
    keep_per_image: bool = True,
    worst_n: int = 8,
    source: str | None = None,
    desc: str = "",
) -> dict[str, EvalResult]:
    """`evaluate` under several alignments at once -> {alignment: EvalResult}, every frame predicted once.

    04's metric ("none") and relative-depth tables come from the same predictions: one pass over the frames
    instead of one per table (with flip averaging, two network runs a frame and model instead of four).
    """
    proto = get_protocol(protocol)
    alignments = list(dict.fromkeys(alignments))
    if not alignments:
        raise ConfigError("evaluate_alignments needs at least one alignment, e.g. (\"none\",).")
    for a in alignments:
        if a not in ALIGNERS:
            raise ConfigError(f"unknown alignment {a!r}; use one of {sorted(ALIGNERS)}.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    flip = proto.flip_average if flip_average is None else bool(flip_average)
    src = _source_name(dataset, source)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(src, "the evaluation dataset is empty.", "check the split and the source path.")
    dev = resolve_device(device)
    model.to(dev)
    fast = as_fast(model)  # predict's fast copy, made once (a no-op for models from load_for_inference)

    sums: dict[str, list[Tensor]] = {a: [] for a in alignments}  # one [K] float64 vector per image: a few hundred bytes
    records: dict[str, list[dict[str, Any]]] = {a: [] for a in alignments}
    index = unknown_fx = 0
    how = "".join(f", {a} aligned" for a in alignments if a != "none")
    label = f"evaluate {desc}{how} [{proto.name}]" if desc else f"evaluate{how} [{proto.name}]"
    bar = tqdm(total=len(dataset), desc=label, disable=not progress)  # type: ignore[arg-type]
    try:
        for batch in _batches(dataset, batch_size):
            images, target, valid = (batch[k].to(dev) for k in ("image", "depth", "valid"))
            # "native": the protocol, not predict, decides how and when to upsample (DenseDepth clips first).
            pred = predict(fast, images, flip_average=flip, out_size="native", fx=batch.get("fx"))
            names = batch["name"]
            for a in alignments:
                p, t, v = proto.apply(pred, target, valid, alignment=a, source=src)
                batch_sums = metric_sums(pred=p, target=t, valid=v).cpu()
                for i in range(batch_sums.shape[0]):
                    n_pix = int(round(float(batch_sums[i, 0])))
                    if n_pix == 0:
                        raise DataError(src, f"frame {index + i} ({names[i]!r}) has no valid pixels under protocol "
                                        f"{proto.name!r}.", "check its ground truth, or evaluate without that frame.")
                    records[a].append({"index": index + i, "name": str(names[i]), "n_pixels": n_pix,
                                       **metrics_from_sums(batch_sums[i])})
                    sums[a].append(batch_sums[i])
            del pred, target, valid
            index += len(names)
            unknown_fx += int((~torch.isfinite(batch["fx"])).sum())
            bar.update(len(names))
    finally:
        bar.close()
    if unknown_fx and getattr(fast, "canonical_fx", None) is not None:
        notice(f"{unknown_fx} of the {index} frames of {src} have no focal length: the {desc or 'model'}'s depth "
               "for them is its canonical camera's, not rescaled (a prepared file of format 1, or a reader not told "
               "the camera).")

    out = {}
    for a in alignments:
        out[a] = EvalResult(
            protocol=proto.name,
            metrics=reduce_sums(torch.stack(sums[a]), proto.reduce),
            source=src,
            alignment=a,
            flip_average=flip,
            reduce=proto.reduce,
            protocol_settings=proto.to_dict(),
            model=str(getattr(model, "arch", type(model).__name__)),
            per_image=records[a] if keep_per_image else [],
            worst=sorted(records[a], key=lambda r: r["abs_rel"], reverse=True)[:worst_n],
        )
    return out
