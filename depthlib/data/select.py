"""Selecting a portion of any source for limited hardware: a scene list, a fraction of scenes, a frame stride.

Whole scenes are kept or dropped (a fraction of *frames* would put near-twins on both sides of a split);
the stride thins each scene's frames in source order (raw sequences run at ~30 fps, so neighbours are
near-duplicates). The returned record goes into the prepared dataset's ``selection`` attribute.
check_split then refuses a train/val/test split of the selected frames that would train on little or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..core.errors import DataError
from ..core.paths import display_path
from .dataset import SPLITS, scene_hash
from .frame import Frame, FrameSource, stored_jpeg


@dataclass
class Selection:
    """Chosen source indices and how they were chosen (JSON-able record for the prepared file)."""

    indices: list[int]
    record: dict[str, Any] = field(default_factory=dict)

    def to_meta(self) -> dict[str, Any]:
        """The record plus the counts, for `write_prepared(selection=...)`."""
        return {**self.record, "n_selected": len(self.indices)}


def select_frames(source: FrameSource, *, scenes: Sequence[str] | None = None, scene_fraction: float = 1.0,
                  stride: int = 1, seed: int = 0) -> Selection:
    """Indices of `source` kept by scene list, then a seeded fraction of the scenes, then every `stride`-th frame."""
    if not 0.0 < scene_fraction <= 1.0:
        raise DataError(source.path, f"scene_fraction must be in (0, 1], got {scene_fraction}.")
    if stride < 1:
        raise DataError(source.path, f"stride must be >= 1, got {stride}.")
    frame_scenes = source.scenes
    available = sorted(set(frame_scenes))
    if scenes is not None:
        unknown = sorted(set(scenes) - set(available))
        if unknown:
            raise DataError(source.path, f"scenes {unknown[:5]} are not in this source.",
                            f"choose from {available[:10]}{' ...' if len(available) > 10 else ''}.")
        keep = sorted(set(scenes))
    else:
        keep = available
    if scene_fraction < 1.0:
        n_keep = max(1, round(len(keep) * scene_fraction))
        keep = sorted(sorted(keep, key=lambda s: scene_hash(s, seed))[:n_keep])
    kept = set(keep)
    per_scene: dict[str, int] = {}
    indices = []
    for i, s in enumerate(frame_scenes):
        if s not in kept:
            continue
        k = per_scene.get(s, 0)
        per_scene[s] = k + 1
        if k % stride == 0:
            indices.append(i)
    if not indices:
        raise DataError(source.path, "the selection is empty.", "widen the scene list or the fraction.")
    record = {"source_path": display_path(source.path), "n_source": len(frame_scenes), "scenes": keep,
              "scene_fraction": scene_fraction, "stride": stride, "seed": seed}
    return Selection(indices, record)


def check_split(source: FrameSource, labels: Sequence[str], indices: Sequence[int], *, split_file: str = "",
                allow_uneven: bool = False) -> dict[str, int]:
    """Frames per split among the selected `indices` of `source` (labels: one split per source frame) -> counts.

    Refuses (DataError, unless allow_uneven) a split that leaves train or val without frames, or test where the
    labels have some, and, for a split by scene hash (no split_file), one that puts more than half the selected
    frames in val or in test: the hash counts scenes, not frames, so a few large scenes land anywhere (8 scenes
    once sent 62 % of the frames to test).
    """
    scenes = source.scenes
    counts = dict.fromkeys(SPLITS, 0)
    split_scenes: dict[str, set[str]] = {s: set() for s in SPLITS}
    for i in indices:
        counts[labels[i]] += 1
        split_scenes[labels[i]].add(scenes[i])
    if allow_uneven:
        return counts
    how = f"the split of {split_file}" if split_file else "the scene-hash split"
    problems = []
    for split in SPLITS:
        if counts[split] == 0 and (split in ("train", "val") or split in labels):
            lost = sorted({scenes[i] for i, s in enumerate(labels) if s == split})
            why = (f"the selection keeps none of its scenes: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}"
                   if lost else "no scene is labelled so")
            problems.append(f"no frames in {split} ({why})")
    n, n_scenes = len(indices), len(set().union(*split_scenes.values()))
    for split in ([] if split_file else ["val", "test"]):
        if 2 * counts[split] > n:
            problems.append(f"{counts[split]} of the {n} selected frames ({100 * counts[split] / n:.0f} %) in {split} "
                            f"({len(split_scenes[split])} of {n_scenes} scenes), more than half")
    if problems:
        raise DataError(source.path, f"{how} puts {'; '.join(problems)}.",
                        "write a split_file (a name,scene,split CSV with one row per frame), or change val_frac / "
                        "test_frac or seed (a hash split counts scenes, not frames), or the selection (scenes, "
                        "scene_fraction, stride); allow_uneven_split = true keeps this split.")
    return counts


class SubsetSource:
    """A FrameSource view of `source[indices]` (so any consumer of a source can take a selection)."""

    def __init__(self, source: FrameSource, indices: Sequence[int]) -> None:
        self.source, self.indices = source, list(indices)
        self.path = source.path

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Frame:
        return self.source[self.indices[i]]

    @property
    def names(self) -> list[str]:
        """Names of the selected frames."""
        names = self.source.names
        return [names[i] for i in self.indices]

    @property
    def scenes(self) -> list[str]:
        """Scenes of the selected frames."""
        scenes = self.source.scenes
        return [scenes[i] for i in self.indices]

    def rgb_jpeg(self, i: int) -> bytes | None:
        """The source's stored JPEG of selected frame i, else None."""
        return stored_jpeg(self.source, self.indices[i])
