"""Depth in metres from any-size RGB images, with DenseDepth's flip averaging.

A model trained with camera_space="canonical" (depthlib.data.camera_space) predicts depth for its canonical camera;
given the images' focal lengths (`fx`, pixels of their width), predict multiplies by f / canonical_fx
(InputAdapter.focal_scale), so the result is metres for those images' camera. Models trained on metres ignore fx.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.limits import MIN_SIDE  # noqa: F401  (the smallest side predict accepts; imported from here too)
from .adapter import InputAdapter
from .fastpath import FAST_ATTR



def images_from_rgb(rgb: Tensor) -> Tensor:
    """Decoded RGB uint8 [B,H,W,3] -> float[B,3,H,W] in [0,1], the images predict takes."""
    return rgb.permute(0, 3, 1, 2).float() / 255.0


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad float[B,3,H,W] at the bottom/right up to multiples of `multiple`."""
    h, w = x.shape[-2:]
    # Non-negative operands (ONNX's integer ops truncate); a traced size pads always (a zero pad is a copy).
    ph, pw = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    if isinstance(ph, int) and isinstance(pw, int) and not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def _top_left(x: Tensor, h: int, w: int) -> Tensor:
    """x[..., :h, :w] -> float[..., h, w]. As index_select, torch.export traces it for any H, W: a slice would need it
    to prove h <= stride * ceil(h / stride), which its symbolic shapes cannot."""
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _mirrored(model: nn.Module, x: Tensor) -> Tensor:
    """Raw prediction of the mirrored images, mirrored back: float[B,3,H,W] -> float[B,1,H/s,W/s].

    An InputAdapter mirrors the window it crops, not the frame: NYU's border is uneven (7 columns left, 8
    right), so a mirrored frame cropped afterwards would show the model another window, a white column in view.
    """
    if isinstance(model, InputAdapter):
        return model(x, mirror=True)
    return model(x.flip(-1)).flip(-1)


def camera_scale(model: nn.Module, x: Tensor, fx: Tensor | float | Sequence[float] | None) -> Tensor | None:
    """What predict multiplies the depth of images x float[B,3,H,W] by: float[B,1,1,1] = f / canonical_fx for a model
    trained in the canonical camera space (an InputAdapter with canonical_fx), f being fx (a number or float[B], pixels
    of W) at the model's input size; 1 for an image whose fx is NaN (unknown: the canonical camera). None (no rescale)
    for a model trained on metres, or when fx is None."""
    if fx is None or getattr(model, "canonical_fx", None) is None:
        return None
    # the dtype on the host first (float64 does not exist on every device); [B] or [1]: broadcast over the batch
    f = torch.as_tensor(fx).to(dtype=x.dtype).to(x.device).reshape(-1)
    scale = model.focal_scale(x, f)
    return torch.where(torch.isfinite(scale), scale, torch.ones_like(scale))


def _depth_native(model: nn.Module, x: Tensor, flip_average: bool, fx: Tensor | float | Sequence[float] | None = None
                  ) -> Tensor:
    """Images float[B,3,H,W] -> metres float[B,1,ceil(Hp/s),ceil(Wp/s)] (Hp, Wp: padded), optionally flip-averaged,
    times camera_scale(model, x, fx) for a canonical model."""
    scale = camera_scale(model, x, fx)  # of the image as given: an InputAdapter does not pad (input_multiple 1)
    x = _pad_to_multiple(x, model.input_multiple)
    if getattr(model, FAST_ATTR, {}).get("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    depth = model.head.to_depth(model(x))
    if flip_average:
        # DenseDepth's evaluate: mean of pred(x) and the un-mirrored pred(mirror(x)), in metres.
        depth = 0.5 * (depth + model.head.to_depth(_mirrored(model, x)))
    return depth if scale is None else depth * scale


def depth_at_input_size(model: nn.Module, x: Tensor, *, flip_average: bool,
                        fx: Tensor | float | Sequence[float] | None = None) -> Tensor:
    """Images float[B,3,H,W] on the model's device and dtype (and their focal lengths fx, see predict) -> metres
    float[B,1,H,W]: predict's arithmetic without its checks, mode switch and inference_mode, so that torch.export traces
    it (depthlib.inference.export's graph is this)."""
    h, w = x.shape[-2:]
    depth = _depth_native(model, x, flip_average, fx)
    stride = model.output_stride
    if stride != 1:
        # Back to the padded input grid (an integer factor, so pixel centres line up),
        # then cut the padding off: the valid region is exactly H x W.
        depth = F.interpolate(depth, scale_factor=stride, mode="bilinear", align_corners=False)
    return _top_left(depth, h, w)


def predict(
    model: nn.Module,
    images: Tensor,
    *,
    flip_average: bool = True,
    out_size: tuple[int, int] | str | None = None,
    fx: Tensor | float | Sequence[float] | None = None,
) -> Tensor:
    """RGB float[B,3,H,W] (or [3,H,W]) in [0,1] -> depth in metres float[B,1,h,w].

    Any H, W: images are replicate-padded to model.input_multiple and the padding is cut off
    again. out_size None gives (h, w) = (H, W); a (h, w) pair resizes bilinearly to it;
    "native" returns the model's own resolution, (ceil(H/s), ceil(W/s)) with s = output_stride.
    fx: the images' horizontal focal length in pixels of their width W (one number, or float[B]); a model trained
    with camera_space="canonical" gives metres for that camera (camera_scale); None or NaN: its canonical camera,
    unscaled. A model trained on metres (camera_space "none") ignores it.
    Runs in eval mode under torch.inference_mode, on the model's device and dtype; the model's
    train/eval mode is restored afterwards. The result stays on the model's device. Fastest with the
    copy from depthlib.models.fastpath.prepare_for_inference (what depthlib.inference.load_for_inference
    returns): its images go in as channels_last, matching its weights.
    """
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise ConfigError(
            "predict: images must be a float tensor [B,3,H,W] in [0,1], got "
            f"{type(images).__name__}{'' if not isinstance(images, Tensor) else ' ' + str(images.dtype)}. "
            "Fix: convert with torch.as_tensor(rgb).permute(2, 0, 1).float() / 255."
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"predict: expected images [B,3,H,W], got shape {tuple(images.shape)}.")
    if not (out_size is None or out_size == "native" or
            (isinstance(out_size, (tuple, list)) and len(out_size) == 2)):
        raise ConfigError(f"predict: out_size must be None, 'native' or (h, w), got {out_size!r}.")
    if min(images.shape[-2:]) < MIN_SIDE:
        raise ConfigError(
            f"predict: images of {images.shape[-1]}x{images.shape[-2]} pixels (WxH) are too small; the minimum is "
            f"{MIN_SIDE}x{MIN_SIDE}. Fix: use a larger image (the model was trained on whole room-scale frames)."
        )
    param = next(model.parameters())
    x = images.to(device=param.device, dtype=param.dtype)
    h, w = x.shape[-2:]
    stride = model.output_stride
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if out_size == "native":
                return _depth_native(model, x, flip_average, fx)[..., : -(-h // stride), : -(-w // stride)]
            depth = depth_at_input_size(model, x, flip_average=flip_average, fx=fx)
            if out_size is not None and tuple(out_size) != (h, w):
                depth = F.interpolate(depth, size=tuple(out_size), mode="bilinear", align_corners=False)
            return depth
    finally:
        model.train(was_training)
