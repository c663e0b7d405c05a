"""Build "your own data" folders from real sample frames: TUM RGB-D layout, depth in 1/5000 m, any size."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from depthlib.data.frame import Frame

TUM_SCALE = 1 / 5000  # metres per stored unit in TUM RGB-D depth PNGs


def resized(frame: Frame, size: tuple[int, int], *, crop_rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, depth float32 m) of a hole-free frame, rows cropped then resized to size = (W, H)."""
    rgb, depth = frame.rgb, frame.depth
    if crop_rows is not None:
        rgb, depth = rgb[crop_rows[0]:crop_rows[1]], depth[crop_rows[0]:crop_rows[1]]
    out_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    out_depth = np.asarray(Image.fromarray(depth.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    return out_rgb, out_depth.astype(np.float32)


def write_tum_folder(root: Path, frames: Iterable[tuple[str, np.ndarray, np.ndarray]], *, hole: bool = True) -> list[dict]:
    """Write <root>/<scene>/{rgb,depth}/<timestamp>.png + associations.txt (TUM associate.py format).

    Depth is uint16 in 1/5000 m, 0 = no depth; with `hole`, a block of each frame is a hole. RGB and depth
    timestamps differ (as in TUM), so only the association list pairs them. Returns what was written per frame.
    """
    written, lists = [], {}
    for k, (scene, rgb, depth) in enumerate(frames):
        d = root / scene
        (d / "rgb").mkdir(parents=True, exist_ok=True)
        (d / "depth").mkdir(parents=True, exist_ok=True)
        t_rgb = 1305031102.175304 + 0.0333 * k
        t_depth = t_rgb + 0.0117
        codes = np.round(depth / TUM_SCALE).astype(np.uint16)
        if hole:
            h, w = codes.shape
            codes[h // 4 + k % 5: h // 2, w // 3: w // 3 + w // 8] = 0
        Image.fromarray(rgb).save(d / "rgb" / f"{t_rgb:.6f}.png")
        Image.fromarray(codes).save(d / "depth" / f"{t_depth:.6f}.png")
        lists.setdefault(scene, []).append(f"{t_rgb:.6f} rgb/{t_rgb:.6f}.png {t_depth:.6f} depth/{t_depth:.6f}.png")
        written.append({"scene": scene, "name": f"{scene}/rgb/{t_rgb:.6f}", "rgb": rgb, "codes": codes})
    for scene, lines in lists.items():
        (root / scene / "associations.txt").write_text(
            "# associate.py rgb.txt depth.txt\n# timestamp rgb timestamp depth\n" + "\n".join(lines) + "\n")
    return written
