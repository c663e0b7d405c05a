"""Loading a model for inference: a checkpoint's model, wrapped to see frames exactly as in training.

A step above both depthlib.models.checkpoint (the file) and depthlib.models (the networks and the InputAdapter),
so imports run one way: inference -> checkpoint -> models. Every caller that runs a checkpoint on whole
images (the CLI, evaluation, the explorer) loads it here and then runs depthlib.models.predict.predict. What is
returned is the fast inference copy of depthlib.models.fastpath (BatchNorm folded, channels_last): for predict only.
"""

from __future__ import annotations

import os

from torch import nn

from ..core.errors import CheckpointError, ConfigError
from ..core.limits import BORDER_REPLAYS  # noqa: F401  ("auto" / "none": see there; imported from here too)
from ..core.paths import resolve
from ..data.camera_space import CAMERA_SPACES
from ..data.frame import has_nyu_border
from ..data.transforms import NYU_FRAME, REPLAYABLE_BORDERS, REPLAYABLE_CROPS
from ..models.adapter import InputAdapter
from ..models.checkpoint import load_checkpoint, model_from_checkpoint
from ..models.fastpath import prepare_for_inference

__all__ = ["BORDER_REPLAYS", "NYU_FRAME", "REPLAYABLE_CROPS", "canonical_fx", "load_for_inference"]



def load_for_inference(path: str | os.PathLike[str], *, device: str = "cpu", bf16: bool = False,
                       border_crop: str = "auto") -> nn.Module:
    """Fast inference copy (fastpath.prepare_for_inference) of a checkpoint's model on `device`, in an InputAdapter
    when it recorded its training input settings (with its canonical_fx when trained with camera_space "canonical":
    predict then rescales by the images' fx); bf16=True: CPU bfloat16 autocast (native-bf16 CPUs only); border_crop:
    one of BORDER_REPLAYS."""
    if border_crop not in BORDER_REPLAYS:
        raise ConfigError(f"border_crop={border_crop!r}: use one of {list(BORDER_REPLAYS)} ('auto': the checkpoint's NYU "
                          "border crop on 640x480 frames; 'none': never, for frames without NYU's white border).")
    return prepare_for_inference(_load(path, device, replay=border_crop == "auto"), bf16=bf16,
                                 inplace=True)  # the loaded model has no other user


def border_crop_for(frames: object) -> str:
    """The BORDER_REPLAYS value for frames of a source (a reader, a prepared file, or datasets over them): "none" when
    the source says its frames have no NYU border (depthlib.data.frame.has_nyu_border), else "auto"."""
    return "auto" if has_nyu_border(frames) else "none"


def _load(path: str | os.PathLike[str], device: str, replay: bool = True) -> nn.Module:
    """A checkpoint's model (eval mode, on `device`), wrapped in an InputAdapter when it recorded its input settings;
    replay=False leaves its border crop out (every frame resized whole)."""
    path = resolve(path)
    ckpt = load_checkpoint(path, map_location=device)
    model = model_from_checkpoint(ckpt, path, map_location=device)
    data = (ckpt.get("extra") or {}).get("train_config", {}).get("data", {})
    if not data:
        return model.to(device).eval()
    crop = data.get("border_crop", "none")
    if crop not in REPLAYABLE_CROPS:
        raise CheckpointError(f"{path}: border_crop={crop!r} cannot be replayed at inference. "
                              "Fix: train with border_crop='nyu' or 'none'.")
    border, frame = REPLAYABLE_BORDERS[crop if replay else "none"]
    space = data.get("camera_space", "none")
    if space not in CAMERA_SPACES or (space == "canonical" and not float(data.get("canonical_fx", 0)) > 0):
        raise CheckpointError(f"{path}: camera_space={space!r} with canonical_fx={data.get('canonical_fx')!r} is not "
                              "a camera space this depthlib knows. Fix: use a depthlib that wrote it, or retrain.")
    canonical = float(data["canonical_fx"]) if space == "canonical" else None
    return InputAdapter(model, input_size=data.get("image_size"), border=border, border_frame=frame,
                        canonical_fx=canonical).to(device).eval()


def canonical_fx(model: nn.Module) -> float | None:
    """The canonical focal length (pixels at the input size) of a model loaded here; None: trained on metres
    (camera_space "none"), whose depth no focal length changes."""
    return getattr(model, "canonical_fx", None)
