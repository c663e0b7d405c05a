"""Setting up a training run: the datasets of a prepared file and the input settings a checkpoint records,
config checks, initial weights (init_from), optimiser, LR schedule and the per-sample seeds of the training
loader's workers."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..core.config import DataConfig, TrainConfig, to_plain
from ..core.errors import CheckpointError, ConfigError, DataError
from ..core.paths import resolve
from ..core.reproducibility import seed_everything
from ..data.dataset import MappedDataset
from ..data.prepared_loader import PreparedTorchDataset
from ..data.camera_space import canonical_fx_of, check_camera_settings
from ..data.transforms import REPLAYABLE_BORDERS, REPLAYABLE_CROPS, BatchFlipSwap, build_transforms
from ..models.checkpoint import check_weights_fit

SCHEDULES = ("none", "cosine", "step", "onecycle")


def training_sets(prepared_path: str, cfg: DataConfig, *, splits: Sequence[str] = ("train", "val"),
                  gpu_augment: bool = False) -> dict[str, MappedDataset]:
    """Datasets of the prepared file's splits: border crop + resize; cfg's flip / channel swap on "train" only.

    gpu_augment (as TrainConfig.gpu_augment): the loader leaves flip and swap out and the "train" set hands them to
    fit as its device_augment, which fit applies per batch on the device; never both.
    """
    out = {}
    for split in splits:
        base = PreparedTorchDataset(str(resolve(prepared_path)), split=split)
        if cfg.camera_space == "canonical":
            check_focal_lengths(base, split)
        train = split == "train"
        out[split] = MappedDataset(base, build_transforms(cfg, train=train, flip_swap_on_device=gpu_augment),
                                   device_augment=BatchFlipSwap.from_config(cfg) if train and gpu_augment else None)
    return out


def check_focal_lengths(data: PreparedTorchDataset, split: str) -> None:
    """DataError naming the prepared file and the fix when frames of `split` have no focal length (canonical training
    scales every target by one): a file written before format 2, or a reader that was not told the camera."""
    fx = data.src.fx[data.src.rows]
    unknown = int((~np.isfinite(fx)).sum())
    if unknown:
        old = " (a format-1 file: written before prepared files recorded focal lengths)" if data.src.format_version < 2 else ""
        raise DataError(data.src.path, f"{unknown} of the {len(fx)} {split} frames have no focal length{old}, and "
                        "camera_space='canonical' scales each target by it.",
                        "re-run 01_data_prep with overwrite=True, declaring your camera to the pairs reader (focal= or "
                        "intrinsics=, or focal / fx columns in its list); or train with camera_space='none'.")


def device_augment(train: Dataset, cfg: TrainConfig) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """What fit applies to each training batch on the device: the training set's device_augment when gpu_augment.

    Refuses the two mismatches: gpu_augment over a set that flips and swaps in the loader (each frame would be
    augmented twice, at rates that are not DataConfig's), and a set built for the device without gpu_augment
    (nothing would flip or swap).
    """
    aug = getattr(train, "device_augment", None)
    if cfg.gpu_augment and aug is None:
        raise ConfigError("gpu_augment=True applies the training set's flip and channel swap on the device, but this "
                          "set has none to hand over (it flips and swaps in the loader, if at all). Fix: build it with "
                          "training_sets(path, data_cfg, gpu_augment=True), or for a dataset of your own "
                          "MappedDataset(ds, transform, device_augment=BatchFlipSwap.from_config(data_cfg)); or set "
                          "gpu_augment=False.")
    if aug is not None and not cfg.gpu_augment:
        raise ConfigError("the training set leaves its flip and channel swap to the device (built with gpu_augment="
                          "True), but TrainConfig.gpu_augment is False: nothing would flip or swap. Fix: set "
                          "gpu_augment=True, or build the set with training_sets(path, data_cfg).")
    return aug


def data_settings(cfg: DataConfig) -> dict[str, Any]:
    """The input settings a checkpoint must remember to be used on whole frames later: image_size, border_crop and,
    with camera_space "canonical", camera_space and canonical_fx (resolved: pixels at image_size's width).

    Refuses a border crop that inference cannot replay (predict, 04 and 05 apply one fixed crop to every image):
    before training, not after it.
    """
    if cfg.border_crop not in REPLAYABLE_CROPS:
        raise ConfigError(f"border_crop={cfg.border_crop!r} cannot be replayed at inference (predict, 04 and 05 apply "
                          "one fixed crop to every image). Fix: border_crop='nyu' for NYU's labeled frames, else 'none'.")
    check_camera_settings(cfg)
    out: dict[str, Any] = {"image_size": list(cfg.image_size), "border_crop": cfg.border_crop}
    if cfg.camera_space != "none":  # "none" records nothing new: its checkpoints and resumes stay as they were
        out.update(camera_space=cfg.camera_space,
                   canonical_fx=canonical_fx_of(cfg, REPLAYABLE_BORDERS[cfg.border_crop][0]))
    return out


def check_config(cfg: TrainConfig, n_train: int) -> None:
    """Refuse settings fit cannot run with, before any work is done."""
    from .losses import LOSSES  # late: keeps this module light for callers of its small helpers

    if cfg.loss not in LOSSES:
        raise ConfigError(f"TrainConfig.loss={cfg.loss!r} is unknown; known: {sorted(LOSSES)}.")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs < 0:
        raise ConfigError("TrainConfig needs batch_size >= 1, grad_accum >= 1 and epochs >= 0.")
    if not 0.0 < cfg.wise_alpha <= 1.0:
        raise ConfigError(f"TrainConfig.wise_alpha={cfg.wise_alpha!r}: use a weight in (0, 1] for the trained "
                          "weights (1 = best.pt holds them as trained).")
    if cfg.wise_alpha < 1.0 and not cfg.init_from:
        raise ConfigError(f"TrainConfig.wise_alpha={cfg.wise_alpha} mixes the trained weights with init_from's, "
                          "but init_from is empty. Fix: set init_from, or wise_alpha=1.")
    if cfg.select not in ("val_loss", "last"):
        raise ConfigError(f"TrainConfig.select={cfg.select!r}: use 'val_loss' (lowest validation loss) or 'last' "
                          "(a fixed schedule: best.pt is the final epoch).")
    if n_train == 0:
        raise ConfigError("the training set is empty. Fix: check the data source, split and indices.")


def interpolate_weights(model: nn.Module, init: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    """A copy of `model` whose floating-point weights and buffers are alpha x model's + (1 - alpha) x init's.

    Weight-space ensembling of a fine-tuned model with the weights it started from (WiSE-FT: Wortsman et al.,
    "Robust fine-tuning of zero-shot models", CVPR 2022): between the two, a model that keeps more of what
    pre-training learned and moves less with the noise of a small fine-tuning set. Integer buffers
    (BatchNorm's step count) come from `model`.
    """
    out = copy.deepcopy(model)
    with torch.no_grad():
        for k, v in out.state_dict().items():
            if v.is_floating_point():
                v.mul_(alpha).add_(init[k].to(v.device, v.dtype), alpha=1.0 - alpha)
    return out


def init_weights(model: nn.Module, src: dict[str, Any], path: Path) -> int:
    """Fine-tuning start: load only the weights of checkpoint `src` (loaded from `path`) into `model` (strict) -> its
    step."""
    arch = getattr(model, "arch", None)
    if src["arch"] != arch:
        raise CheckpointError(f"{path}: holds a {src['arch']!r} model but fit got {arch!r}. "
                              f"Fix: build the model with create_model({src['arch']!r}, **model_config).")
    # Same architecture, other config (e.g. width 16 into width 8): the same clear report as load_model.
    config = to_plain(getattr(model, "config", {}))
    check_weights_fit(model, src["model"], path, f"fit's model {arch}({config}) (the file holds "
                      f"{src['arch']}({src['model_config']}))",
                      fix=f"build fit's model with create_model({src['arch']!r}, **{src['model_config']!r}), or "
                      "init_from a checkpoint of this model's config.")
    model.load_state_dict(src["model"], strict=True)
    return int(src["step"])


# torch's Adam on CPU defaults to a Python loop over parameters (a handful of small ops per tensor);
# "fused" updates every parameter in one kernel, "foreach" in a few multi-tensor ops (RESULTS_models.md).
ADAM_IMPLS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the parameters that require grad (a frozen encoder is left out), as cfg.adam_impl runs it."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters. Fix: set freeze_encoder=False.")
    if cfg.adam_impl not in ADAM_IMPLS:
        raise ConfigError(f"TrainConfig.adam_impl={cfg.adam_impl!r} is not one of {sorted(ADAM_IMPLS)}.")
    groups: list[dict[str, Any]] = [{"params": params}]
    encoder = getattr(model, "encoder", None)
    if cfg.encoder_lr_mult != 1.0 and encoder is not None:
        # Discriminative fine-tuning: the pretrained encoder moves slower than the new decoder.
        enc = {id(p) for p in encoder.parameters()}
        groups = [{"params": [p for p in params if id(p) not in enc]},
                  {"params": [p for p in params if id(p) in enc], "lr": cfg.lr * cfg.encoder_lr_mult}]
        groups = [g for g in groups if g["params"]]
    return torch.optim.Adam(
        groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad,
        **ADAM_IMPLS[cfg.adam_impl],
    )


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """LR multiplier after `step` optimiser steps of `total`: linear warmup, then the schedule.

    One pure function of the step (through LambdaLR) keeps resume exact and lets warmup combine
    with every schedule; torch's SequentialLR chains are harder to restore across versions.
    "onecycle" warms up over warmup_steps (30 % of the run when 0) then cosine-anneals, as
    OneCycleLR does, but leaves Adam's betas alone.
    """
    if cfg.scheduler not in SCHEDULES:
        raise ConfigError(f"TrainConfig.scheduler={cfg.scheduler!r} is not one of {SCHEDULES}.")
    warm = cfg.warmup_steps
    if cfg.scheduler == "onecycle" and warm == 0:
        warm = max(1, int(0.3 * total))
    if step < warm:
        return (step + 1) / warm
    if cfg.scheduler == "none":
        return 1.0
    if cfg.scheduler == "step":
        size = cfg.lr_step_size or max(1, total // 3)
        return cfg.lr_gamma ** ((step - warm) // size)
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def schedule_length_matters(cfg: TrainConfig) -> bool:
    """Whether lr_factor's curve depends on the run's total steps (cosine, onecycle, step without lr_step_size)."""
    return cfg.scheduler in ("cosine", "onecycle") or (cfg.scheduler == "step" and cfg.lr_step_size == 0)


def check_schedule_kept(path: Path, cfg: TrainConfig, *, step: int, old_steps: int, old_epochs: int, steps: int,
                        hint: str) -> None:
    """Refuse a resume whose settings lay the LR schedule over `steps` instead of the `old_steps` it was laid over.

    A curve stretched (more epochs) or squeezed mid-run jumps at the resume point: a finished cosine run given
    more epochs would restart part-way up. Schedules of fixed steps ("none", "step" with lr_step_size) may grow.
    """
    if steps == old_steps or not schedule_length_matters(cfg):
        return
    was, now = cfg.lr * lr_factor(step, old_steps, cfg), cfg.lr * lr_factor(step, steps, cfg)
    per_old, per_now = old_steps // max(1, old_epochs), steps // max(1, cfg.epochs)
    why = "" if per_old == per_now else (" (steps per epoch follow batch_size, grad_accum, the number of processes "
                                         "and the training set's size)")
    raise ConfigError(
        f"{path}: its LR schedule ({cfg.scheduler}) spans {old_steps} optimiser steps ({old_epochs} epochs x {per_old}); "
        f"epochs={cfg.epochs} makes it {steps} ({cfg.epochs} x {per_now}){why}, which would move the lr after step "
        f"{step} from {was:.2e} to {now:.2e}. Fix: epochs={old_epochs} with the same batch setup to continue that "
        f"schedule; to train this model further on a schedule of its own, init_from={path} in a new out_dir; or "
        f"resume=False to start over ({hint}).")


def make_scheduler(opt: torch.optim.Optimizer, total: int, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimiser step over `total` steps."""
    lr_factor(0, total, cfg)  # validates the schedule name before training starts
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample `index`'s random draws in `epoch` of a run seeded `seed` (a hash: unrelated streams)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class SampleSeeds(Sampler):
    """`sampler`'s indices as (index, sample_seed(seed, sampler.epoch, index)) pairs, for SeededSamples.

    Loader workers keep their own generators, which last.pt cannot hold: a resumed run's workers started as at the
    beginning and replayed epoch 1's augmentation. Seeded per sample, an epoch draws the same whatever the resume
    point, the worker that loads a sample or how many there are.
    """

    def __init__(self, sampler: Any, seed: int) -> None:
        self.sampler, self.seed = sampler, seed   # sampler: has .epoch (depthlib.core.distributed.ShardSampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((i, sample_seed(self.seed, epoch, i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class SeededSamples(Dataset):
    """dataset[i] for the key (i, seed), drawn after seeding python's, numpy's and torch's global generators.

    For loader workers only (num_workers > 0): in the main process it would reseed the training loop's own draws.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        i, seed = key
        seed_everything(seed)
        return self.dataset[i]
