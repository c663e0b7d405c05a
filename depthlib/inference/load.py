"""Loading a model for inference: a checkpoint's model, wrapped to see frames exactly as in training.

A step above both depthlib.models.checkpoint (the file) and depthlib.models (the networks and the InputAdapter),
so imports run one way: inference -> checkpoint -> models. Every caller that runs a checkpoint on whole
images (the CLI, evaluation, the explorer) loads it here and then runs depthlib.models.predict.predict. What is
returned is the fast inference copy of depthlib.models.fastpath (BatchNorm folded, channels_last): for predict only.
"""

from __future__ import annotations

import os

from torch import nn

from ..core.errors import CheckpointError
from ..core.paths import resolve
from ..data.transforms import NYU_FRAME, REPLAYABLE_BORDERS, REPLAYABLE_CROPS
from ..models.adapter import InputAdapter
from ..models.checkpoint import load_checkpoint, model_from_checkpoint
from ..models.fastpath import prepare_for_inference

__all__ = ["NYU_FRAME", "REPLAYABLE_CROPS", "load_for_inference"]



def load_for_inference(path: str | os.PathLike[str], *, device: str = "cpu", bf16: bool = False) -> nn.Module:
    """Fast inference copy (fastpath.prepare_for_inference) of a checkpoint's model on `device`, in an InputAdapter
    when it recorded its training input settings; bf16=True: CPU bfloat16 autocast (native-bf16 CPUs only)."""
    return prepare_for_inference(_load(path, device), bf16=bf16, inplace=True)  # the loaded model has no other user


def _load(path: str | os.PathLike[str], device: str) -> nn.Module:
    """A checkpoint's model (eval mode, on `device`), wrapped in an InputAdapter when it recorded its input settings."""
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
    border, frame = REPLAYABLE_BORDERS[crop]
    return InputAdapter(model, input_size=data.get("image_size"), border=border,
                        border_frame=frame).to(device).eval()
