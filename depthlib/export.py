"""ONNX export of a depth model (torch.onnx.export, the torch.export-based exporter) and its check.

The exported graph takes RGB float[B,3,H,W] in [0,1] (any H, W from MIN_SIDE to MAX_SIDE; batch, H and
W are dynamic) and returns depth in metres float[B,1,H,W]: the ImageNet normalisation, the replicate
padding to model.input_multiple and its removal, the head's conversion and the x`output_stride`
bilinear upsampling are inside the graph, so a deployer needs no depthlib code and gets exactly
depthlib.predict(model, x) of the bare network.

Not inside: the training crop / resize that `depthlib predict` replays from the checkpoint (see
depthlib.inference). The graph runs the network on the image as given; to match `depthlib predict`
on NYU frames, cut the NYU border and resize to the training size first (both recorded in the file's
metadata_props, with the units and the input convention). `check_onnx` runs the file in ONNX Runtime
and compares it with depthlib.predict.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .atomic import atomic_path
from .errors import ConfigError, DepthlibError
from .paths import resolve

INPUT_NAME = "image"
OUTPUT_NAME = "depth"
DEFAULT_OPSET = 18
MAX_SIDE = 4096  # upper bound of the dynamic H / W (torch.export needs a finite range)
MIN_SIDE = 8     # as depthlib.predict.MIN_SIDE
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ExportError(DepthlibError):
    """The ONNX export failed, or ONNX Runtime disagrees with PyTorch."""


class DepthOutput(nn.Module):
    """Wraps a DepthModel: RGB float[B,3,H,W] in [0,1] -> metres float[B,1,H,W] (optionally flip-averaged)."""

    def __init__(self, model: nn.Module, flip_average: bool = False) -> None:
        super().__init__()
        self.model = model
        self.flip_average = flip_average

    def forward(self, x: Tensor) -> Tensor:
        """Same arithmetic as depthlib.predict: replicate-pad to input_multiple, predict, upsample, cut the padding."""
        h, w = x.shape[-2], x.shape[-1]
        m = self.model.input_multiple
        x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
        depth = self.model.head.to_depth(self.model(x))
        if self.flip_average:
            depth = 0.5 * (depth + self.model.head.to_depth(self.model(x.flip(-1))).flip(-1))
        s = self.model.output_stride
        if s != 1:
            depth = F.interpolate(depth, scale_factor=s, mode="bilinear", align_corners=False)
        return depth[..., :h, :w]


def training_data(checkpoint: str | os.PathLike[str]) -> dict:
    """The input settings the checkpoint's model was trained with (extra.train_config.data), {} if unrecorded."""
    from .checkpoint import load_checkpoint

    extra = load_checkpoint(checkpoint, map_location="cpu").get("extra") or {}
    return dict((extra.get("train_config") or {}).get("data") or {})


def training_size(checkpoint: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(H, W) the checkpoint's model was trained at (extra.train_config.data.image_size), None if unrecorded."""
    size = training_data(checkpoint).get("image_size")
    return None if not size else (int(size[0]), int(size[1]))


def _check_size(model: nn.Module, height: int, width: int) -> None:
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


def onnx_metadata(model: nn.Module, *, train_data: dict | None = None, flip_average: bool = False) -> dict[str, str]:
    """metadata_props of an exported file: units, input convention and the preprocessing left to the deployer."""
    meta = {
        "depthlib.output": f"{OUTPUT_NAME}: float[B,1,H,W], depth in metres (the same H, W as the input)",
        "depthlib.units": "metres",
        "depthlib.input": f"{INPUT_NAME}: float[B,3,H,W], RGB (not BGR) in [0, 1], any H, W in {MIN_SIDE}..{MAX_SIDE}",
        "depthlib.input_normalisation": "none needed: the graph subtracts the ImageNet mean and divides by its std",
        "depthlib.depth_range": f"{getattr(model.head, 'min_depth', '?')}..{getattr(model.head, 'max_depth', '?')} m",
        "depthlib.arch": str(getattr(model, "arch", type(model).__name__)),
        "depthlib.flip_average": str(bool(flip_average)).lower(),
    }
    if train_data:
        size = train_data.get("image_size")
        crop = train_data.get("border_crop", "none")
        meta["depthlib.training_image_size"] = "x".join(str(int(v)) for v in size) if size else "any"
        meta["depthlib.training_border_crop"] = str(crop)
        meta["depthlib.preprocessing"] = (
            "not in the graph: to match `depthlib predict`, "
            + ("cut the NYU border (6 rows top and bottom, 7 columns left, 8 right) of 640x480 NYU frames, " if crop == "nyu" else "")
            + (f"resize to {size[0]}x{size[1]} (HxW, bilinear, antialiased), run, then resize the depth back" if size else "")
        ).rstrip(", ")
    return meta


def _add_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store `meta` in the ONNX file's metadata_props (in place)."""
    import onnx

    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, height: int = 240, width: int = 320,
                flip_average: bool = False, opset: int = DEFAULT_OPSET, dynamic: bool = True,
                train_data: dict | None = None) -> Path:
    """Write `model` (eval mode, CPU) as ONNX at `path` atomically; example input float[1,3,height,width].

    train_data: the checkpoint's recorded input settings (image_size, border_crop), stored in the
    metadata with the units and input convention (see onnx_metadata).
    """
    _check_size(model, height, width)
    model = copy.deepcopy(model).eval().cpu()  # the caller's model keeps its device and mode
    wrapped = DepthOutput(model, flip_average=flip_average).eval()
    example = (torch.rand(1, 3, height, width),)
    shapes = None
    if dynamic:
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE),
                   3: torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)},)
    out = resolve(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp_path:
            tmp = str(tmp_path)
            try:
                torch.onnx.export(wrapped, example, tmp, dynamo=True, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], dynamic_shapes=shapes, opset_version=opset,
                                  external_data=False, verbose=False)
            except (RuntimeError, ValueError, TypeError) as e:  # torch.export / onnxscript failures
                raise ExportError(f"{out}: ONNX export of {getattr(model, 'arch', '?')} failed: {_first_line(e)}. "
                                  "Fix: try --no-dynamic (fixed input size) or another --opset.") from e
            _add_metadata(tmp_path, onnx_metadata(model, train_data=train_data, flip_average=flip_average))
    except OSError as e:
        raise ExportError(f"{out}: could not be written ({e.strerror or e}); nothing partial was left there. "
                          "Fix: free disk space or choose another --out.") from e
    return out


def run_onnx(path: str | os.PathLike[str], images: Tensor) -> Tensor:
    """Run an exported file in ONNX Runtime (CPU): float[B,3,H,W] in [0,1] -> metres float[B,1,H,W]."""
    import onnxruntime as ort

    p = resolve(path)
    if not p.is_file():
        raise ExportError(f"{p}: no such ONNX file. Fix: export one with `python -m depthlib export-onnx`.")
    session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    x = images.detach().to("cpu", torch.float32).numpy()
    (y,) = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})
    return torch.from_numpy(y)


def check_onnx(model: nn.Module, path: str | os.PathLike[str], images: Tensor, *, flip_average: bool = False,
               atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - depthlib.predict| in metres over images float[B,3,H,W]; ExportError above atol."""
    from .predict import predict

    # The reference is the network that was exported (no BatchNorm folding: its rounding is not ONNX's error).
    expected = predict(model, images.float(), flip_average=flip_average).float().cpu()
    got = run_onnx(path, images)
    if got.shape != expected.shape:
        raise ExportError(f"{resolve(path)}: ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}. "
                          "Fix: re-export with this depthlib version.")
    err = float((got - expected).abs().max())
    if not err <= atol:  # also catches NaN
        raise ExportError(f"{resolve(path)}: ONNX Runtime differs from PyTorch by {err:.3g} m (> {atol:g}). "
                          "Fix: re-export with another --opset, or report the operator that drifts.")
    return err
