"""Source "pairs": your own RGB + depth files, matched by a naming rule or listed in a file, in declared units.

Matching, one of two ways:

- a naming rule (default): glob patterns ``rgb`` and ``depth`` (default ``"rgb/*"``, ``"depth/*"``) are looked up
  in ``path`` itself (one scene) or in each of its sub-folders (one scene per sub-folder, never both); an RGB
  and a depth file pair when the ``key`` regex (default: the whole file stem; its first group if it has one)
  gives both the same key. An RGB file without depth is an error, never skipped.
- a list, ``files=`` (relative to ``path``, or absolute; a glob such as ``"*/associations.txt"`` reads one list
  per scene folder). Lines are comma- or whitespace-separated, ``#`` starts a comment. Columns come from a
  header row naming ``rgb`` and ``depth``, from ``columns=``, or from the field count: 2 = ``rgb depth``,
  3 = ``rgb depth focal`` (BTS lists; a depth of ``None`` means no ground truth: skipped, counted in
  ``skipped``), 4 = TUM's associate.py output ``time rgb time depth``. Known column names: rgb, depth, focal,
  fx, fy, cx, cy, scene; others are ignored. Entries are relative to the list's folder when the list lies
  inside ``path``, else to ``path``; a leading ``/`` is BTS's way of writing such a relative path.

Scenes (for splitting without leakage): a ``scene`` column, else the first folder of the RGB file under
``path`` (``path``'s own name for files directly in it, or in the one-scene naming-rule layout).
Depth: 16-bit / 8-bit PNG or integer TIFF/.npy with a declared ``depth_scale`` (metres per unit), or float
TIFF / float32 .npy (metres unless ``depth_scale`` says otherwise); see depthlib.data.units. Valid = finite,
> 0, not ``invalid`` (a stored value, "nan", "max" or a list; default 0) and <= ``max_depth`` metres.
Intrinsics: per frame (focal, or fx fy cx cy columns) or global (``focal=`` or ``intrinsics=[fx, fy, cx, cy]``),
in ``Frame.meta``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.errors import DataError
from .frame import Frame
from .io import read_depth_raw, read_rgb
from .registry import register_source
from .units import InvalidSpec, check_plausible, is_integer, to_metres

COLUMNS = ("rgb", "depth", "focal", "fx", "fy", "cx", "cy", "scene")
DEFAULT_COLUMNS = {2: ["rgb", "depth"], 3: ["rgb", "depth", "focal"], 4: ["-", "rgb", "-", "depth"]}
_INTRINSICS = ("fx", "fy", "cx", "cy")


@dataclass
class Pair:
    """One frame's files, scene and per-frame camera values (focal / fx fy cx cy) from a list."""

    rgb: Path
    depth: Path
    scene: str
    camera: dict[str, float] = field(default_factory=dict)


def _split_line(line: str) -> list[str]:
    if "," in line:
        return [f.strip() for f in next(csv.reader(io.StringIO(line)))]
    return line.split()


def read_pair_list(path: Path, columns: Sequence[str] | None = None) -> tuple[list[dict[str, str]], int]:
    """List file -> ([{column: value}], rows skipped for a depth of None), columns as the module docstring says."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file list not found.", "check `files` (relative to the data folder, or absolute).") from None
    lines = [(n, _split_line(s)) for n, s in enumerate(text.splitlines(), 1) if s.strip() and not s.lstrip().startswith("#")]
    if not lines:
        raise DataError(path, "lists no frames.", "write one `rgb depth` line per frame.")
    names = [c.lower() for c in columns] if columns else None
    if names is None and {"rgb", "depth"} <= {f.lower() for f in lines[0][1]}:
        names, lines = [f.lower() for f in lines[0][1]], lines[1:]
    if names is None:
        names = DEFAULT_COLUMNS.get(len(lines[0][1]))
        if names is None:
            raise DataError(path, f"line {lines[0][0]} has {len(lines[0][1])} fields, a count with no default meaning.",
                            f"pass columns=[...] naming each field ({', '.join(COLUMNS)}, or '-' to ignore it).")
    if "rgb" not in names or "depth" not in names:
        raise DataError(path, f"columns {names} name no rgb and depth column.", "name them in a header or in columns=.")
    rows, skipped = [], 0
    for n, fields in lines:
        if len(fields) != len(names):
            raise DataError(path, f"line {n} has {len(fields)} fields; the columns are {names}.", "repair the list.")
        row = {c: v for c, v in zip(names, fields) if c in COLUMNS}
        if row["depth"] == "None":
            skipped += 1
            continue
        for c in ("focal", *_INTRINSICS):
            if c in row:
                try:
                    float(row[c])
                except ValueError:
                    raise DataError(path, f"line {n}: {c} {row[c]!r} is not a number.", "repair the list.") from None
        rows.append(row)
    if not rows:
        raise DataError(path, "lists no frame with depth.", "check the list file.")
    return rows, skipped


def _first_folder(file: Path, root: Path) -> str:
    rel = file.relative_to(root) if file.is_relative_to(root) else None
    return rel.parts[0] if rel is not None and len(rel.parts) > 1 else root.name


def pairs_from_lists(root: Path, files: str, columns: Sequence[str] | None) -> tuple[list[Pair], int]:
    """Pairs of the list file(s) `files` (a path or a glob, relative to `root`) -> (pairs, rows skipped)."""
    lists = sorted(root.glob(files)) if any(c in files for c in "*?[") and not Path(files).is_absolute() else [root / files]
    if not lists:
        raise DataError(root / files, "no list file matches.", "check the `files` pattern.")
    pairs, skipped = [], 0
    for lst in lists:
        rows, n_skipped = read_pair_list(lst, columns)
        skipped += n_skipped
        base = lst.parent if lst.resolve().is_relative_to(root.resolve()) else root
        for row in rows:
            rgb, depth = (_entry(base, row[c], lst) for c in ("rgb", "depth"))
            camera = {c: float(row[c]) for c in ("focal", *_INTRINSICS) if c in row}
            pairs.append(Pair(rgb, depth, row.get("scene") or _first_folder(rgb, root), camera))
    return pairs, skipped


def _entry(base: Path, value: str, lst: Path) -> Path:
    rel = base / value.lstrip("/")
    if rel.is_file():
        return rel
    if Path(value).is_absolute() and Path(value).is_file():
        return Path(value)
    raise DataError(rel, f"listed in {lst} but not found.", "fix the list, or re-extract the data.")


def _key(file: Path, key: re.Pattern[str]) -> str:
    m = key.search(file.stem)
    if m is None:
        raise DataError(file, f"the key pattern {key.pattern!r} does not match this file name.",
                        "adjust `key` (a regex on the file stem; its first group is the shared key).")
    return m.group(1) if key.groups else m.group(0)


# Keys that pair names differing only around a number or before a dot: rgb_0001 / sync_depth_0001,
# SUN3D's frame-000935.color / frame-000935.depth, TUM-like 1305031452.791720 / 1305031452.791720 (first digits run,
# last digits run, the stem up to its first dot).
KEY_SUGGESTIONS = (r"(\d+)", r"(\d+)(?!.*\d)", r"^([^.]+)")


def suggest_key(rgb: Sequence[Path], depth: Sequence[Path], *, tried: str = "") -> tuple[str, tuple[Path, Path]] | None:
    """(a key regex of KEY_SUGGESTIONS other than `tried`, (an RGB file, its depth file)) when that key pairs every RGB
    file with exactly one depth file, keys unique on each side; None when none does."""
    for pattern in KEY_SUGGESTIONS:
        if pattern == tried:
            continue
        rx = re.compile(pattern)
        keys: list[dict[str, Path]] = [{}, {}]
        for side, files in zip(keys, (rgb, depth)):
            for f in files:
                m = rx.search(f.stem)
                if m is None or m.group(1) in side:
                    break
                side[m.group(1)] = f
            else:
                continue
            break
        else:
            if keys[0] and all(k in keys[1] for k in keys[0]):
                first = sorted(keys[0])[0]
                return pattern, (keys[0][first], keys[1][first])
    return None


def _match_folder(folder: Path, rgb: str, depth: str, key: re.Pattern[str], scene: str) -> list[Pair]:
    """Pairs in one scene folder by the naming rule; an RGB file without a depth partner is an error."""
    by_key: dict[str, dict[str, Path]] = {"rgb": {}, "depth": {}}
    for kind, pattern in (("rgb", rgb), ("depth", depth)):
        for f in sorted(p for p in folder.glob(pattern) if p.is_file()):
            k = _key(f, key)
            if k in by_key[kind]:
                raise DataError(f, f"has the same key {k!r} as {by_key[kind][k]}.", "make `key` pick a unique part of the name.")
            by_key[kind][k] = f
    overlap = set(by_key["rgb"].values()) & set(by_key["depth"].values())
    if overlap:
        raise DataError(sorted(overlap)[0], f"matches both rgb={rgb!r} and depth={depth!r}.", "make the patterns disjoint.")
    missing = sorted(k for k in by_key["rgb"] if k not in by_key["depth"])
    if missing:
        fix = "add the depth, remove the RGB file, or list the pairs in a file."
        hint = suggest_key(list(by_key["rgb"].values()), list(by_key["depth"].values()), tried=key.pattern)
        if hint is not None:
            pattern, (a, b) = hint
            fix = (f"the names differ only around a shared part ({a.name} and {b.name}): key={pattern!r} pairs every "
                   f"RGB file here with a depth file (in the profile's source_options: key = '{pattern}'); or " + fix)
        raise DataError(by_key["rgb"][missing[0]], f"has no depth file with key {missing[0]!r} ({depth!r} in {folder}); "
                        f"{len(missing)} RGB file(s) lack depth.", fix)
    return [Pair(by_key["rgb"][k], by_key["depth"][k], scene) for k in sorted(by_key["rgb"])]


def pairs_by_rule(root: Path, rgb: str, depth: str, key: str) -> list[Pair]:
    """Pairs in `root` itself (one scene) or in each sub-folder (one scene each) by the naming rule."""
    pattern = re.compile(key)
    top = _match_folder(root, rgb, depth, pattern, root.name)
    subs = [p for d in sorted(x for x in root.iterdir() if x.is_dir()) for p in _match_folder(d, rgb, depth, pattern, d.name)]
    if top and subs:
        raise DataError(root, f"RGB files match {rgb!r} both here and in scene sub-folders.",
                        "keep one layout: all frames in path, or one sub-folder per scene.")
    if not top and not subs:
        raise DataError(root, f"no RGB file matches {rgb!r} here or in a sub-folder.", "check `rgb`/`depth`, or pass files=.")
    return top or subs


@register_source("pairs")
class PairsSource:
    """Your own RGB + depth pairs (naming rule or list) -> Frames in metres; see the module docstring."""

    nyu_border = False  # your camera's frames: no NYU white border to crop at inference, whatever their size

    def __init__(self, path: str, *, depth_scale: float | None = None, invalid: InvalidSpec = 0, max_depth: float = 10.0,
                 files: str | None = None, columns: Sequence[str] | None = None, rgb: str = "rgb/*",
                 depth: str = "depth/*", key: str = r"(.+)", focal: float | None = None,
                 intrinsics: Sequence[float] | None = None, check_frames: int = 3) -> None:
        root = Path(path)
        self.path = str(path)
        if not root.is_dir():
            raise DataError(root, "data folder not found.", "point source_path at the folder holding your frames.")
        for name, value, example in (("depth_scale", depth_scale, "0.001"), ("max_depth", max_depth, "10"),
                                     ("focal", focal, "518.86")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DataError(root, f"{name} must be a number, got {value!r}.",
                                f"write it without quotes or units, e.g. {name}={example}.")
        if depth_scale is not None and not depth_scale > 0:
            raise DataError(root, f"depth_scale must be positive metres per stored unit, got {depth_scale!r}.")
        if focal is not None and intrinsics is not None:
            raise DataError(root, "both focal and intrinsics are given.", "pass one of them.")
        if intrinsics is not None and len(intrinsics) != 4:
            raise DataError(root, f"intrinsics must be [fx, fy, cx, cy], got {list(intrinsics)}.")
        self.depth_scale, self.invalid, self.max_depth, self.skipped = depth_scale, invalid, max_depth, 0
        if files is not None:
            self.pairs, self.skipped = pairs_from_lists(root, files, columns)
        else:
            self.pairs = pairs_by_rule(root, rgb, depth, key)
        per_frame = sorted({c for p in self.pairs for c in p.camera})
        if per_frame and (focal is not None or intrinsics is not None):
            raise DataError(root, f"the list gives per-frame {per_frame} and a global focal/intrinsics is given too.",
                            "keep one of them.")
        self.global_camera = ({"focal": float(focal)} if focal is not None else
                              dict(zip(_INTRINSICS, map(float, intrinsics))) if intrinsics is not None else {})
        self._names = [str(p.rgb.relative_to(root).with_suffix("").as_posix()) if p.rgb.is_relative_to(root)
                       else str(p.rgb.with_suffix("")) for p in self.pairs]
        dup = sorted(n for n, c in Counter(self._names).items() if c > 1)
        if dup:
            raise DataError(root, f"several frames are named {dup[:3]} (RGB files differing only in extension).",
                            "rename them: frame names must be unique for split files.")
        self.depth_unit_m, self.median_depth_m = self._check_units(check_frames)

    def _check_units(self, n: int) -> tuple[float, float]:
        """Read n spread frames and each scene's first: refuse integer depth without a scale and a wrong scale.

        n = 0 reads one frame (for the unit) and skips the plausibility check.
        """
        spread = {int(round(x)) for x in np.linspace(0, len(self.pairs) - 1, max(1, min(n, len(self.pairs))))}
        firsts: dict[str, int] = {}
        for i, p in enumerate(self.pairs if n else ()):
            firsts.setdefault(p.scene, i)
        picks = sorted(spread | set(list(firsts.values())[:100]))
        raws = [read_depth_raw(self.pairs[i].depth) for i in picks]
        for i, raw in zip(picks, raws):
            if is_integer(raw) and self.depth_scale is None:
                to_metres(raw, depth_scale=None, invalid=self.invalid, max_depth=self.max_depth,
                          where=str(self.pairs[i].depth))  # raises the refusal with the value range
        if n == 0:
            med = float("nan")
        else:
            med = check_plausible(raws, depth_scale=self.depth_scale, invalid=self.invalid, max_depth=self.max_depth,
                                  where=f"{self.path} (depth of {len(raws)} frame(s))",
                                  names=[str(self.pairs[i].depth) for i in picks])
        # The prepared file stores depth exactly in the files' own unit when they are 8/16-bit, else millimetres.
        unit = float(self.depth_scale) if all(is_integer(r) and r.dtype.itemsize <= 2 for r in raws) else 0.001
        return unit, med

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames in {self.path}")
        p = self.pairs[i]
        rgb = read_rgb(p.rgb, str(p.rgb))
        depth, valid = to_metres(read_depth_raw(p.depth), depth_scale=self.depth_scale, invalid=self.invalid,
                                 max_depth=self.max_depth, where=str(p.depth))
        meta: dict[str, Any] = {"source": "pairs", "rgb_file": str(p.rgb), "depth_file": str(p.depth)}
        camera = {**self.global_camera, **p.camera}
        if "focal" in camera:
            meta["focal"] = camera["focal"]
        if all(c in camera for c in _INTRINSICS):
            meta["intrinsics"] = [camera[c] for c in _INTRINSICS]
            meta.setdefault("focal", camera["fx"])
        # the focal length canonical training scales by: fx of the declared intrinsics, else the declared focal
        return Frame(rgb, depth, valid, self._names[i], p.scene, meta, meta.get("focal")).check(str(p.depth))

    @property
    def names(self) -> list[str]:
        """Path of each RGB file relative to `path`, without extension."""
        return list(self._names)

    @property
    def scenes(self) -> list[str]:
        """Scene of each frame (scene column, else first folder under `path`)."""
        return [p.scene for p in self.pairs]
