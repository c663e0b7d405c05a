"""Source "bts": the BTS "sync" layout (``rgb_N.jpg`` + ``sync_depth_N.png``, uint16 mm, 0 = hole).

Frames are found either from a BTS file list (``files=``: lines ``/scene/rgb_N.jpg /scene/sync_depth_N.png
518.8579``, paths relative to ``path``; rows whose depth is ``None`` have no ground truth and are skipped,
counted in ``skipped``) or by walking ``path``. Walking pairs each RGB file by the first rule that matches
(`PAIR_RULES`): the same folder (BTS train ``sync/<scene>/`` and official test ``<sceneType>/``), an
``rgb/`` + ``depth/`` pair of folders (Metric3D's copy), or ``images/`` + ``annotations/`` (mmsegmentation).
An RGB frame whose depth file is missing is an error, never skipped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.camera import NYU_KINECT
from ..core.errors import DataError
from .frame import Frame
from .io import read_depth_png, read_rgb
from .registry import register_source

_RGB_NUM = re.compile(r"^rgb_(\d+)$")


def _same_folder(rgb: Path) -> Path | None:
    m = _RGB_NUM.match(rgb.stem)
    return rgb.with_name(f"sync_depth_{m.group(1)}.png") if m else None


def _rgb_depth_folders(rgb: Path) -> Path | None:
    m = _RGB_NUM.match(rgb.stem)
    return rgb.parent.parent / "depth" / f"sync_depth_{m.group(1)}.png" if m and rgb.parent.name == "rgb" else None


def _images_annotations(rgb: Path) -> Path | None:
    return rgb.parent.parent / "annotations" / f"{rgb.stem}.png" if rgb.parent.name == "images" else None


# (name, rgb file pattern, rgb path -> expected depth path or None when the rule does not apply)
PAIR_RULES: list[tuple[str, str, Callable[[Path], Path | None]]] = [
    ("rgb/ + depth/ folders", "rgb_*.jpg", _rgb_depth_folders),
    ("same folder", "rgb_*.jpg", _same_folder),
    ("images/ + annotations/", "*.jpg", _images_annotations),
]


def _scene_of(rgb: Path) -> str:
    if rgb.parent.name in ("rgb", "images"):
        # Metric3D keeps no scene; mmsegmentation names files <scene>_<frame>.
        return rgb.stem.rsplit("_", 1)[0] if rgb.parent.name == "images" else rgb.parent.parent.name
    return rgb.parent.name


def read_bts_filelist(path: str | Path) -> tuple[list[tuple[str, str, float]], int]:
    """BTS list file -> ([(rgb, depth, focal)], rows skipped for having no depth)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file list not found.", "pass the BTS list (e.g. nyudepthv2_train_files_with_gt.txt).")
    rows, skipped = [], 0
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DataError(p, f"line {n} has {len(parts)} fields; expected `rgb depth focal`.", "repair the list.")
        if parts[1] == "None":
            skipped += 1
            continue
        try:
            focal = float(parts[2])
        except ValueError:
            raise DataError(p, f"line {n}: focal {parts[2]!r} is not a number.", "repair the list.") from None
        rows.append((parts[0].lstrip("/"), parts[1].lstrip("/"), focal))
    if not rows:
        raise DataError(p, "lists no frame with depth.", "check the list file.")
    return rows, skipped


@register_source("bts")
class BtsSyncSource:
    """BTS sync / official-test folders (or a file list) -> Frames in metres, 0 / >max_depth = invalid."""

    def __init__(self, path: str, *, files: str | None = None, max_depth: float = 10.0) -> None:
        self.path = str(path)
        root = Path(path)
        if not root.is_dir():
            raise DataError(root, "BTS data folder not found.", "point path at the folder holding the scenes.")
        self.max_depth, self.skipped = max_depth, 0
        if files is not None:
            rows, self.skipped = read_bts_filelist(files)
            self.pairs = [(root / r, root / d) for r, d, _ in rows]
        else:
            self.pairs = self._walk(root)
        if not self.pairs:
            raise DataError(root, "no rgb_*.jpg + sync_depth_*.png pairs found.", "check path (BTS sync layout).")
        self._names = [str(r.relative_to(root).with_suffix("")) if r.is_relative_to(root) else r.stem
                       for r, _ in self.pairs]

    @staticmethod
    def _walk(root: Path) -> list[tuple[Path, Path]]:
        pairs, seen = [], set()
        for _, pattern, rule in PAIR_RULES:
            for rgb in sorted(root.rglob(pattern)):
                depth = rule(rgb)
                if depth is None or rgb in seen:
                    continue
                if not depth.is_file():
                    raise DataError(depth, f"missing: it is the depth of {rgb}.",
                                    "re-extract the dataset, or remove the RGB file.")
                seen.add(rgb)
                pairs.append((rgb, depth))
        return sorted(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Frame:
        rgb_path, depth_path = self.pairs[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        depth = read_depth_png(depth_path, encoding="mm16", name=str(depth_path))
        valid = (depth > 0) & (depth <= self.max_depth)
        meta = {"rgb_file": str(rgb_path), "depth_file": str(depth_path)}
        return Frame(rgb, np.where(valid, depth, 0).astype(np.float32), valid, self._names[i], _scene_of(rgb_path),
                     meta, NYU_KINECT.fx_at(rgb.shape[1])).check(str(depth_path))

    @property
    def names(self) -> list[str]:
        """Path of the RGB file relative to `path`, without extension."""
        return list(self._names)

    @property
    def scenes(self) -> list[str]:
        """Scene (folder) of each frame."""
        return [_scene_of(r) for r, _ in self.pairs]
