"""The data a run trains on, as last.pt records it, so that a resume over other frames is refused.

A prepared file rewritten in place (01 run again on a second capture, into the same `prepared_path`) keeps its
path, so fit's run settings alone cannot tell: the resumed run would carry the first capture's model, and its
finished epochs, over to the new frames. The identity is the frames' stored content (PreparedDataset.content_hash),
not the path: the same frames prepared again resume, a moved file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset, Subset

from ..core.errors import ConfigError
from ..data.dataset import MappedDataset
from ..data.prepared_loader import PreparedTorchDataset


def data_identity(ds: Dataset | None) -> dict[str, Any] | None:
    """{"file", "split", "frames", "content"} of the prepared-file frames `ds` serves, through MappedDataset and
    Subset wrappers; None for a dataset of another kind (nothing to check) or no dataset."""
    positions: Sequence[int] | None = None
    while ds is not None:
        if isinstance(ds, PreparedTorchDataset):
            return ds.identity(positions)
        if isinstance(ds, Subset):
            positions = list(ds.indices) if positions is None else [ds.indices[i] for i in positions]
            ds = ds.dataset
        elif isinstance(ds, MappedDataset):
            ds = ds.dataset
        else:
            return None
    return None


def _described(d: dict[str, Any]) -> str:
    return f"{d['frames']} frames of {d['file']} (split {d['split']}, content {d['content'][:12]})"


def check_data_kept(path: Path, old: dict[str, Any] | None, now: dict[str, Any], *, hint: str) -> None:
    """ConfigError naming both when last.pt `path` was trained on other frames ({"train": identity, "val": ...}, as
    data_identity gives them) than this run's; a side either run cannot identify is not compared."""
    for kind in ("train", "val"):
        was, is_ = (old or {}).get(kind), now.get(kind)
        if was and is_ and was["content"] != is_["content"]:
            raise ConfigError(
                f"{path}: was trained on other {kind} frames than this run's: {_described(was)} there, "
                f"{_described(is_)} now (the prepared file was rewritten since, e.g. by 01 on another capture). "
                "Resuming would carry that run's model and finished epochs over to these frames. Fix: resume=False "
                f"to start over in this out_dir, replacing that run ({hint}), or another out_dir for this data.")
