r"""Command-line training on a prepared dataset, for runs bigger than a notebook: the same fit.

One GPU (or CPU):
    python -m depthlib train --prepared data/prepared/nyu_train.h5 --model densedepth \
        --model-kwargs '{"pretrained": true}' --data image_size=[480,640] \
        --train epochs=20 batch_size=8 precision=bf16 out_dir=checkpoints/nyu/train
Four GPUs on one machine (batch_size is per GPU; the effective batch is 4 x 8):
    torchrun --standalone --nproc_per_node=4 -m depthlib train <same arguments>
Two machines with 8 GPUs each (run on both, node_rank 0 and 1; HOST = node 0's address):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29500 --rdzv_id=depth1 -m depthlib train <same arguments>
Rerunning the same command resumes from out_dir/last.pt (TrainConfig.resume, default True).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from ..core.config import DataConfig, ModelConfig, TrainConfig, fits_default, from_dict, to_dict, to_plain
from ..core.errors import ConfigError, DepthlibError
from ..core.paths import resolve
from ..core.program import command_name


def parse_settings(items: Sequence[str], what: str) -> dict[str, Any]:
    """["epochs=3", "image_size=[480,640]", "precision=bf16"] -> {"epochs": 3, ...} (JSON values, else str)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{what} {item!r} must look like name=value, e.g. epochs=3.")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def check_types(given: dict[str, Any], defaults: dict[str, Any], what: str) -> None:
    """Refuse a value whose JSON type does not fit the setting's default (epochs=one, lr=fast, amsgrad=yes)."""
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a text", list: "a JSON list",
             dict: "a JSON object"}
    for key, value in list(given.items()):
        if key not in defaults or key == "border_crop":  # unknown names: from_dict refuses them; border_crop: a name
            continue                                     # or 4 numbers
        default = defaults[key]
        if isinstance(default, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
            given[key] = value = str(value)  # out_dir=2024 is a folder name, not a number
        if not fits_default(value, default):
            kind = words.get(type(default), type(default).__name__)
            raise ConfigError(f"--{what} {key}={json.dumps(value)} must be {kind} (default {json.dumps(default)}). "
                              f"Fix: e.g. {key}={json.dumps(default)}.")


def build_configs(args: argparse.Namespace) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """The three settings dataclasses from the command line (unknown names are refused)."""
    given = parse_settings(args.data, "data")
    unused = sorted(set(given) & set(_NOT_USED_HERE))
    if unused:
        raise ConfigError(f"--data {', '.join(unused)}: train_cli reads the prepared file given by --prepared; drop them.")
    check_types(given, to_dict(DataConfig()), "data")
    data = from_dict(DataConfig, {**to_dict(DataConfig()), **given})
    given_kwargs = json.loads(args.model_kwargs)
    # No --model: the default model, --model-kwargs changing some of its settings ({"pretrained": false}: from scratch).
    model = (ModelConfig(name=args.model, kwargs=given_kwargs) if args.model else
             ModelConfig(kwargs={**ModelConfig().kwargs, **given_kwargs}))
    train_given = parse_settings(args.train, "train")
    moved = sorted(set(train_given) & set(_MOVED_TO_DATA))
    if moved:
        raise ConfigError(f"--train {', '.join(moved)}: the augmentation rates are DataConfig's, wherever they are "
                          f"applied. Fix: --data {' '.join(f'{_MOVED_TO_DATA[k]}=...' for k in moved)} (with --train "
                          "gpu_augment=true the device applies them instead of the loader).")
    check_types(train_given, to_dict(TrainConfig()), "train")
    train = from_dict(TrainConfig, {**to_dict(TrainConfig()), **train_given})
    return data, model, train


# DataConfig fields that describe a source: train_cli reads --prepared instead.
_NOT_USED_HERE = ("source", "path", "split")
# TrainConfig's former gpu_augment rates -> the DataConfig rates that replaced them
_MOVED_TO_DATA = {"aug_flip_p": "flip_p", "aug_swap_p": "swap_p"}


def settings_help() -> str:
    """Every --data and --train setting with its default, as listed under --help."""
    import textwrap

    from ..models import list_models

    def listing(cfg: Any, skip: Sequence[str] = ()) -> str:
        items = [f"{k}={json.dumps(v)}" for k, v in to_dict(cfg).items() if k not in skip]
        return textwrap.fill(", ".join(items), width=100, initial_indent="  ", subsequent_indent="  ")

    return (f"models (--model): {', '.join(list_models())}\n\n"
            f"--data settings (DataConfig) and their defaults:\n{listing(DataConfig(), _NOT_USED_HERE)}\n\n"
            f"--train settings (TrainConfig) and their defaults:\n{listing(TrainConfig(), ('data',))}\n\n"
            "Values are JSON (epochs=3, image_size=[480,640], amsgrad=true), anything else a string (precision=bf16).")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of python -m depthlib train."""
    p = argparse.ArgumentParser(prog=f"{command_name()} train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=settings_help())
    p.add_argument("--prepared", required=True, help="prepared HDF5 file (notebook 01) with train/val splits")
    default = ModelConfig()
    p.add_argument("--model", default=None, help=f"registered model name (default: {default.name} with "
                   f"{json.dumps(default.kwargs)}, weights that install with the package); with --train init_from=CKPT "
                   "and no --model / --model-kwargs, the checkpoint's own architecture")
    p.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of create_model; without --model they "
                   "change the default model's (default: %(default)s)")
    p.add_argument("--data", nargs="*", default=[], metavar="NAME=VALUE",
                   help="DataConfig settings, each defaulting as listed below")
    p.add_argument("--train", nargs="*", default=[], metavar="NAME=VALUE",
                   help="TrainConfig settings, each defaulting as listed below")
    return p


def summary(history: Any, cfg: TrainConfig) -> str:
    """One line on how the run ended: its best epoch, or why no epoch was validated."""
    where = f"outputs in {resolve(cfg.out_dir)}"
    if history.best_epoch >= 0:
        start = " (the starting weights: no epoch beat them)" if history.best_epoch == 0 else ""
        return f"best epoch {history.best_epoch}{start}: loss {history.best_val_loss:.4f}; {where}"
    if history.stopped_early == "max_steps":
        return (f"stopped by max_steps={cfg.max_steps} before the first epoch ended: no validation yet, so no best.pt; "
                f"last.pt (step {cfg.max_steps}) resumes the run; {where}")
    return f"no epoch was trained (epochs={cfg.epochs}); {where}"


def main(argv: Sequence[str] | None = None) -> int:
    """Build datasets and model, run fit, print the best epoch; 2 on a depthlib error."""
    from ..core.reproducibility import seed_everything
    from ..models import create_model
    from ..models.checkpoint import build_model
    from .train import fit
    from .train_setup import data_settings, training_sets

    args = build_parser().parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for all
    try:
        data_cfg, model_cfg, train_cfg = build_configs(args)
        train_cfg.data = data_settings(data_cfg)
        sets = training_sets(args.prepared, data_cfg, gpu_augment=train_cfg.gpu_augment)
        seed_everything(train_cfg.seed)  # before the model is built: its initial weights are part of the run
        if train_cfg.init_from and args.model is None and args.model_kwargs == "{}":
            net = build_model(train_cfg.init_from)  # fine-tuning: the architecture the checkpoint holds, as 03 does
            said = f"{net.arch} {json.dumps(to_plain(net.config))}, as {train_cfg.init_from} holds it"
        else:
            net = create_model(model_cfg.name, **model_cfg.kwargs)
            said = f"{model_cfg.name} {json.dumps(model_cfg.kwargs)}" + ("" if args.model else " (the default; --model "
                                                                         "and --model-kwargs choose another)")
        if main_process:
            print(f"model: {said}", flush=True)
        history = fit(net, sets["train"], sets.get("val"), train_cfg)
    except DepthlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if main_process:
        print(summary(history, train_cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
