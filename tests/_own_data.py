"""Build "your own data" folders from real frames: TUM RGB-D layout (1/5000 m) or a CSV list (mm), any size.

Two whole captures, each with the split file a user writes (README, "Fine-tune on your own data"), serve the own
profile's test and benchmarks/bench_own_data.py: `write_sun3d_capture` (another camera: SUN3D's study room, train
on one fragment, hold out the other) and `write_nyu_tum_capture` (NYU frames; the held-out ones never trained on).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from depthlib.core.camera import NYU_KINECT
from depthlib.data import open_source
from depthlib.data.frame import Frame

TUM_SCALE = 1 / 5000  # metres per stored unit in TUM RGB-D depth PNGs
# Real frames of an Asus Xtion (SUN3D), beside the checkout in CI and developer clones; see its README.
SUN3D = Path(__file__).resolve().parents[2] / "shared" / "data" / "other_cameras" / "sun3d_studyroom"
SUN3D_FOCAL = 570.342                       # fx = fy at 640x480, cx = 320, cy = 240
CAPTURE_SIZE = (320, 240)                    # (W, H): 4:3 like the sample model's input, but not NYU's 640x480
NYU_WINDOW = ((6, 474), (8, 632))            # rows, columns of a 640x480 NYU frame inside its white border: 4:3


def resized(frame: Frame, size: tuple[int, int], *, crop_rows: tuple[int, int] | None = None,
            crop_cols: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8, depth float32 m, 0 = no depth) of a frame, cropped then resized to size = (W, H).

    Depth with holes is resized by nearest neighbour (interpolating across a hole would invent depths at its edge).
    """
    r0, r1 = crop_rows or (0, frame.rgb.shape[0])
    c0, c1 = crop_cols or (0, frame.rgb.shape[1])
    rgb, depth, valid = (a[r0:r1, c0:c1] for a in (frame.rgb, frame.depth, frame.valid))
    out_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    how = Image.Resampling.BILINEAR if valid.all() else Image.Resampling.NEAREST
    out_depth = np.asarray(Image.fromarray(np.where(valid, depth, 0).astype(np.float32)).resize(size, how))
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


def write_split_file(path: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """The `name,scene,split` CSV that 01's split_file reads, one row per frame."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "scene", "split"])
        w.writerows(rows)
    return path


def write_sun3d_capture(root: Path, *, source: Path = SUN3D, size: tuple[int, int] = CAPTURE_SIZE,
                        val_frames: int = 5) -> dict:
    """SUN3D's study room as a capture listed in a CSV (rgb,depth,scene,fx,fy,cx,cy), depth uint16 millimetres.

    Fragment 1 trains, its last `val_frames` frames (one contiguous stretch of the walk) validate; fragment 2, the
    room seen from another place, is held out as test. Frames are resized to `size` (RGB bilinear, depth nearest:
    the camera's own holes stay holes). -> the 01 settings: source_path, source_options, split_file.
    """
    src = open_source("pairs", str(source), depth_scale=0.001, rgb="*.color.png", depth="*.depth.png",
                      key=r"frame-(\d+)")
    sx, sy = size[0] / 640, size[1] / 480
    listed, splits = [], []
    scenes = sorted(set(src.scenes))
    for i in range(len(src)):
        frame = src[i]
        scene = f"fragment{scenes.index(frame.scene) + 1}"
        stem = frame.name.rsplit("-", 1)[-1].split(".")[0]            # frame-000935.color -> 000935
        rgb, depth = resized(frame, size)
        for kind, image in (("rgb", rgb), ("depth", np.round(depth * 1000).astype(np.uint16))):
            (root / scene / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / scene / kind / f"{stem}.png")
        listed.append([f"{scene}/rgb/{stem}.png", f"{scene}/depth/{stem}.png", scene,
                       SUN3D_FOCAL * sx, SUN3D_FOCAL * sy, 320 * sx, 240 * sy])
        splits.append([f"{scene}/rgb/{stem}", scene])
    with (root / "frames.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["rgb", "depth", "scene", "fx", "fy", "cx", "cy"], *listed])
    first = [n for n, s in splits if s == "fragment1"]
    val = set(first[-val_frames:])
    split = write_split_file(root / "split.csv", [(n, s, "test" if s != "fragment1" else "val" if n in val else "train")
                                                  for n, s in splits])
    return {"source_path": str(root), "source_options": {"depth_scale": 0.001, "files": "frames.csv"},
            "split_file": str(split)}


def write_nyu_tum_capture(root: Path, sample_dir: Path, *, size: tuple[int, int] = CAPTURE_SIZE) -> dict:
    """Real NYU frames as a TUM capture (1/5000 m PNGs at `size`, one folder per scene), held-out frames unseen.

    The camera is declared as a user declares theirs (`intrinsics` in pixels of the written frames): NYU's Kinect
    inside its white border, the window resized to `size` (fx 518.86 * 320 / 624 = 266.08 px at 320x240).

    Held out (test): the sample's test scene (a bedroom, 5 frames, in-painted depth) and the sample's raw-depth
    basement (3 frames, raw Kinect depth with 25-33 % holes): the sample model never trained on either. Validation:
    the sample's val scene (a bathroom, 2 frames; the sample profile selects by schedule, never by them). Training:
    the sample's 27 training frames, the only real NYU frames left. All are cut to the window inside NYU's white
    border. -> the 01 settings: source_path, source_options, split_file.
    """
    with (sample_dir / "splits.csv").open() as f:
        rows = list(csv.DictReader(f))
    dd = open_source("densedepth", str(sample_dir), split="test")
    index = {n: i for i, n in enumerate(dd.names)}
    frames = [(r["scene"], r["split"], dd[index[r["name"]]]) for r in rows]
    raw = open_source("bts", str(sample_dir / "raw_depth"))
    frames += [("basement", "test", raw[i]) for i in range(len(raw))]
    written = write_tum_folder(root, [(scene, *resized(fr, size, crop_rows=NYU_WINDOW[0], crop_cols=NYU_WINDOW[1]))
                                      for scene, _, fr in frames], hole=False)
    split = write_split_file(root / "split.csv", [(w["name"], w["scene"], s) for w, (_, s, _) in zip(written, frames)])
    return {"source_path": str(root), "source_options": {"depth_scale": TUM_SCALE, "files": "*/associations.txt",
                                                         "intrinsics": nyu_window_intrinsics(size)},
            "split_file": str(split)}


def nyu_window_intrinsics(size: tuple[int, int] = CAPTURE_SIZE) -> list[float]:
    """[fx, fy, cx, cy] of NYU's Kinect for NYU_WINDOW resized to size = (W, H), rounded to 1e-3 px as a user writes them."""
    (r0, r1), (c0, c1) = NYU_WINDOW
    sx, sy = size[0] / (c1 - c0), size[1] / (r1 - r0)
    k = NYU_KINECT
    return [round(v, 3) for v in (k.fx * sx, k.fy * sy, (k.cx - c0) * sx, (k.cy - r0) * sy)]
