"""The networks and what runs them: one file per architecture, the registry, checkpoints and the inference path.

Every model is a DepthModel (base.py): forward(x float[B,3,H,W] in [0,1]) -> raw float[B,1,H/s,W/s] with
s = model.output_stride; `model.head` (heads.py) converts raw outputs to metres; `model.arch` + `model.config`
rebuild it through create_model(model.arch, **model.config) (registry.py). Architectures: unet.py,
densedepth.py (encoders.py, weights.py: pretrained encoders and where their weights come from), baseline.py
(the mean-depth baseline). A checkpoint file rebuilds its model (checkpoint.py); predict.py is the one
inference path every caller runs a model through, fastpath.py its fast copy of a model (BatchNorm folded,
channels_last), adapter.py the input crop and resize a checkpoint trained with. Nothing here imports
training, evaluation or the notebooks' layer.
"""

from __future__ import annotations

from .base import DepthModel
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .heads import HEADS, DepthHead, make_head
from .registry import MODELS, create_model, list_models

__all__ = ["DepthHead", "DepthModel", "HEADS", "MODELS", "create_model", "list_models", "load_checkpoint", "load_model",
           "make_head", "save_checkpoint"]
