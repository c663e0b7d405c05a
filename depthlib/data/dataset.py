"""Dataset over any FrameSource, scene-level splits, and a DataLoader factory with per-worker seeding."""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.errors import DataError
from .frame import FrameSource, frame_to_sample

SPLITS = ("train", "val", "test")


class DepthDataset(Dataset):
    """Samples {"image", "depth", "valid", "name"} of `source[indices]`, passed through `transform`."""

    def __init__(self, source: FrameSource, indices: Sequence[int] | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.source = source
        self.indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = frame_to_sample(self.source[self.indices[i]])
        return self.transform(sample) if self.transform else sample


def read_split_file(path: str | Path) -> dict[str, str]:
    """Read a `name,scene,split` CSV (header required) -> {name: split}."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(p, "split file not found.", "write one with columns name,scene,split or use scene_split().") from None
    if not rows or not {"name", "split"} <= set(rows[0]):
        raise DataError(p, "needs a header with at least the columns `name` and `split`.")
    bad = sorted({r["split"] for r in rows} - set(SPLITS))
    if bad:
        raise DataError(p, f"has unknown split value(s) {bad}; allowed: {list(SPLITS)}.")
    return {r["name"]: r["split"] for r in rows}


def scene_hash(scene: str, seed: int) -> float:
    """A seeded, platform-independent number in [0, 1) per scene name (for splits and selections)."""
    h = hashlib.sha256(f"{seed}:{scene}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def scene_split(scenes: Sequence[str], *, val_frac: float = 0.1, test_frac: float = 0.0, seed: int = 0) -> list[str]:
    """Assign each frame's scene (not frame) to train/val/test in a seeded hash order -> split per frame.

    round(frac x scenes) scenes go to val and to test, and at least one whenever the fraction is > 0
    (0.02 of 8 scenes rounds to none: validation still gets one); at least one scene stays in train.
    """
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise DataError(None, f"val_frac={val_frac} and test_frac={test_frac} must be >= 0 and sum to less than 1.")
    order = sorted(set(scenes), key=lambda s: (scene_hash(s, seed), s))
    n_test = max(1, round(test_frac * len(order))) if test_frac > 0 else 0
    n_val = max(1, round(val_frac * len(order))) if val_frac > 0 else 0
    if n_test + n_val >= len(order):
        raise DataError(None, f"{len(order)} scene(s) cannot give {n_val} validation and {n_test} test scene(s) and "
                        "keep one for training.", "use a split file (name,scene,split), or lower val_frac / test_frac.")
    table = dict.fromkeys(order, "train")
    table.update(dict.fromkeys(order[:n_test], "test"))
    table.update(dict.fromkeys(order[n_test:n_test + n_val], "val"))
    return [table[s] for s in scenes]


def split_assignment(source: FrameSource, *, split_file: str | Path | None = None, val_frac: float = 0.1,
                     test_frac: float = 0.0, seed: int = 0) -> list[str]:
    """The split ("train", "val" or "test") of every frame of `source`: from a split file when given, else by scene."""
    if split_file is None:
        return scene_split(source.scenes, val_frac=val_frac, test_frac=test_frac, seed=seed)
    table = read_split_file(split_file)
    names = source.names
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(split_file, f"has no row for {len(missing)} frame(s) of {source.path}, e.g. {missing[0]!r}.",
                        "add them, or regenerate the split file.")
    return [table[n] for n in names]


def split_indices(source: FrameSource, split: str, *, split_file: str | Path | None = None,
                  val_frac: float = 0.1, test_frac: float = 0.0, seed: int = 0) -> list[int]:
    """Indices of `source` in `split`, from a split file when given, else by scene hash."""
    if split not in SPLITS:
        raise DataError(None, f"unknown split {split!r}; use one of {list(SPLITS)}.")
    assignment = split_assignment(source, split_file=split_file, val_frac=val_frac, test_frac=test_frac, seed=seed)
    return [i for i, s in enumerate(assignment) if s == split]


def seed_worker(worker_id: int) -> None:
    """Give each loader worker distinct, reproducible NumPy/random seeds (torch's is set by DataLoader)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None, pin_memory: bool = False) -> DataLoader:
    """DataLoader whose shuffling and per-worker augmentation are reproducible from `seed`."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=g,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class MappedDataset(Dataset):
    """Apply `transform` to every sample of `dataset` (e.g. crop/resize/augment over a prepared file).

    device_augment: what the training loop applies per batch on the device instead of `transform` (the flip and
    channel swap of depthlib.data.transforms.BatchFlipSwap, with TrainConfig.gpu_augment); None for none.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[dict[str, Any]], dict[str, Any]],
                 device_augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.device_augment = device_augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.transform(self.dataset[i])
