"""Source "raw_kinect": NYU Depth V2 raw scene folders, registered into the RGB camera on read.

Layout: ``<root>/<scene>/INDEX.txt`` plus ``r-<timestamp>-<id>.ppm`` (RGB, P6 640x480),
``d-<timestamp>-<id>.pgm`` (raw disparity, P5, maxval 65535, **little-endian** payload against the
PGM spec) and ``a-*.dump`` (accelerometer, ignored). ``path`` may be one scene folder or a folder of
scenes. RGB and depth streams are not synchronised: each depth frame is paired with the RGB frame
nearest in time (dropped when none is within ``max_dt`` seconds). Depth is converted and registered
into the undistorted RGB camera by :func:`depthlib.data.kinect.register_depth`, so frames are aligned.
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .frame import Frame
from .io import read_rgb
from .kinect import NO_RETURN, NYU_CALIBRATION, KinectCalibration, register_depth, undistort_rgb
from .registry import register_source

_NAME = re.compile(r"^([rda])-([0-9]+(?:\.[0-9]+)?)-([0-9]+)\.(ppm|pgm|dump)$")
_TOKEN = re.compile(rb"\s*(#[^\n]*\n\s*)*([^\s#]+)")  # PGM header token; '#' starts a comment


def read_pgm_disparity(path: str | Path, *, byte_order: str = "little") -> np.ndarray:
    """Read a raw Kinect depth PGM (P5, 16-bit) -> uint16 disparity [H, W] in 0..2047."""
    path = Path(path)
    if byte_order not in ("little", "big"):
        raise ValueError(f"byte_order must be 'little' or 'big', got {byte_order!r}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "depth frame not found.", "re-extract the raw scene archive.") from None
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:  # magic, width, height, maxval
        m = _TOKEN.match(data, pos)
        if m is None:
            raise DataError(path, "not a PGM file (header incomplete).", "check that this is a d-*.pgm frame.")
        tokens.append(m.group(2))
        pos = m.end()
    if tokens[0] != b"P5":
        raise DataError(path, f"not a binary PGM (magic {tokens[0][:8]!r}, expected b'P5').",
                        "raw depth frames are d-*.pgm files written by the Kinect grabber.")
    if not all(t.isdigit() for t in tokens[1:]):
        raise DataError(path, f"PGM header fields width, height, maxval must be whole numbers, got {[t[:16] for t in tokens[1:]]}.",
                        "the header is damaged; re-extract the raw scene archive.")
    w, h, maxval = (int(t) for t in tokens[1:])
    if not 0 < maxval <= 65535 or w == 0 or h == 0:
        raise DataError(path, f"PGM header is out of range (width {w}, height {h}, maxval {maxval}; the PGM format "
                        "allows maxval 1..65535 and needs a non-empty image).",
                        "the header is damaged; re-extract the raw scene archive.")
    if maxval <= 255:
        raise DataError(path, f"8-bit PGM (maxval {maxval}); raw Kinect disparity is 16-bit.",
                        "use the original d-*.pgm file, not a converted preview.")
    payload = data[pos + 1:]  # exactly one whitespace byte follows maxval
    if len(payload) != w * h * 2:
        raise DataError(path, f"payload is {len(payload)} bytes but the header says {w}x{h}x2 = {w * h * 2}.",
                        "the file is truncated or its header is wrong; re-extract the scene.")
    disp = np.frombuffer(payload, dtype="<u2" if byte_order == "little" else ">u2").reshape(h, w)
    if int(disp.max()) > NO_RETURN:
        other = "big" if byte_order == "little" else "little"
        raise DataError(path, f"disparity reaches {int(disp.max())} > {NO_RETURN} when read {byte_order}-endian: "
                        "the byte order is wrong.", f"open it with byte_order={other!r}.")
    return disp.astype(np.uint16)


def read_raw_pair(rgb_path: str | Path, depth_path: str | Path, *, byte_order: str = "little",
                  calib: KinectCalibration = NYU_CALIBRATION, name: str = "", scene: str = "") -> Frame:
    """One raw RGB + disparity pair -> registered Frame (undistorted RGB uint8 [H,W,3], metres [H,W])."""
    rgb = read_rgb(rgb_path, str(rgb_path))
    disp = read_pgm_disparity(depth_path, byte_order=byte_order)
    if disp.shape != rgb.shape[:2]:
        raise DataError(depth_path, f"depth is {disp.shape[1]}x{disp.shape[0]} but its RGB frame {rgb_path} is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}.", "both raw streams must be 640x480 Kinect frames.")
    depth, valid = register_depth(disp, calib)
    meta = {"rgb_file": str(rgb_path), "depth_file": str(depth_path)}
    return Frame(undistort_rgb(rgb, calib), depth, valid, name or Path(depth_path).stem, scene, meta,
                 float(calib.rgb_intrinsics[0])).check(str(depth_path))


def _timestamp(name: str) -> float:
    return float(_NAME.match(name).group(2))  # type: ignore[union-attr]


def list_scene(scene_dir: Path, *, max_dt: float = 0.05) -> list[tuple[Path, Path, float]]:
    """Pair a scene's depth frames with the nearest RGB frames -> [(rgb, depth, dt seconds)], by time."""
    index = scene_dir / "INDEX.txt"
    if index.is_file():
        names = [ln.strip() for ln in index.read_text(errors="replace").splitlines() if ln.strip()]
        names = [n for n in names if _NAME.match(n)]
        missing = [n for n in names if not n.startswith("a-") and not (scene_dir / n).is_file()]
        if missing:
            raise DataError(scene_dir / missing[0], f"listed in INDEX.txt but missing ({len(missing)} missing "
                            "frame files in this scene).", "re-extract the scene archive, or delete the scene folder.")
    else:
        names = sorted(p.name for p in scene_dir.iterdir() if _NAME.match(p.name))
    rgbs = sorted((n for n in names if n.startswith("r-")), key=_timestamp)
    depths = sorted((n for n in names if n.startswith("d-")), key=_timestamp)
    if not depths:
        raise DataError(scene_dir, f"no depth frames (d-*.pgm) among {len(names)} frame files.",
                        "the scene is incomplete; re-extract it or leave it out of the scene list.")
    if not rgbs:
        raise DataError(scene_dir, "no RGB frames (r-*.ppm).", "the scene is incomplete; re-extract it.")
    times = [_timestamp(n) for n in rgbs]
    pairs = []
    for dn in depths:
        t = _timestamp(dn)
        j = bisect.bisect_left(times, t)
        best = min((k for k in (j - 1, j) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t))
        if abs(times[best] - t) <= max_dt:
            pairs.append((scene_dir / rgbs[best], scene_dir / dn, times[best] - t))
    return pairs


def _is_scene(p: Path) -> bool:
    return (p / "INDEX.txt").is_file() or any(_NAME.match(q.name) for q in p.iterdir())


@register_source("raw_kinect")
class RawKinectSource:
    """Raw NYU scene folder(s) -> registered Frames (one per depth frame with an RGB frame within max_dt)."""

    def __init__(self, path: str, *, scenes: list[str] | None = None, max_dt: float = 0.05,
                 byte_order: str = "little", calib: KinectCalibration = NYU_CALIBRATION) -> None:
        self.path = str(path)
        root = Path(path)
        if not root.is_dir():
            raise DataError(root, "raw scene folder not found.", "point path at a scene folder or a folder of scenes.")
        dirs = [root] if _is_scene(root) else sorted(p for p in root.iterdir() if p.is_dir() and _is_scene(p))
        if scenes is not None:
            known = {d.name for d in dirs}
            unknown = sorted(set(scenes) - known)
            if unknown:
                raise DataError(root, f"scenes {unknown} not found.", f"choose from {sorted(known)[:20]}.")
            dirs = [d for d in dirs if d.name in scenes]
        if not dirs:
            raise DataError(root, "no raw scene folders (INDEX.txt or r-/d- frame files) found.",
                            "extract the NYU raw scene archives here.")
        self.byte_order, self.calib = byte_order, calib
        self._items = [(d.name, r, dp, dt) for d in dirs for r, dp, dt in list_scene(d, max_dt=max_dt)]
        if not self._items:
            raise DataError(root, f"no depth frame has an RGB frame within {max_dt} s.", "raise max_dt.")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Frame:
        scene, rgb, depth, dt = self._items[i]
        f = read_raw_pair(rgb, depth, byte_order=self.byte_order, calib=self.calib,
                          name=f"{scene}/{depth.stem}", scene=scene)
        f.meta["dt"] = dt
        return f

    @property
    def names(self) -> list[str]:
        """Frame ids ``<scene>/d-<timestamp>-<id>``."""
        return [f"{s}/{d.stem}" for s, _, d, _ in self._items]

    @property
    def scenes(self) -> list[str]:
        """Scene folder name of each frame."""
        return [s for s, _, _, _ in self._items]
