"""Command line: `python -m depthlib predict ...` (depth PNGs, colour PNGs, PLY), `export-onnx`, and `pipeline` /
`train`, which hand the rest of the command line to depthlib.notebook.pipeline and depthlib.training.train_cli.

Every path on the command line (images, --checkpoint, --out) is relative to the working directory.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .core.ahead import ahead
from .core.atomic import atomic_path
from .core.camera import NYU_KINECT, Camera, assumed_line, no_camera_space_line, resolve, upright_size
from .core.errors import ConfigError, DataError, DepthlibError
from .core.program import command_name, parse_or_explain

# NYU Depth V2 Kinect RGB camera (NYU toolbox camera_params.m), 640x480, 0-based pixel centres.
NYU_INTRINSICS = NYU_KINECT.intrinsics
NYU_SIZE = (NYU_KINECT.height, NYU_KINECT.width)  # (H, W)


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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
DEFAULT_RANGE = (0.0, 5.0)  # metres: most of an indoor scene (NYU depths beyond 5 m saturate), fixed so images compare


def cli_path(path: str | os.PathLike[str]) -> Path:
    """A command-line path, relative to the working directory (the one rule for every CLI path)."""
    return Path(path).expanduser().absolute()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`; a failed write names the file."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as e:
        raise DataError(path, f"could not be written ({e.strerror or e}); nothing partial was left there.",
                        "free disk space or choose another --out folder.") from e


def _floats(text: str, n: int, what: str, example: str) -> tuple[float, ...]:
    """'a,b,...' -> n floats, or a ConfigError that names the option `what` and shows `example` values."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise ConfigError(f"{what} must be {n} comma-separated numbers, got {text!r}. Fix: e.g. {what} {example}.")
    return vals


def check_intrinsics(k: Sequence[float], what: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) pixels as floats; ConfigError naming `what` unless the focal lengths are positive and all finite.

    A zero focal length divides by zero in backproject: every point of the cloud would be NaN or infinite.
    """
    if len(k) != 4:
        raise ConfigError(f"{what}: intrinsics are 4 numbers FX,FY,CX,CY in pixels, got {len(k)}.")
    fx, fy, cx, cy = (float(v) for v in k)
    if not (fx > 0 and fy > 0 and all(math.isfinite(v) for v in (fx, fy, cx, cy))):
        raise ConfigError(f"{what}: the focal lengths FX, FY must be positive pixels and every value finite, got "
                          f"fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g}. Fix: your camera's calibration, e.g. "
                          "--intrinsics 518.9,519.5,325.6,253.7 (NYU's Kinect at 640x480), or leave --intrinsics out "
                          "for NYU's, scaled to each image.")
    return fx, fy, cx, cy


def _decoded(path: Path) -> tuple[np.ndarray, bool]:
    """(RGB uint8 [H,W,3] of an input image, upright, transparent pixels composited on white; whether it had any);
    DataError naming the file when it is smaller than predict takes."""
    from .data.io import read_photo
    from .models.predict import MIN_SIDE as SMALLEST

    rgb, transparent = read_photo(path)
    h, w = rgb.shape[:2]
    if min(h, w) < SMALLEST:
        raise DataError(path, f"its {w}x{h} pixels (WxH) are too small; the minimum is {SMALLEST}x{SMALLEST}.",
                        "use a larger image (the model was trained on whole room-scale frames), or leave this one out.")
    return rgb, transparent


def _said_transparent(paths: Sequence[Path], decoded: Iterator[tuple[np.ndarray, bool]]) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, RGB) of each decoded image; the first image with transparent pixels is named once, on stderr."""
    from tqdm import tqdm

    said = False
    for p, (rgb, transparent) in zip(paths, decoded):
        if transparent and not said:
            tqdm.write(f"{p.name} has transparent pixels: predict reads RGB, so they are composited on white (said "
                       "once per run; the same for any other such image).", file=sys.stderr)
            said = True
        yield p, rgb


def expand_images(args: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Image files named by `args`: files, folders (their image files, sorted) and glob patterns (sorted)
    -> (images, the entries of the folders that are not image files: "notes.txt", "sub/")."""
    paths: list[Path] = []
    others: list[str] = []
    for a in args:
        p = cli_path(a)
        if p.is_dir():
            entries = sorted(p.iterdir())
            found = [f for f in entries if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                raise DataError(p, f"is a folder without image files ({', '.join(IMAGE_SUFFIXES)}).",
                                "name the images, or a folder that holds some.")
            paths += found
            others += [f"{f.name}/" if f.is_dir() else f.name for f in entries if f not in found]
        elif p.is_file():
            paths.append(p)
        elif glob.has_magic(a):
            found = sorted(Path(f).absolute() for f in glob.glob(os.path.expanduser(a)) if Path(f).is_file())
            if not found:
                raise DataError(p, "this pattern matches no files.", "check the pattern (relative to the working directory).")
            paths += found
        else:
            raise DataError(p, "no such image file or folder.", "check the path (relative to the working directory).")
    return paths, others


def skipped_line(others: Sequence[str], shown: int = 8) -> str:
    """One line counting the folder entries predict leaves alone, naming the first `shown`."""
    n = len(others)
    names = ", ".join(others[:shown]) + (f" and {n - shown} more" if n > shown else "")
    return f"skipped {n} {'entry that is not an image' if n == 1 else 'entries that are not images'}: {names}"


def check_cmap(cmap: str) -> None:
    """ConfigError unless matplotlib knows the colour map `cmap`."""
    import matplotlib

    if cmap not in matplotlib.colormaps:
        near = sorted(c for c in matplotlib.colormaps if c.lower().startswith(cmap[:3].lower()))[:8]
        raise ConfigError(f"--cmap {cmap!r} is not a matplotlib colour map{f' (similar: {near})' if near else ''}. "
                          "Fix: use e.g. magma_r, viridis, turbo, gray.")


def parse_range(text: str) -> tuple[float, float] | None:
    """--range text -> (lo, hi) metres, or None for "auto" (each image's own min..max)."""
    if text.strip().lower() == "auto":
        return None
    lo, hi = _floats(text, 2, "--range", "0,5")
    if not (0.0 <= lo < hi) or not np.isfinite(hi):
        raise ConfigError(f"--range needs 0 <= LO < HI metres, got {text!r}. Fix: e.g. --range 0,10 or --range auto.")
    return lo, hi


def colour_name(stem: str, lo: float, hi: float) -> str:
    """File name of a colour PNG; it states the depth range its colours span, in metres."""
    return f"{stem}_depth_color_{lo:g}-{hi:g}m.png"


def _same_size_batches(items: Iterator[tuple[Path, np.ndarray]], size: int) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """Runs of up to `size` consecutive items whose images share one (H, W): one predict call each.

    An unreadable image ends the run: the images read before it are still yielded (and written) first.
    """
    group: list[tuple[Path, np.ndarray]] = []
    try:
        for item in items:
            if group and (len(group) == size or item[1].shape[:2] != group[0][1].shape[:2]):
                yield group
                group = []
            group.append(item)
    except DataError:
        if group:
            yield group
        raise
    if group:
        yield group


def _write_outputs(p: Path, rgb: np.ndarray, depth: np.ndarray, out_dir: Path, *, ply: bool, camera: Camera,
                   cmap: str, depth_range: tuple[float, float] | None) -> list[Path]:
    """Depth PNG, colour PNG and optional PLY (through `camera`) of one image's depth [H,W] metres, each atomic."""
    from PIL import Image

    from .data.io import write_depth_png
    from .figures.viz import colorize

    # auto: the image's own range, widened to whole centimetres so the file name states it exactly
    lo, hi = depth_range if depth_range is not None else (math.floor(float(depth.min()) * 100) / 100,
                                                          math.ceil(float(depth.max()) * 100) / 100)
    targets = {"depth": out_dir / f"{p.stem}_depth.png", "color": out_dir / colour_name(p.stem, lo, hi)}
    _write_atomic(targets["depth"], lambda t: write_depth_png(t, depth, encoding="mm16"))
    colours = colorize(depth, vmin=lo, vmax=hi, cmap=cmap)
    _write_atomic(targets["color"], lambda t: Image.fromarray(colours).save(t, format="PNG"))
    if ply:
        pts = backproject(depth, camera.intrinsics).reshape(-1, 3)
        targets["ply"] = out_dir / f"{p.stem}.ply"
        data = ply_bytes(pts, rgb.reshape(-1, 3))
        _write_atomic(targets["ply"], lambda t: t.write_bytes(data))
    return list(targets.values())


def predict_images(images: Sequence[str], *, checkpoint: str, out: str, ply: bool = False,
                   intrinsics: Sequence[float] | None = None, focal_35mm: float | None = None,
                   fov: float | None = None, known: Sequence[str] = (), known_file: str | None = None,
                   flip_average: bool = True, device: str = "auto",
                   cmap: str = "magma_r", depth_range: tuple[float, float] | None = DEFAULT_RANGE,
                   progress: bool = True, batch_size: int = 4, bf16: bool = False,
                   border_crop: str = "auto") -> list[Path]:
    """Write <stem>_depth.png (uint16 mm), <stem>_depth_color_<lo>-<hi>m.png and optionally <stem>.ply per image.

    images: files, folders and glob patterns. Every path (images, checkpoint, out) is relative to the
    working directory, as on any command line. Settings are checked before anything is written; every
    file is written atomically. depth_range: the metres mapped onto the colour map (None: each image's
    own min..max); the range used is in the colour PNG's name. Consecutive images of one size are predicted
    in batches of up to `batch_size` while a thread decodes the next ones; bf16: the decoder's stages but its last
    in CPU bfloat16 (native-bf16 CPUs; see depthlib.models.fastpath.prepare_for_inference). border_crop: "auto" replays
    the checkpoint's NYU border crop on 640x480 images (the size that border belongs to), "none" never (a 640x480 camera
    without NYU's white border); see depthlib.inference.load.BORDER_REPLAYS.

    Each image's camera is resolved by depthlib.core.camera.resolve: intrinsics (pixels of every image), focal_35mm
    or fov, the image's EXIF, else the training camera, said once per run. It gives the PLY's geometry and, for a
    checkpoint trained with camera_space="canonical", the depth's scale (predict's fx), so the PNGs, the PLY and
    --known all use the rescaled map; a checkpoint trained on metres keeps its depth (said once when a camera was
    given). known ('X,Y,METRES', one image) or known_file (CSV image,x,y,metres) rescale the depth of the images they
    name before any output is written (depthlib.inference.calibrate), and each such image's residuals are printed.
    """
    import torch
    from tqdm import tqdm

    from .core.distributed import resolve_device
    from .inference import canonical_fx, load_for_inference
    from .inference.calibrate import calibrate, check_inside, known_points, residual_table
    from .models.predict import images_from_rgb, predict

    check_cmap(cmap)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}.")
    if intrinsics is not None:
        intrinsics = check_intrinsics(intrinsics, "intrinsics")
    resolve(NYU_KINECT.width, NYU_KINECT.height, intrinsics=intrinsics, focal_35mm=focal_35mm, fov=fov)  # refuse early
    paths, others = expand_images(images)
    if others:
        print(skipped_line(others), file=sys.stderr)
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"several inputs are named {dup}: their outputs would overwrite each other in {out}. "
                          "Fix: run them with different --out folders.")
    points = known_points(paths, known, known_file)
    for p, pts in points.items():
        check_inside(pts, *upright_size(p), p)
    out_dir = cli_path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: --out names an existing file; it must be a folder. "
                          "Fix: choose a folder name (it is created).")
    dev = resolve_device(device, option="--device")
    # The fast inference copy; it replays the training crop/resize.
    model = load_for_inference(cli_path(checkpoint), device=str(dev), bf16=bf16, border_crop=border_crop)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(out_dir, f"the output folder cannot be created ({e.strerror or e}).",
                        "choose another --out folder.") from e
    written: list[Path] = []
    rescales = canonical_fx(model) is not None
    said_assumed = said_none = False   # each line is said once per run
    with tqdm(total=len(paths), desc="predict", unit="image", disable=not progress) as bar:
        decoded = _said_transparent(paths, ahead(_decoded, paths, threads=1, name="decode"))
        for group in _same_size_batches(decoded, batch_size):
            x = images_from_rgb(torch.from_numpy(np.stack([rgb for _, rgb in group])))   # what the ONNX graph does too
            h, w = group[0][1].shape[:2]
            cameras = [resolve(w, h, intrinsics=intrinsics, focal_35mm=focal_35mm, fov=fov, path=p) for p, _ in group]
            for (p, _), (camera, origin) in zip(group, cameras):
                if origin == "assumed" and not said_assumed:
                    tqdm.write(assumed_line(camera, p, rescales=rescales, known=bool(points)), file=sys.stderr)
                    said_assumed = True
                elif origin != "assumed" and not rescales and not said_none:
                    tqdm.write(no_camera_space_line(ply=ply), file=sys.stderr)
                    said_none = True
            fx = torch.tensor([camera.fx for camera, _ in cameras], dtype=torch.float64)
            depths = predict(model, x.to(dev), flip_average=flip_average, out_size=(h, w),
                             fx=fx)[:, 0].float().cpu().numpy()
            for (p, rgb), depth, (camera, _) in zip(group, depths, cameras):
                if p in points:
                    cal = calibrate(depth, points[p], p)
                    depth = cal.depth
                    tqdm.write(residual_table(cal, p.name))
                written += _write_outputs(p, rgb, depth, out_dir, ply=ply, camera=camera, cmap=cmap,
                                          depth_range=depth_range)
                bar.update(1)
    return written


def _cmd_predict(a: argparse.Namespace) -> int:
    k = None if a.intrinsics is None else check_intrinsics(
        _floats(a.intrinsics, 4, "--intrinsics", "518.9,519.5,325.6,253.7"), f"--intrinsics {a.intrinsics}")
    files = predict_images(a.images, checkpoint=a.checkpoint, out=a.out, ply=a.ply, intrinsics=k,
                           focal_35mm=a.focal_35mm, fov=a.fov, known=a.known or (), known_file=a.known_file,
                           flip_average=not a.no_flip, device=a.device, cmap=a.cmap,
                           depth_range=parse_range(a.range), batch_size=a.batch_size, bf16=a.bf16,
                           border_crop=a.border_crop)
    print(f"wrote {len(files)} files to {cli_path(a.out)}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .inference import load_for_inference
    from .inference.export import check_exported, export_onnx, graph_shapes

    checkpoint = cli_path(a.checkpoint)
    model = load_for_inference(checkpoint)  # what `depthlib predict` runs: its crop, resize and padding go in the graph
    trained = getattr(model, "input_size", None) or (240, 320)
    height, width = a.height or int(trained[0]), a.width or int(trained[1])
    shape = (f"fixed 1x{height}x{width}x3 uint8 input" if a.no_dynamic
             else "dynamic batch and size: can take minutes on a CPU")
    print(f"exporting {checkpoint} to ONNX ({shape})...", file=sys.stderr, flush=True)
    path = export_onnx(model, cli_path(a.out), height=height, width=width, flip_average=a.flip, opset=a.opset,
                       dynamic=not a.no_dynamic)
    inputs, output = graph_shapes(model, (height, width) if a.no_dynamic else None)
    msg = f"wrote {path}: {inputs} -> {output}, as `depthlib predict" + \
        ("`" if a.flip else " --no-flip`") + " (its steps are in the file's metadata_props)"
    if not a.no_check:
        try:
            err = check_exported(model, path, height=height, width=width, dynamic=not a.no_dynamic,
                                 flip_average=a.flip)
        except BaseException:
            Path(path).unlink(missing_ok=True)    # a file that failed its check is not left behind as if it were good
            raise
        msg += f"\nONNX Runtime matches predict: max |diff| {err:.2g} m"
    print(msg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m depthlib`."""
    # from core, not from the modules that use them: those load torch, and --help answers at once without it
    from .core.limits import BORDER_REPLAYS, DEFAULT_OPSET, MAX_SIDE, MIN_SIDE

    ap = argparse.ArgumentParser(prog=command_name(), description="depth-workbook command line.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="depth maps (16-bit PNG, mm), colour PNGs and point clouds for images")
    p.add_argument("images", nargs="+", help="RGB image files (any size >= 8x8), folders of images, or quoted "
                   "glob patterns such as 'photos/*.jpg'")
    p.add_argument("--checkpoint", required=True, help="a depthlib checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--ply", action="store_true", help="also write <stem>.ply coloured point clouds (metres)")
    p.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics of the input images in pixels, for the PLY. The camera of an image is, in "
                   "this order: --intrinsics, --focal-35mm or --fov, its EXIF focal length, else the training camera "
                   "(NYU Kinect RGB, scaled from 640x480), said once per run")
    p.add_argument("--focal-35mm", type=float, metavar="MM",
                   help="35 mm-equivalent focal length of the images (a phone's main camera: about 26)")
    p.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view of the images in degrees")
    p.add_argument("--known", action="append", metavar="X,Y,METRES",
                   help="a distance measured at pixel X,Y of the image as shown (repeatable; one input image only): "
                   "the depth is rescaled to the known distances and the residual at each is printed")
    p.add_argument("--known-file", metavar="CSV", help="known distances of several images: a CSV with the header "
                   "image,x,y,metres, image being a file's name or its path as given")
    p.add_argument("--no-flip", action="store_true", help="no flip averaging (twice as fast)")
    p.add_argument("--border-crop", choices=BORDER_REPLAYS, default="auto",
                   help="auto (default): a checkpoint trained on NYU's border-cropped frames gets that crop replayed on "
                   "640x480 images only, the size NYU's white border belongs to (other sizes are resized whole); none: "
                   "never, for a 640x480 camera without that border (its edge columns are then predicted, not "
                   "replicated)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--cmap", default="magma_r", help="matplotlib colormap of the colour PNG (default magma_r)")
    p.add_argument("--range", default=f"{DEFAULT_RANGE[0]:g},{DEFAULT_RANGE[1]:g}", metavar="LO,HI",
                   help="metres spanned by the colour map, the same for every image (default %(default)s); "
                   "'auto' stretches each image to its own min..max. The colour PNG's name states the range")
    p.add_argument("--batch-size", type=int, default=4, help="images of one size predicted together (default 4)")
    p.add_argument("--bf16", action="store_true",
                   help="run most of the decoder in bfloat16 (CPUs with native bf16 only: avx512_bf16 / amx_bf16); "
                        "faster, depths within about a millimetre of float32")
    p.set_defaults(run=_cmd_predict)
    e = sub.add_parser(
        "export-onnx", help="export a checkpoint to ONNX as `predict` runs it, and check it against ONNX Runtime",
        description="The graph takes `image` uint8[B,H,W,3] RGB as decoded (no normalisation) and returns `depth` "
        "float32[B,1,H,W] in metres at the input's size: the checkpoint's border crop and resize, the padding and "
        "(--flip) flip averaging are inside, so ONNX Runtime alone gives `depthlib predict`'s depth within 1 mm. The "
        "NYU border crop applies to 640x480 inputs only, decided in the graph by the input's size, as predict does. "
        "A checkpoint trained with camera_space='canonical' also takes `fx` float32[B], each image's focal length in "
        "pixels of its width, and scales its depth by it, as predict does with the image's camera.")
    e.add_argument("--checkpoint", required=True, help="a depthlib checkpoint (.pt)")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--height", type=int, help="example input height (default: the training image size recorded in the "
                   f"checkpoint, else 240); a dynamic graph accepts any H, W in {MIN_SIDE}..{MAX_SIDE}, a --no-dynamic "
                   "one exactly this")
    e.add_argument("--width", type=int, help="example input width (default: as recorded, else 320)")
    e.add_argument("--flip", action="store_true", help="bake flip averaging into the graph (as predict without --no-flip)")
    e.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    e.add_argument("--no-dynamic", action="store_true", help="fixed input 1 x HEIGHT x WIDTH x 3 instead of dynamic "
                   "batch/H/W; the crop is decided for that size (--height 480 --width 640: NYU frames, cropped)")
    e.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison with predict")
    e.set_defaults(run=_cmd_export)
    for name, (run, text) in FORWARDED.items():
        f = sub.add_parser(name, help=text, add_help=False)  # its own parser reads the rest: `depthlib NAME --help`
        f.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        f.set_defaults(run=lambda a, run=run: run(a.rest))
    return ap


def _pipeline(argv: Sequence[str]) -> int:
    """`depthlib pipeline ...`: the numbered notebooks in order (depthlib.notebook.pipeline)."""
    from .notebook.pipeline import main as pipeline_main  # late: only this subcommand needs papermill

    return int(pipeline_main(list(argv)))


def _train(argv: Sequence[str]) -> int:
    """`depthlib train ...`: fit on a prepared dataset, under torchrun too (depthlib.training.train_cli)."""
    from .training.train_cli import main as train_main

    return int(train_main(list(argv)))


# Subcommands with a parser of their own, handed the rest of the command line (options first included, which
# argparse's REMAINDER would refuse): name -> (runner, the line `depthlib --help` shows).
FORWARDED: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "pipeline": (_pipeline, "run the numbered notebooks in order with papermill (`depthlib pipeline --help`)"),
    "train": (_train, "train a model on a prepared dataset, on one GPU or under torchrun (`depthlib train --help`)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a depthlib error, printed without a traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        return FORWARDED[argv[0]][0](argv[1:])
    args = parse_or_explain(build_parser(), argv)
    try:
        return int(args.run(args))
    except DepthlibError as e:
        print(f"depthlib {args.command}: error: {e}", file=sys.stderr)
        return 2
