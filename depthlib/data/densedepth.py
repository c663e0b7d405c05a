"""DenseDepth's `nyu_data.zip` layout, read from the .zip member by member or from its extracted folder.

Layout: ``data/nyu2_{train,test}.csv`` (no header, ``rgb,depth`` member paths); train depth is
8-bit PNG with 0..255 = 0..10 m, test depth is 16-bit PNG in millimetres. Both are hole-filled,
so valid = depth > 0.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..core.camera import NYU_KINECT
from ..core.errors import DataError
from .frame import Frame
from .io import looks_like_zip, read_depth_png, read_rgb
from .registry import register_source

DEPTH_ENCODING = {"train": "u8_10m", "test": "mm16"}
_TEST_INDEX = re.compile(r"(\d+)_colors\.\w+$")


class _Store:
    """Read members of a folder or a zip; the zip is reopened per process so loader workers are safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1
        self._names: set[str] | None = None
        if path.is_file() and not self.is_zip:
            if looks_like_zip(path):
                raise DataError(path, "is a damaged or truncated zip archive (it starts like a zip but its central "
                                "directory at the end is missing).", "re-download nyu_data.zip and check its size.")
            raise DataError(path, "is a file but not a zip archive.", "pass the nyu_data.zip or its extracted folder.")
        if not path.exists():
            raise DataError(path, "does not exist.", "download nyu_data.zip (DenseDepth) or point `path` at its folder.")

    def _zf(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as e:
                raise DataError(self.path, f"is not a readable zip ({e}).", "re-download it; the archive is damaged.") from None
            self._pid = os.getpid()
        return self._zip

    def names(self) -> set[str]:
        """Member names (zip only; cheap, from the central directory)."""
        if self._names is None:
            self._names = set(self._zf().namelist())
        return self._names

    def exists(self, member: str) -> bool:
        return member in self.names() if self.is_zip else (self.path / member).is_file()

    def read(self, member: str) -> bytes:
        if self.is_zip:
            try:
                return self._zf().read(member)
            except KeyError:
                raise DataError(f"{self.path}!{member}", "member not in the archive.",
                                "the CSV names a file the zip lacks; re-download the archive.") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:  # zlib.error: corrupt deflate data
                raise DataError(f"{self.path}!{member}", f"this member of the zip is damaged and cannot be read ({e}).",
                                "re-download the archive.") from None
        f = self.path / member
        try:
            return f.read_bytes()
        except FileNotFoundError:
            raise DataError(f, "listed in the CSV but missing on disk.",
                            "re-extract nyu_data.zip, or remove the row from the CSV.") from None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"] = None  # zip handles do not pickle; reopened lazily in each worker
        return state


def _row_name(split: str, rgb_member: str) -> str:
    """Frame name of a CSV row: the test index ("00000") or the train member path without its extension."""
    return Path(rgb_member).stem.replace("_colors", "") if split == "test" else str(Path(rgb_member).with_suffix(""))


def _scene_of(rgb_member: str) -> str:
    parent = Path(rgb_member).parent.name
    if parent.endswith("_out"):
        return parent[: -len("_out")]
    return ""


@register_source("densedepth")
class DenseDepthSource:
    """Frames of DenseDepth's nyu_data.zip (train or test split), from the zip or its extracted folder."""

    def __init__(self, path: str, split: str = "test", max_depth: float = 10.0) -> None:
        if split not in DEPTH_ENCODING:
            raise DataError(path, f"unknown split {split!r}.", f"use one of {sorted(DEPTH_ENCODING)}.")
        p = Path(path)
        self.split = split
        self.encoding = DEPTH_ENCODING[split]
        self.depth_unit_m = 10.0 / 255.0 if self.encoding == "u8_10m" else 0.001  # the files' depth quantum
        self.max_depth = max_depth
        self._store = _Store(p)
        csv_member = f"data/nyu2_{split}.csv"
        if not self._store.is_zip and not (p / csv_member).is_file() and (p / f"nyu2_{split}.csv").is_file():
            # Pointed at the inner data/ folder: rows are relative to its parent.
            self._store = _Store(p.parent)
        self.path = str(self._store.path)
        if not self._store.exists(csv_member):
            raise DataError(
                f"{self.path}{'!' if self._store.is_zip else os.sep}{csv_member}",
                f"the {split} CSV is missing, so the frame list is unknown.",
                "use the original nyu_data.zip (it holds data/nyu2_train.csv and data/nyu2_test.csv).",
            )
        self._csv = csv_member
        self.rows = self._read_csv(csv_member)
        # Per-frame tables are built once: a frame read must cost the same at 50K frames as at 50.
        self._names = [_row_name(split, rgb) for rgb, _ in self.rows]
        self._scenes = self._derive_scenes()

    def _read_csv(self, member: str) -> list[tuple[str, str]]:
        text = self._store.read(member).decode("utf-8-sig")
        rows = []
        for n, rec in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not rec or not "".join(rec).strip():
                continue
            if len(rec) < 2:
                raise DataError(f"{self.path}:{member}", f"row {n} has {len(rec)} column(s); expected `rgb,depth`.",
                                "repair or re-download the CSV.")
            rows.append((rec[0].strip(), rec[1].strip()))
        if not rows:
            raise DataError(f"{self.path}:{member}", "lists no frames.", "re-download the archive.")
        if self._store.is_zip:
            missing = [m for r in rows for m in r if not self._store.exists(m)]
            if missing:
                raise DataError(f"{self.path}!{member}", f"names {len(missing)} member(s) not in the zip, e.g. {missing[0]!r}.",
                                "re-download the archive; it is incomplete.")
        return rows

    def _derive_scenes(self) -> list[str]:
        # Train rows sit in <scene>_out folders. Test rows carry only their labeled index; contiguous index runs
        # are frames of one scene (an approximation: two neighbouring scenes can merge).
        scenes, prev = [], None
        for rgb, _ in self.rows:
            s = _scene_of(rgb)
            if not s:
                m = _TEST_INDEX.search(rgb)
                idx = int(m.group(1)) if m else -1
                if prev is None or idx != prev[0] + 1:
                    prev = (idx, f"run{idx:05d}")
                else:
                    prev = (idx, prev[1])
                s = prev[1]
            scenes.append(s)
        return scenes

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def names(self) -> list[str]:
        """Frame names: the test index ("00000"), or the train member path without extension."""
        return list(self._names)

    @property
    def scenes(self) -> list[str]:
        """Scene of each frame: the <scene>_out folder (train) or a run of consecutive test indices."""
        return list(self._scenes)

    def rgb_jpeg(self, i: int) -> bytes | None:
        """The RGB file of frame i as stored when it is a JPEG (prepared files copy it as is), else None."""
        member = self.rows[i][0]
        return self._store.read(member) if member.lower().endswith((".jpg", ".jpeg")) else None

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames in {self.path}")
        rgb_m, depth_m = self.rows[i]
        where = (lambda m: f"{self.path}!{m}") if self._store.is_zip else (lambda m: str(Path(self.path) / m))
        rgb = read_rgb(self._store.read(rgb_m), name=where(rgb_m))
        depth = read_depth_png(self._store.read(depth_m), encoding=self.encoding, name=where(depth_m))
        valid = (depth > 0) & (depth <= self.max_depth + 1e-6)
        frame = Frame(rgb=rgb, depth=depth.astype(np.float32), valid=valid, name=self._names[i], scene=self._scenes[i],
                      meta={"source": "densedepth", "split": self.split, "rgb": rgb_m, "depth": depth_m},
                      fx=NYU_KINECT.fx_at(rgb.shape[1]))
        return frame.check(where(depth_m))
