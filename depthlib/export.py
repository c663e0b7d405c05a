"""ONNX export of a depth model (torch.onnx.export, the torch.export-based exporter) and its check.

The exported graph takes RGB float[B,3,H,W] in [0,1] (H, W multiples of model.input_multiple;
batch, H and W are dynamic) and returns depth in metres float[B,1,H,W]: the head's conversion
and the x`output_stride` bilinear upsampling are inside the graph, so a deployer needs no
depthlib code. `check_onnx` runs the file in ONNX Runtime and compares it with depthlib.predict.
"""

from __future__ import annotations

import copy
import os
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


class ExportError(DepthlibError):
    """The ONNX export failed, or ONNX Runtime disagrees with PyTorch."""


class DepthOutput(nn.Module):
    """Wraps a DepthModel: RGB float[B,3,H,W] in [0,1] -> metres float[B,1,H,W] (optionally flip-averaged)."""

    def __init__(self, model: nn.Module, flip_average: bool = False) -> None:
        super().__init__()
        self.model = model
        self.flip_average = flip_average

    def forward(self, x: Tensor) -> Tensor:
        """Same arithmetic as depthlib.predict for inputs whose sides are multiples of input_multiple."""
        depth = self.model.head.to_depth(self.model(x))
        if self.flip_average:
            depth = 0.5 * (depth + self.model.head.to_depth(self.model(x.flip(-1))).flip(-1))
        s = self.model.output_stride
        if s != 1:
            depth = F.interpolate(depth, scale_factor=s, mode="bilinear", align_corners=False)
        return depth


def training_size(checkpoint: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(H, W) the checkpoint's model was trained at (extra.train_config.data.image_size), None if unrecorded."""
    from .checkpoint import load_checkpoint

    extra = load_checkpoint(checkpoint, map_location="cpu").get("extra") or {}
    size = (extra.get("train_config") or {}).get("data", {}).get("image_size")
    return None if not size else (int(size[0]), int(size[1]))


def _check_size(model: nn.Module, height: int, width: int) -> None:
    m = model.input_multiple
    if height % m or width % m or height <= 0 or width <= 0:
        raise ConfigError(
            f"export size {height}x{width} is not a positive multiple of {m} (model.input_multiple of "
            f"{getattr(model, 'arch', type(model).__name__)}). Fix: use e.g. --height {max(m, height // m * m)} "
            f"--width {max(m, width // m * m)}; resize or pad images to multiples of {m} before running the ONNX model."
        )


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, height: int = 240, width: int = 320,
                flip_average: bool = False, opset: int = DEFAULT_OPSET, dynamic: bool = True) -> Path:
    """Write `model` (eval mode, CPU) as ONNX at `path` atomically; example input float[1,3,height,width]."""
    _check_size(model, height, width)
    model = copy.deepcopy(model).eval().cpu()  # the caller's model keeps its device and mode
    wrapped = DepthOutput(model, flip_average=flip_average).eval()
    example = (torch.rand(1, 3, height, width),)
    shapes = None
    if dynamic:
        m = model.input_multiple
        h = torch.export.Dim("h", min=1, max=MAX_SIDE // m)
        w = torch.export.Dim("w", min=1, max=MAX_SIDE // m)
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024), 2: m * h, 3: m * w},)
    out = resolve(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_path:
        tmp = str(tmp_path)
        try:
            torch.onnx.export(wrapped, example, tmp, dynamo=True, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_shapes=shapes, opset_version=opset,
                              external_data=False, verbose=False)
        except (RuntimeError, ValueError, TypeError) as e:  # torch.export / onnxscript failures
            raise ExportError(f"{out}: ONNX export of {getattr(model, 'arch', '?')} failed: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                              "Fix: try --no-dynamic (fixed input size) or another --opset.") from e
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
