"""Checkpoints that rebuild their model by themselves: one save / load pair, atomic, weights-only.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {format_version, arch, model_config, model (state_dict), optimizer, scheduler,
     epoch, step, metrics, extra, depthlib_version}

``model_config`` holds the keyword arguments of ``depthlib.models.create_model(arch, ...)``;
everything except tensors must be plain builtins (dict/list/tuple/str/int/float/bool/None).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..core.atomic import atomic_path
from ..core.errors import CheckpointError, ConfigError
from ..core.paths import resolve
from .registry import create_model, list_models

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "build_model",
    "check_weights_fit",
    "clean_state_dict",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "unwrap_model",
]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "arch", "model_config", "model")
# Exact types: subclasses such as numpy.float64 (a float) pickle as numpy objects, which
# weights_only loading refuses.
_PLAIN_TYPES = (str, int, float, bool, type(None))
_MAPPING_TYPES = (dict, OrderedDict)
# Leading segments added by DistributedDataParallel / DataParallel ("module") and torch.compile
# ("_orig_mod", which also appears mid-key when only a submodule was compiled).
_WRAPPER_SEGMENTS = ("module", "_orig_mod")


def clean_state_dict(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Strip DDP ``module.`` and torch.compile ``_orig_mod.`` prefixes from state_dict keys."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        parts = key.split(".")
        while len(parts) > 1 and parts[0] in _WRAPPER_SEGMENTS:
            parts = parts[1:]
        new = ".".join(p for p in parts if p != "_orig_mod")
        if new in out:
            raise CheckpointError(
                f"state_dict keys collide after stripping wrapper prefixes: {key!r} -> {new!r}. "
                "Fix: save the unwrapped model (model.module / model._orig_mod)."
            )
        out[new] = value
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_plain(obj: Any, where: str, path: Path) -> None:
    """Raise CheckpointError if obj holds anything weights_only loading would refuse."""
    if type(obj) in _MAPPING_TYPES:
        for k, v in obj.items():
            if type(k) not in _PLAIN_TYPES:
                raise CheckpointError(f"{path}: {where} has a key of type {type(k).__name__}; "
                                      "Fix: use str/int keys.")
            _check_plain(v, f"{where}[{k!r}]", path)
    elif type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]", path)
    elif type(obj) not in _PLAIN_TYPES and not isinstance(obj, torch.Tensor):
        raise CheckpointError(
            f"{path}: {where} is a {type(obj).__name__}, which torch.load(weights_only=True) refuses. "
            "Fix: store plain builtins (e.g. dataclasses.asdict(cfg), float(metric))."
        )


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int = 0,
    step: int = 0,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write model (+ optimiser/scheduler state) to path atomically; return the resolved path.

    Written through depthlib.core.atomic (a temporary file beside path, fsynced, renamed over path, the folder
    fsynced), so a crash or failed write leaves any previous file at path intact (the temporary is removed).
    """
    path = resolve(path)
    inner = unwrap_model(model)
    arch = getattr(inner, "arch", None)
    config = getattr(inner, "config", None)
    if not isinstance(arch, str) or not isinstance(config, Mapping):
        raise CheckpointError(
            f"{path}: {type(inner).__name__} has no `arch` (str) and `config` (dict), so the "
            "checkpoint could not rebuild it. Fix: build models with depthlib.models.create_model."
        )
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "model_config": dict(config),
        "model": clean_state_dict(inner.state_dict()),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
        "depthlib_version": __version__,
    }
    _check_plain(ckpt, "checkpoint", path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(ckpt, f)
    except OSError as e:
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({e}); any previous file there is intact. "
            "Fix: free disk space or choose a writable folder."
        ) from e
    return path


def _first_line(e: BaseException) -> str:
    """First line of an exception's message, or its type name when the message is empty."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _refused_globals(path: Path) -> list[str]:
    """Python globals (classes, functions) that a zip-format checkpoint's pickle names beyond torch's safe set.

    torch's own scanner reads the pickle opcodes without running them; an older or non-zip file cannot
    be scanned, which gives [] (the caller then words the refusal without naming the objects).
    """
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (ValueError, RuntimeError, OSError, pickle.UnpicklingError):
        return []


def _describe(obj: Any) -> str:
    """Short description of what a foreign file holds."""
    if isinstance(obj, Mapping):
        keys = list(obj.keys())
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a bare state_dict of {len(keys)} tensors (e.g. {keys[0]!r})"
        shown = ", ".join(repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
        return f"a dict with keys [{shown}]"
    return f"a {type(obj).__name__}"


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Load and validate a depthlib checkpoint (weights_only=True); ``model`` keys come back clean.

    mmap: the tensors map the file instead of being read (a zip-format file, as torch.save writes), so a caller
    that only wants the architecture reads none of the weights.
    """
    given, path = path, resolve(path)
    if not path.is_file():
        where = " (relative paths resolve from the project root)" if not Path(given).is_absolute() else ""
        raise CheckpointError(
            f"{path}: no such checkpoint file. Fix: check the path{where} or train one with depthlib.training.train.fit."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: is empty (0 bytes): a copy or download that never finished. "
                              "Fix: copy it again, or use another checkpoint (e.g. best.pt / an earlier last.pt).")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        # The weights-only unpickler refused the pickle. torch's own message advises weights_only=False,
        # i.e. running whatever code the file carries: never pass that on.
        refused = _refused_globals(path)
        if refused:
            raise CheckpointError(
                f"{path}: holds Python objects that are refused ({_first(refused, 5)}): loading them could "
                "run code, so depthlib never does, and a depthlib checkpoint holds only tensors and plain "
                "values. Fix: use a file written by depthlib.save_checkpoint; if this file comes from code "
                "you trust, rebuild it there with save_checkpoint."
            ) from None
        raise CheckpointError(
            f"{path}: refused by the safe loader (torch.load(weights_only=True)): it holds pickled Python "
            "objects or instructions that a depthlib checkpoint never contains, or it is corrupt or not a "
            "checkpoint at all. Fix: use a file written by depthlib.save_checkpoint (e.g. best.pt / an "
            "earlier last.pt), or re-train."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path}: is truncated or corrupt and cannot be read ({_first_line(e)}). "
            "Fix: use another checkpoint (e.g. best.pt / an earlier last.pt) or re-train."
        ) from e
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(obj, dict) or k not in obj]
        raise CheckpointError(
            f"{path}: not a depthlib checkpoint: missing keys {missing}; it holds {_describe(obj)}. "
            "Fix: load a file written by depthlib.save_checkpoint, or load a bare state_dict "
            "yourself with model.load_state_dict(clean_state_dict(sd))."
        )
    version = obj["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a positive int. "
                              "Fix: re-save with depthlib.save_checkpoint.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer depthlib (format {version}, depthlib "
            f"{obj.get('depthlib_version', '?')}); this depthlib {__version__} reads format "
            f"<= {FORMAT_VERSION}. Fix: upgrade depthlib."
        )
    if not isinstance(obj["model"], Mapping) or not isinstance(obj["model_config"], Mapping):
        raise CheckpointError(f"{path}: 'model' and 'model_config' must be dicts. "
                              "Fix: re-save with depthlib.save_checkpoint.")
    obj["model"] = clean_state_dict(obj["model"])
    return obj


def load_model(path: str | os.PathLike[str], map_location: Any = "cpu") -> nn.Module:
    """Rebuild the checkpoint's model via create_model(arch, **model_config), load strictly; eval mode.

    Call model.train() before fine-tuning; fit() does.
    """
    path = resolve(path)
    return model_from_checkpoint(load_checkpoint(path, map_location=map_location), path, map_location=map_location)


def build_model(path: str | os.PathLike[str]) -> nn.Module:
    """A new model of the architecture and model_config checkpoint `path` holds, with fresh weights: the model
    fit(init_from=path) loads that checkpoint's weights into, once (the file's weights are not read here)."""
    path = resolve(path)
    return _architecture(load_checkpoint(path, mmap=True), path)


def _architecture(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    """create_model(arch, **model_config) of a loaded checkpoint dict; errors name `path` and the fix."""
    arch, config = ckpt["arch"], dict(ckpt["model_config"])
    if arch not in list_models():
        raise CheckpointError(
            f"{path}: architecture {arch!r} is not registered (registered: {list_models()}). "
            "Fix: import the module that registers it, or use a matching depthlib version."
        )
    try:
        return create_model(arch, **config)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its model_config does not build {arch!r}: {e}") from e


def model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike[str], map_location: Any = "cpu") -> nn.Module:
    """Rebuild and strictly load the model of an already loaded checkpoint dict (`path` names it in errors)."""
    model = _architecture(ckpt, path)
    arch, config = ckpt["arch"], dict(ckpt["model_config"])
    check_weights_fit(model, ckpt["model"], path, f"{arch}({config})")
    model.load_state_dict(ckpt["model"], strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


def check_weights_fit(model: nn.Module, sd: Mapping[str, Any], path: str | os.PathLike[str], what: str, *,
                      fix: str = "load it with the architecture and config it was trained with.") -> None:
    """CheckpointError listing missing / unexpected keys and shape mismatches of state_dict `sd` against `model`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and isinstance(sd[k], torch.Tensor) and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: weights do not match {what}: missing keys {_first(missing)}, "
            f"unexpected keys {_first(unexpected)}, shape mismatches {_first(shapes)}. Fix: {fix}"
        )


def _first(items: list[str], n: int = 8) -> str:
    """First n items of a list as text, with the count of the rest."""
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return f"{items[:n]}{more}"
