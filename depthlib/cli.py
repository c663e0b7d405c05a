"""Command line: `python -m depthlib predict ...` (depth PNGs, colour PNGs, PLY) and `export-onnx`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .atomic import atomic_path
from .errors import ConfigError, DataError, DepthlibError
from .export import DEFAULT_OPSET

# NYU Depth V2 Kinect RGB camera (NYU toolbox camera_params.m), 640x480, 0-based pixel centres.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)  # (H, W)


def scaled_intrinsics(height: int, width: int, k: Sequence[float] = NYU_INTRINSICS,
                      size: tuple[int, int] = NYU_SIZE) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of intrinsics `k` taken at `size` (H, W), rescaled to an image of height x width."""
    sy, sx = height / size[0], width / size[1]
    fx, fy, cx, cy = (float(v) for v in k)
    # Pixel centres sit at integer coordinates, so the principal point scales about -0.5.
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def backproject(depth: np.ndarray, k: Sequence[float]) -> np.ndarray:
    """Depth metres [H,W] -> camera-frame points float32 [H,W,3] (x right, y down, z forward)."""
    fx, fy, cx, cy = k
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1).astype(np.float32)


def ply_bytes(points: np.ndarray, colours: np.ndarray) -> bytes:
    """Binary little-endian PLY of points float[N,3] (metres) with uint8 colours [N,3]."""
    n = len(points)
    rec = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, c in enumerate("xyz"):
        rec[c] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        rec[c] = colours[:, i]
    header = ("ply\nformat binary_little_endian 1.0\ncomment depthlib predict: metres, camera frame "
              "(x right, y down, z forward)\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    return header.encode("ascii") + rec.tobytes()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise ConfigError(f"{what} must be {n} comma-separated numbers, got {text!r}.")
    return vals


def predict_images(images: Sequence[str], *, checkpoint: str, out: str, ply: bool = False,
                   intrinsics: Sequence[float] | None = None, flip_average: bool = True, device: str = "auto",
                   cmap: str = "magma_r",
                   progress: bool = True) -> list[Path]:
    """Write <stem>_depth.png (uint16 mm), <stem>_depth_color.png and optionally <stem>.ply per image."""
    from PIL import Image
    from tqdm import tqdm

    from .data.io import read_rgb, write_depth_png
    from .distributed import resolve_device
    from .predict import predict
    from .viz import colorize
    from .workbook import inference_model

    paths = [Path(p) for p in images]
    for p in paths:
        if not p.is_file():
            raise DataError(p, "no such image file.", "check the path (shell globs that match nothing stay literal).")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"several inputs are named {dup}: their outputs would overwrite each other in {out}. "
                          "Fix: run them with different --out folders.")
    dev = resolve_device(device)
    model = inference_model(checkpoint, device=str(dev))  # replays the training crop/resize, if recorded
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for p in tqdm(paths, desc="predict", unit="image", disable=not progress):
        rgb = read_rgb(p)  # DataError naming the file if it is not a readable image
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float().div_(255.0)
        depth = predict(model, x.to(dev), flip_average=flip_average, out_size=(h, w))[0, 0].float().cpu().numpy()
        targets = {"depth": out_dir / f"{p.stem}_depth.png", "color": out_dir / f"{p.stem}_depth_color.png"}
        _write_atomic(targets["depth"], lambda t: write_depth_png(t, depth, encoding="mm16"))
        _write_atomic(targets["color"], lambda t: Image.fromarray(colorize(depth, cmap=cmap)).save(t, format="PNG"))
        if ply:
            k = tuple(intrinsics) if intrinsics is not None else scaled_intrinsics(h, w)
            pts = backproject(depth, k).reshape(-1, 3)
            targets["ply"] = out_dir / f"{p.stem}.ply"
            data = ply_bytes(pts, rgb.reshape(-1, 3))
            _write_atomic(targets["ply"], lambda t: t.write_bytes(data))
        written += targets.values()
    return written


def _cmd_predict(a: argparse.Namespace) -> int:
    k = None if a.intrinsics is None else _floats(a.intrinsics, 4, "--intrinsics")
    files = predict_images(a.images, checkpoint=a.checkpoint, out=a.out, ply=a.ply, intrinsics=k,
                           flip_average=not a.no_flip, device=a.device, cmap=a.cmap)
    print(f"wrote {len(files)} files to {a.out}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .export import check_onnx, export_onnx, training_size

    model = load_model(a.checkpoint, map_location="cpu")
    trained = training_size(a.checkpoint) or (240, 320)
    height, width = a.height or trained[0], a.width or trained[1]
    path = export_onnx(model, a.out, height=height, width=width, flip_average=a.flip, opset=a.opset,
                       dynamic=not a.no_dynamic)
    msg = f"wrote {path}"
    if not a.no_check:
        gen = torch.Generator().manual_seed(0)
        err = check_onnx(model, path, torch.rand(2, 3, height, width, generator=gen), flip_average=a.flip)
        msg += f" (ONNX Runtime matches PyTorch: max |diff| {err:.2g} m)"
    print(msg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m depthlib`."""
    ap = argparse.ArgumentParser(prog="python -m depthlib", description="depth-workbook command line.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="depth maps (16-bit PNG, mm), colour PNGs and point clouds for images")
    p.add_argument("images", nargs="+", help="RGB image files (any size)")
    p.add_argument("--checkpoint", required=True, help="a depthlib checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--ply", action="store_true", help="also write <stem>.ply coloured point clouds (metres)")
    p.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics of the input images in pixels (default: NYU Kinect RGB, scaled from 640x480)")
    p.add_argument("--no-flip", action="store_true", help="no flip averaging (twice as fast)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--cmap", default="magma_r", help="matplotlib colormap of the colour PNG (default magma_r)")
    p.set_defaults(run=_cmd_predict)
    e = sub.add_parser("export-onnx", help="export a checkpoint to ONNX and check it against ONNX Runtime")
    e.add_argument("--checkpoint", required=True, help="a depthlib checkpoint (.pt)")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--height", type=int, help="example input height, a multiple of the model's input_multiple "
                   "(default: the training image size recorded in the checkpoint, else 240)")
    e.add_argument("--width", type=int, help="example input width (default: as recorded, else 320)")
    e.add_argument("--flip", action="store_true", help="bake flip averaging into the graph")
    e.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    e.add_argument("--no-dynamic", action="store_true", help="fixed input size instead of dynamic batch/H/W")
    e.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    e.set_defaults(run=_cmd_export)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a depthlib error, printed without a traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except DepthlibError as e:
        print(f"depthlib {args.command}: error: {e}", file=sys.stderr)
        return 2
