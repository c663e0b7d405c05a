"""ONNX export of what `depthlib predict` runs (torch.export, then torch.onnx), and its check against predict.

The graph takes the image as decoded: `image` uint8[B,H,W,3] RGB (height x width x channel, as PIL,
imageio and OpenCV after BGR->RGB give it) and returns `depth` float32[B,1,H,W] in metres at the
input's size. It is depthlib.models.predict's own arithmetic (depthlib.models.predict.depth_at_input_size), traced:
/ 255, the checkpoint's border crop and resize (depthlib.models.adapter.InputAdapter), the padding,
the network with its encoder's normalisation, the placement back on the input grid, the upsampling and
(with flip_average) the flip averaging. So ONNX Runtime alone reproduces `depthlib predict` (within
1e-5 m on the tiny test models; the check allows 1 mm).

Shapes: a dynamic graph takes any batch and H, W in MIN_SIDE..MAX_SIDE, as predict; the NYU border crop,
which belongs to 640x480 frames only, is decided in the graph by the input's size (an ONNX If), as
predict decides it. A fixed graph (dynamic=False) takes exactly 1xHxWx3 and its crop decision is made
for that size at export. The file's metadata_props state which, with the units and the steps.

A checkpoint trained with camera_space="canonical" predicts depth for its canonical camera, so its graph takes a
second input, `fx` float32[B]: each image's horizontal focal length in pixels of its own width (predict's fx); the
depth is multiplied by f / canonical_fx inside, f being fx after the crop and resize (NaN: the canonical camera,
unscaled). A checkpoint trained on metres has no such input: its depth does not depend on the camera. The
metadata (depthlib.camera_space) says which.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..core.atomic import atomic_path
from ..core.errors import ConfigError, DepthlibError
from ..core.limits import DEFAULT_OPSET, MAX_SIDE  # noqa: F401  (imported from here too)
from ..core.paths import resolve
from ..models.predict import MIN_SIDE, depth_at_input_size, images_from_rgb, predict

INPUT_NAME = "image"
FX_NAME = "fx"  # the second input of a canonical checkpoint's graph
OUTPUT_NAME = "depth"
MAX_BATCH = 1024
MM = 1e-3  # metres: how close to predict the export promises to be
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ExportError(DepthlibError):
    """The ONNX export failed, or ONNX Runtime disagrees with depthlib.models.predict."""


class PredictGraph(nn.Module):
    """What the ONNX file computes: uint8 RGB [B,H,W,3] -> metres float[B,1,H,W], through depthlib.models.predict's path."""

    def __init__(self, model: nn.Module, flip_average: bool = False) -> None:
        super().__init__()
        self.model = model
        self.flip_average = flip_average

    def forward(self, rgb: Tensor) -> Tensor:
        """uint8 [B,H,W,3] -> float[B,1,H,W] metres, as predict(model, images_from_rgb(rgb), flip_average)."""
        return depth_at_input_size(self.model, images_from_rgb(rgb), flip_average=self.flip_average)


class CanonicalPredictGraph(PredictGraph):
    """PredictGraph of a camera_space="canonical" model: (uint8 RGB [B,H,W,3], fx float[B] pixels of W) -> metres."""

    def forward(self, rgb: Tensor, fx: Tensor) -> Tensor:  # type: ignore[override]
        """As predict(model, images_from_rgb(rgb), flip_average, fx=fx)."""
        return depth_at_input_size(self.model, images_from_rgb(rgb), flip_average=self.flip_average, fx=fx)


def takes_fx(model: nn.Module) -> bool:
    """Whether the graph of `model` takes the images' focal lengths (a camera_space="canonical" checkpoint)."""
    return getattr(model, "canonical_fx", None) is not None


def _crop(model: nn.Module) -> tuple[tuple[int, int, int, int], tuple[int, int] | None] | None:
    """(border (top, bottom, left, right), the frame size it applies to or None for every size), None without a crop."""
    border = tuple(getattr(model, "border", ()) or ())
    return (border, getattr(model, "border_frame", None)) if any(border) else None


def _check_size(height: int, width: int) -> None:
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise ConfigError(
            f"export size {height}x{width} (HxW) is outside {MIN_SIDE}..{MAX_SIDE} pixels per side, the range the "
            f"exported graph accepts. Fix: use e.g. --height {min(max(height, MIN_SIDE), MAX_SIDE)} "
            f"--width {min(max(width, MIN_SIDE), MAX_SIDE)}; larger images can be resized down before the model."
        )


def _first_line(e: BaseException) -> str:
    """First line of an error message without terminal colour codes (torch.export adds them)."""
    text = _ANSI.sub("", str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _steps(model: nn.Module, flip_average: bool, fixed: tuple[int, int] | None) -> str:
    """The graph's pre- and post-processing in words, in order."""
    steps = ["divides by 255"]
    crop = _crop(model)
    if crop:
        (t, b, l, r), frame = crop
        where = "of every input" if frame is None else f"only when the input is {frame[0]}x{frame[1]} (HxW)"
        if fixed is not None and frame is not None:
            always = tuple(fixed) == tuple(frame)
            where += f" (this fixed graph's input is {fixed[0]}x{fixed[1]}: it {'always' if always else 'never'} crops)"
        steps.append(f"crops the border ({t} rows top, {b} bottom, {l} columns left, {r} right) {where}, as the "
                     "checkpoint's training did")
    size = getattr(model, "input_size", None)
    if size:
        steps.append(f"resizes to {size[0]}x{size[1]} (HxW, bilinear, antialiased), the training size")
    else:
        steps.append(f"replicate-pads the bottom and right to a multiple of {model.input_multiple} pixels")
    net = getattr(model, "model", model)
    if hasattr(net, "mean") and hasattr(net, "std"):
        mean, std = ([round(v, 4) for v in t.flatten().tolist()] for t in (net.mean, net.std))
        steps.append(f"normalises with the encoder's mean {mean} and std {std}")
    steps.append("runs the network and converts its output to metres")
    if size:
        steps.append(f"places that prediction back over the {'cropped window' if crop else 'image'} on the input "
                     f"grid at 1/{model.output_stride} of its size (bilinear)")
    if flip_average:
        steps.append(f"averages it with the prediction of the mirrored {'window' if crop else 'image'}, mirrored back")
    steps.append(f"upsamples x{model.output_stride} (bilinear) and cuts to the input's size")
    if takes_fx(model):
        steps.append(f"multiplies by f / {model.canonical_fx:.4f}, f being the input {FX_NAME} after the crop and resize")
    return "in the graph: feed the image as decoded (uint8 RGB, no normalisation); the graph " + "; ".join(steps)


def graph_shapes(model: nn.Module, fixed: tuple[int, int] | None = None) -> tuple[str, str]:
    """(inputs, output) of the graph exported from `model` in words, with their shapes: [B,H,W,3] -> [B,1,H,W] for a
    dynamic graph, the fixed [1,H,W,3] -> [1,1,H,W] of a fixed one (fixed (H, W)); what `export-onnx` prints."""
    b, h, w = ("B", "H", "W") if fixed is None else (1, *fixed)
    image = f"uint8 RGB [{b},{h},{w},3]"
    inputs = (f"{image} and {FX_NAME} float32[{b}] (each image's focal length in pixels of its width: the model was "
              "trained in a canonical camera space)" if takes_fx(model) else image)
    return inputs, f"depth in metres [{b},1,{h},{w}]"


def onnx_metadata(model: nn.Module, *, flip_average: bool = False, fixed: tuple[int, int] | None = None) -> dict[str, str]:
    """metadata_props of the graph exported from `model` (as predict runs it): fixed (H, W), or None for dynamic."""
    if fixed is None:
        shape = (f"{INPUT_NAME}: uint8[B,H,W,3] RGB (not BGR), 0..255, height x width x channel; any batch "
                 f"1..{MAX_BATCH} and H, W in {MIN_SIDE}..{MAX_SIDE}")
    else:
        shape = (f"{INPUT_NAME}: uint8[1,{fixed[0]},{fixed[1]},3] RGB (not BGR), 0..255, height x width x channel; "
                 f"fixed: only this shape")
    size = getattr(model, "input_size", None)
    crop = _crop(model)
    at = "x".join(str(int(v)) for v in size) if size else "the input's size"
    batch = "B" if fixed is None else "1"
    camera = (f"canonical: trained in a canonical camera space of fx {model.canonical_fx:.4f} px at {at} (HxW); input "
              f"{FX_NAME}: float32[{batch}], each image's horizontal focal length in pixels of its own width (NaN: the canonical "
              "camera); the depth is metres for that camera" if takes_fx(model) else
              "none: trained on metres as read; no focal-length input, the depth does not depend on the camera")
    return {
        "depthlib.input": shape,
        "depthlib.output": (f"{OUTPUT_NAME}: float32[B,1,H,W], depth in metres at the input's H, W" if fixed is None else
                            f"{OUTPUT_NAME}: float32[1,1,{fixed[0]},{fixed[1]}], depth in metres at the input's size; "
                            "fixed: only this shape"),
        "depthlib.camera_space": camera,
        "depthlib.units": "metres",
        "depthlib.preprocessing": _steps(model, flip_average, fixed),
        "depthlib.equals": "depthlib predict (--no-flip unless flip_average is true) on the same image, within 1 mm",
        "depthlib.shape": "dynamic" if fixed is None else "fixed",
        "depthlib.depth_range": f"{getattr(model.head, 'min_depth', '?')}..{getattr(model.head, 'max_depth', '?')} m",
        "depthlib.arch": str(getattr(model, "arch", type(model).__name__)),
        "depthlib.flip_average": str(bool(flip_average)).lower(),
        "depthlib.training_image_size": "x".join(str(int(v)) for v in size) if size else "any",
        "depthlib.border_crop": ("none" if not crop else f"{crop[0]} (top, bottom, left, right) on "
                                 + ("every input" if crop[1] is None else f"{crop[1][0]}x{crop[1][1]} inputs")),
    }


def _add_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store `meta` in the ONNX file's metadata_props (in place)."""
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, height: int = 240, width: int = 320,
                flip_average: bool = False, opset: int = DEFAULT_OPSET, dynamic: bool = True) -> Path:
    """Write PredictGraph(model) as ONNX at `path` atomically: uint8 [B,H,W,3] -> metres float[B,1,H,W].

    model: what predict runs (depthlib.inference.load_for_inference's copy: an InputAdapter when the checkpoint
    recorded its training input; a bare model runs as given). dynamic: any batch and H, W in
    MIN_SIDE..MAX_SIDE; else exactly 1 x height x width x 3. The metadata describes the graph (onnx_metadata).
    """
    _check_size(height, width)
    model = copy.deepcopy(model).eval().cpu()  # the caller's model keeps its device and mode
    for p in model.parameters():
        p.requires_grad_(False)
    canonical = takes_fx(model)
    graph = (CanonicalPredictGraph if canonical else PredictGraph)(model, flip_average=flip_average).eval()
    # A dynamic batch needs an example of 2: torch.export fixes a size-1 example dimension.
    gen = torch.Generator().manual_seed(0)
    batch = 2 if dynamic else 1
    example: tuple[Tensor, ...] = (torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=gen),)
    if canonical:
        example += (torch.full((batch,), float(width), dtype=torch.float32),)
    shapes = None
    if dynamic:
        # DYNAMIC, not a named Dim: a named Dim refuses any guard its range does not prove, and symbolic shapes
        # cannot prove some that hold for every size (1 % (2 * ceil(W / 4)) != 0 in a padded U-Net's output).
        # The same goes for the crop branch's window on sizes it never sees (H - 12 != 1). Whatever is traced wrongly
        # shows in check_exported, which runs the graph at several sizes.
        side = torch.export.Dim.DYNAMIC(min=MIN_SIDE, max=MAX_SIDE)
        shapes = ({0: torch.export.Dim.DYNAMIC(min=1, max=MAX_BATCH), 1: side, 2: side},)
        if canonical:
            shapes += ({0: torch.export.Dim.DYNAMIC(min=1, max=MAX_BATCH)},)
    out = resolve(path)
    fix = "Fix: try --no-dynamic (fixed input size) or another --opset."
    try:
        # torch.export first, on its own: torch.onnx.export given the module falls back to a draft export that
        # silently fixes what it cannot trace (it wrote a graph that lost a column on odd widths).
        program = torch.export.export(graph, example, dynamic_shapes=shapes, strict=False)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ExportError(f"{out}: torch.export of {getattr(model, 'arch', '?')} failed: {_first_line(e)}. {fix}") from e
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp_path:
            try:
                torch.onnx.export(program, example, str(tmp_path), dynamo=True,
                                  input_names=[INPUT_NAME, FX_NAME] if canonical else [INPUT_NAME],
                                  output_names=[OUTPUT_NAME], opset_version=opset, external_data=False, verbose=False)
            except (RuntimeError, ValueError, TypeError) as e:  # onnxscript's translation failures
                raise ExportError(f"{out}: ONNX export of {getattr(model, 'arch', '?')} failed: {_first_line(e)}. "
                                  f"{fix}") from e
            fixed = None if dynamic else (height, width)
            _add_metadata(tmp_path, onnx_metadata(model, flip_average=flip_average, fixed=fixed))
    except OSError as e:
        raise ExportError(f"{out}: could not be written ({e.strerror or e}); nothing partial was left there. "
                          "Fix: free disk space or choose another --out.") from e
    return out


def run_onnx(path: str | os.PathLike[str], rgb: Tensor | np.ndarray, fx: Tensor | np.ndarray | None = None) -> Tensor:
    """Run an exported file in ONNX Runtime (CPU): uint8 RGB [B,H,W,3] (and, for a graph with the input, fx float[B]
    pixels of W) -> metres float[B,1,H,W]."""
    import onnxruntime as ort

    p = resolve(path)
    x = rgb.detach().cpu().numpy() if isinstance(rgb, Tensor) else np.asarray(rgb)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ExportError(f"{p}: the graph takes uint8 [B,H,W,3] RGB, got {x.dtype} {list(x.shape)}. Fix: pass the "
                          "decoded image as it is (e.g. np.array(PIL.Image.open(f).convert('RGB'))[None]).")
    if not p.is_file():
        raise ExportError(f"{p}: no such ONNX file. Fix: export one with `python -m depthlib export-onnx`.")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on initializers it drops are not the user's business
    session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    feeds = {INPUT_NAME: np.ascontiguousarray(x)}
    wants_fx = FX_NAME in [i.name for i in session.get_inputs()]
    if wants_fx != (fx is not None):
        raise ExportError(f"{p}: " + (f"the graph takes each image's focal length ({FX_NAME} float32[B], pixels of its "
                                      "width): its model was trained in a canonical camera space. Fix: pass fx."
                                      if wants_fx else "the graph takes no focal length (its model was trained on "
                                      "metres). Fix: leave fx out."))
    if fx is not None:
        f = fx.detach().cpu().numpy() if isinstance(fx, Tensor) else np.asarray(fx)
        feeds[FX_NAME] = np.ascontiguousarray(f, dtype=np.float32).reshape(-1)
    (y,) = session.run([OUTPUT_NAME], feeds)
    return torch.from_numpy(y)


def check_onnx(model: nn.Module, path: str | os.PathLike[str], rgb: Tensor | np.ndarray, *,
               flip_average: bool = False, atol: float = MM, fx: Tensor | None = None) -> float:
    """Max |ONNX Runtime - depthlib.models.predict| in metres on the same uint8 rgb [B,H,W,3] (and focal lengths fx
    float[B], for a graph that takes them); ExportError above atol."""
    x = torch.as_tensor(np.asarray(rgb))
    got = run_onnx(path, x, fx)
    expected = predict(model, images_from_rgb(x), flip_average=flip_average, fx=fx).float().cpu()
    if got.shape != expected.shape:
        raise ExportError(f"{resolve(path)}: ONNX output shape {tuple(got.shape)} != predict's {tuple(expected.shape)}. "
                          "Fix: re-export with this depthlib version.")
    err = float((got - expected).abs().max())
    if not err <= atol:  # also catches NaN
        raise ExportError(f"{resolve(path)}: ONNX Runtime differs from predict by {err:.3g} m (> {atol:g}) on "
                          f"{x.shape[1]}x{x.shape[2]} images. Fix: re-export with another --opset, or report the "
                          "operator that drifts.")
    return err


def check_sizes(model: nn.Module, height: int, width: int, dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, H, W) inputs that check a graph: its example size; for a dynamic one also an odd size and, when it
    carries a frame's crop, that frame size (the other branch of its crop decision)."""
    if not dynamic:
        return [(1, height, width)]
    sizes = [(2, height, width), (1, 61, 83)]
    crop = _crop(model)
    if crop and crop[1] is not None and tuple(crop[1]) != (height, width):
        sizes.append((1, *crop[1]))
    return sizes


def check_exported(model: nn.Module, path: str | os.PathLike[str], *, height: int, width: int, dynamic: bool,
                   flip_average: bool = False) -> float:
    """check_onnx on random uint8 images of each of check_sizes -> the largest difference from predict (metres); a
    graph that takes focal lengths gets a different one per image (0.6 to 1.5 times the image's width)."""
    gen = torch.Generator().manual_seed(0)

    def fx(b: int, w: int) -> Tensor | None:
        return torch.linspace(0.6 * w, 1.5 * w, b) if takes_fx(model) else None

    return max(check_onnx(model, path, torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=gen),
                          flip_average=flip_average, fx=fx(b, w)) for b, h, w in check_sizes(model, height, width, dynamic))
