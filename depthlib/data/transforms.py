"""Paired transforms on sample dicts: every geometric step moves image, depth and valid together.

Samples follow depthlib.data.frame: image float[3,H,W] in [0,1], depth float[1,H,W] metres,
valid bool[1,H,W]. Randomness comes from torch's global generator, which make_loader seeds per worker.

Flip and channel swap run at DataConfig's flip_p / swap_p in one of two places, never both: per sample here
(build_transforms), or, with TrainConfig.gpu_augment, per batch on the device (BatchFlipSwap, which
depthlib.training.train_setup.training_sets hands to fit instead).

A sample's "fx" (focal length in pixels of its image's width, NaN when unknown) stays true through every step: a crop
keeps it, Resize scales it with the width. DataConfig.camera_space="canonical" scales the depth by it at the end
(depthlib.data.camera_space, which also holds the lens zoom).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..core.config import DataConfig
from ..core.errors import ConfigError, DataError
from .camera_space import CanonicalDepth, LensZoom, canonical_fx_of, check_camera_settings, crop_window

Sample = dict[str, Any]

# NYU labeled-set white border: rows 0-5 and 474-479, cols 0-6 and 632-639 (of 480x640).
NYU_BORDER = (6, 6, 7, 8)  # pixels removed at (top, bottom, left, right)
# The frame size NYU's white border belongs to (H, W); other sizes have no such border (see models.adapter).
NYU_FRAME = (480, 640)
# border_crop value -> (border, the frame size it applies to): the crops inference replays on whole frames
REPLAYABLE_BORDERS = {"nyu": (NYU_BORDER, NYU_FRAME), "none": ((0, 0, 0, 0), None)}
REPLAYABLE_CROPS = tuple(REPLAYABLE_BORDERS)  # the border_crop values a checkpoint can be used with on whole frames
# The five non-identity channel orders (DenseDepth, Sec. 3.3: swap colour channels): a swap always changes the image.
_PERMS = [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


def detect_white_border(image: torch.Tensor, *, thresh: float = 0.98, frac: float = 0.4, limit: int = 32) -> tuple[int, int, int, int]:
    """Count near-white rows/cols at each edge of float[3,H,W] -> (top, bottom, left, right).

    A row counts when >= `frac` of its pixels are near-white: NYU's last border row is only partly white.
    """
    white = (image >= thresh).all(dim=0)  # [H, W]
    rows, cols = white.float().mean(dim=1), white.float().mean(dim=0)

    def run(v: torch.Tensor) -> int:
        n = 0
        while n < min(limit, v.numel()) and v[n] >= frac:
            n += 1
        return n

    return run(rows), run(rows.flip(0)), run(cols), run(cols.flip(0))


class BorderCrop:
    """Remove a white border: "nyu" (the labeled set's fixed border), "detect" (per image), or explicit pixels."""

    def __init__(self, mode: str | Sequence[int] = "nyu") -> None:
        if isinstance(mode, str) and mode not in ("nyu", "detect", "none"):
            raise ConfigError(f"border_crop must be 'nyu', 'detect', 'none' or (top, bottom, left, right); got {mode!r}")
        self.mode = mode if isinstance(mode, str) else tuple(int(x) for x in mode)

    def __call__(self, s: Sample) -> Sample:
        if self.mode == "none":
            return s
        h, w = s["image"].shape[-2:]
        if self.mode == "nyu":
            if (h, w) != (480, 640):
                raise DataError(s.get("name") or None, f"the 'nyu' border crop is defined for 640x480 frames, got {w}x{h}.",
                                "set border_crop='detect' or 'none' for other sizes.")
            t, b, l, r = NYU_BORDER
        elif self.mode == "detect":
            t, b, l, r = detect_white_border(s["image"])
        else:
            t, b, l, r = self.mode  # type: ignore[misc]
        if t + b >= h or l + r >= w:
            raise DataError(s.get("name") or None, f"border crop {(t, b, l, r)} leaves nothing of a {w}x{h} image.")
        out = dict(s)
        for k in ("image", "depth", "valid"):
            out[k] = s[k][..., t : h - b, l : w - r]
        out["border"] = (t, b, l, r)
        return out


def resize_sample(s: Sample, size: tuple[int, int]) -> Sample:
    """Resize to (H, W): image bilinear (antialiased); depth by valid-weighted averaging so holes never leak in; the
    focal length "fx" (pixels) scales with the width."""
    if tuple(s["image"].shape[-2:]) == tuple(size):
        return s
    out = dict(s)
    if "fx" in s:
        out["fx"] = float(s["fx"]) * size[1] / s["image"].shape[-1]
    out["image"] = F.interpolate(s["image"][None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp_(0, 1)
    v = s["valid"].float()
    num = F.interpolate((s["depth"] * v)[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    den = F.interpolate(v[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    # A target pixel is valid only when (almost) all of its source footprint was valid.
    valid = den > 0.999
    out["depth"] = torch.where(valid, num / den.clamp_min(1e-6), torch.zeros_like(num))
    out["valid"] = valid
    return out


class Resize:
    """Resize a sample to (H, W); both must be multiples of `multiple` (the model's)."""

    def __init__(self, size: Sequence[int], multiple: int = 32) -> None:
        h, w = int(size[0]), int(size[1])
        if h % multiple or w % multiple:
            raise ConfigError(f"image_size {(h, w)} must be a multiple of {multiple} (the encoder's total stride); "
                              f"e.g. {(h // multiple * multiple or multiple, w // multiple * multiple or multiple)}.")
        self.size = (h, w)

    def __call__(self, s: Sample) -> Sample:
        return resize_sample(s, self.size)


class RandomHorizontalFlip:
    """Mirror image, depth and valid together with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, s: Sample) -> Sample:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return s
        out = dict(s)
        for k in ("image", "depth", "valid"):
            out[k] = s[k].flip(-1)
        return out


class RandomChannelSwap:
    """Permute the RGB channels (one of the 5 non-identity orders) with probability p; depth untouched."""

    def __init__(self, p: float = 0.25) -> None:
        self.p = p

    def __call__(self, s: Sample) -> Sample:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return s
        perm = _PERMS[int(torch.randint(len(_PERMS), ()))]
        out = dict(s)
        out["image"] = s["image"][list(perm)]
        return out


class RandomPhotometric:
    """Jitter brightness, contrast, saturation and gamma of the image by up to +-`strength`; depth untouched.

    Each factor is drawn uniformly from [1 - strength, 1 + strength] (gamma from its exp-symmetric
    counterpart), in a random order as torchvision's ColorJitter does; values stay in [0, 1]. With 27
    training frames this keeps the model from reading depth off a scene's overall brightness.
    """

    def __init__(self, strength: float = 0.0) -> None:
        if not 0.0 <= strength < 1.0:
            raise ConfigError(f"color_jitter must be in [0, 1), got {strength}.")
        self.strength = strength

    def _factor(self) -> float:
        return 1.0 + self.strength * (2.0 * float(torch.rand(())) - 1.0)

    def __call__(self, s: Sample) -> Sample:
        if self.strength <= 0:
            return s
        img = s["image"]
        for op in torch.randperm(4).tolist():
            f = self._factor()
            if op == 0:
                img = img * f
            elif op == 1:
                img = (img - img.mean()) * f + img.mean()
            elif op == 2:
                grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
                img = (img - grey) * f + grey
            else:
                img = img.clamp(0, 1) ** f
            img = img.clamp(0, 1)
        out = dict(s)
        out["image"] = img
        return out


class RandomZoom:
    """Crop a random window of 1/z of the height and width (z uniform in [1, max_zoom]), same place in image,
    depth and valid; the Resize that follows brings it back to the training size. Depth values are kept.

    This is a longer lens, not a closer camera: the metres do not change while everything looks z times larger,
    so apparent size alone no longer tells the distance and the model has to read the scene's layout. (Eigen
    et al., NIPS 2014, scale the image and divide depth by the factor instead: a closer camera.) 1.0 = off.
    The target is kept with camera_space="canonical" too: the crop is labelled with the frame's own focal length
    (its "fx" shrinks with the crop, so after the Resize it is what the whole frame's would be). The lens zoom that
    moves the target with the focal length is depthlib.data.camera_space.LensZoom (DataConfig.lens_zoom_max).
    """

    def __init__(self, max_zoom: float = 1.0) -> None:
        if not 1.0 <= max_zoom <= 4.0:
            raise ConfigError(f"zoom_max must be in [1, 4] (1 = off), got {max_zoom}.")
        self.max_zoom = float(max_zoom)

    def __call__(self, s: Sample) -> Sample:
        if self.max_zoom <= 1.0:
            return s
        out, frac = crop_window(s, self.max_zoom)
        if "fx" in s:
            out["fx"] = float(s["fx"]) * frac
        return out


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, s: Sample) -> Sample:
        for t in self.transforms:
            s = t(s)
        return s

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


def nominal_border(border_crop: str) -> tuple[int, int, int, int]:
    """The border (top, bottom, left, right) `border_crop` removes from NYU's 640x480 frames ("detect" finds NYU's)."""
    return NYU_BORDER if border_crop in ("nyu", "detect") else (0, 0, 0, 0)


def build_transforms(cfg: DataConfig, train: bool, multiple: int = 32, *, flip_swap_on_device: bool = False) -> Compose:
    """Border crop -> (train only) lens zoom and random zoom -> resize to cfg.image_size -> (train only) flip and
    channel swap, unless flip_swap_on_device (then BatchFlipSwap(cfg) does them per batch), and photometric jitter
    -> (camera_space "canonical", either split) the depth scaled to the canonical focal length."""
    check_camera_settings(cfg)
    steps: list[Callable[[Sample], Sample]] = [BorderCrop(cfg.border_crop)]
    zoom = RandomZoom(cfg.zoom_max)  # checks the value for either split
    lens = LensZoom(cfg.lens_zoom_max)
    if train and lens.max_zoom > 1.0:
        steps.append(lens)
    if train and zoom.max_zoom > 1.0:
        steps.append(zoom)
    steps.append(Resize(cfg.image_size, multiple))
    if train:
        if not flip_swap_on_device:
            steps += [RandomHorizontalFlip(cfg.flip_p), RandomChannelSwap(cfg.swap_p)]
        steps.append(RandomPhotometric(cfg.color_jitter))
    if cfg.camera_space == "canonical":
        steps.append(CanonicalDepth(canonical_fx_of(cfg, nominal_border(cfg.border_crop))))
    return Compose(steps)


def flip_swap_batch(batch: dict[str, Any], *, flip_p: float, swap_p: float) -> dict[str, Any]:
    """Per-sample horizontal flip (image, depth, valid) and non-identity RGB order (image) of a collated batch
    ([B,C,H,W] on any device), as RandomHorizontalFlip and RandomChannelSwap do to one sample.

    The draws (3 x B numbers) come from torch's global CPU generator, so seeding and resume cover them; only the
    masks and orders travel to the device.
    """
    img = batch["image"]
    B = img.shape[0]
    flip = (torch.rand(B) < flip_p).to(img.device).view(B, 1, 1, 1)
    out = dict(batch)
    for k in ("image", "depth", "valid"):
        out[k] = torch.where(flip, batch[k].flip(-1), batch[k])
    swap = torch.rand(B) < swap_p
    perm = torch.tensor(_PERMS)[torch.randint(len(_PERMS), (B,))]
    perm = torch.where(swap.view(B, 1), perm, torch.arange(3).expand(B, 3)).to(img.device)
    out["image"] = torch.gather(out["image"], 1, perm.view(B, 3, 1, 1).expand_as(out["image"]))
    return out


@dataclass(frozen=True)
class BatchFlipSwap:
    """DataConfig's flip and channel swap, applied per batch where the batch is (TrainConfig.gpu_augment)."""

    flip_p: float
    swap_p: float

    @classmethod
    def from_config(cls, cfg: DataConfig) -> BatchFlipSwap:
        """The rates of `cfg` (flip_p, swap_p)."""
        return cls(cfg.flip_p, cfg.swap_p)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Collated batch {"image" [B,3,H,W], "depth" / "valid" [B,1,H,W], ...} -> the same, flipped and swapped."""
        return flip_swap_batch(batch, flip_p=self.flip_p, swap_p=self.swap_p)
