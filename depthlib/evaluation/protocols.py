"""Named evaluation protocols: how a prediction is upsampled, cropped, masked and clamped.

Two presets, both called "the Eigen crop" in papers although they differ:

- ``densedepth`` (Alhashim & Wonka's evaluate.py/utils.py): crop rows 20-459, cols 24-615
  inclusive (440x592; their eigen_test_crop.npy = [20, 459, 24, 615]), filled ground truth, every
  pixel in the crop counts, metrics pooled over all pixels of the test set, flip averaging, the
  prediction clipped to [0.1, 10] m at the model's half resolution and then upsampled x2 with
  skimage ``resize(order=1, mode='reflect', anti_aliasing=True)``. For upsampling that is bilinear
  with half-pixel centres (anti-aliasing only smooths when shrinking), i.e. ``F.interpolate(...,
  align_corners=False)``; the two differ only in the outermost row/column, which the crop drops
  (tests/test_evaluate.py checks this against skimage).
- ``eigen`` (BTS, AdaBins, ZoeDepth): mask [45:471, 41:601] (426x560), valid where
  1e-3 < gt < 10 m, raw ground truth allowed, metrics per image then averaged, the prediction
  upsampled to the ground truth with ``align_corners=True`` (AdaBins / ZoeDepth) and clamped to
  [1e-3, 10]. Flip averaging on, as AdaBins and ZoeDepth evaluate (BTS does not flip).

Crops are defined on 480x640 frames. Other sizes raise DataError; ``Protocol.rescaled(h, w)``
scales the crop explicitly and renames the protocol (e.g. ``eigen@240x320``) so that a result
computed that way can never pass for the published protocol.

A third preset is not a published protocol and is named for what it does:

- ``no_crop_valid``: frames of any size and aspect ratio (your own data), no crop, every pixel the
  reader marks valid counts (raw ground truth allowed; the reader's ``max_depth`` and invalid value
  decide), metrics per image then averaged (so frames of different sizes weigh the same), flip
  averaging, bilinear upsampling with half-pixel centres (as ``predict`` does), the prediction
  clamped to [1e-3, 1000] m only to keep the logarithms finite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.errors import ConfigError, DataError
from .align import align


@dataclass(frozen=True)
class Protocol:
    """One published evaluation recipe; crop = (top, bottom, left, right), Python half-open bounds."""

    name: str
    crop: tuple[int, int, int, int] | None
    frame_size: tuple[int, int] | None = (480, 640)       # (H, W) the crop is defined on; None: any size
    require_filled: bool = False                          # every pixel inside the crop must be valid
    valid_range: tuple[float, float] | None = None        # open interval on ground truth, metres
    pred_range: tuple[float, float] = (1e-3, 10.0)        # prediction clamp, metres
    clamp_before_upsample: bool = False                   # DenseDepth clips at model resolution
    align_corners: bool = False                           # bilinear upsampling convention
    reduce: str = "pooled"                                # "pooled" | "per_image" (depthlib.evaluation.metrics)
    flip_average: bool = True
    reference: str = ""

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """(h, w) of the cropped region, or None without a crop."""
        if self.crop is None:
            return None
        t, b, l, r = self.crop
        return (b - t, r - l)

    def crop_slices(self, h: int, w: int, source: str | None = None) -> tuple[slice, slice]:
        """Row/column slices of the crop for an h x w frame; DataError if the frame size differs."""
        if self.frame_size is None:
            return slice(None), slice(None)
        if (h, w) != tuple(self.frame_size):
            fh, fw = self.frame_size
            raise DataError(
                source,
                f"protocol {self.name!r} is defined on {fw}x{fh} frames, but the ground truth is {w}x{h}.",
                f"evaluate full-resolution {fw}x{fh} frames (no resizing transform on the evaluation "
                f"dataset), or pass protocol=get_protocol({self.name!r}).rescaled({h}, {w}), which "
                "scales the crop and renames the protocol.",
            )
        if self.crop is None:
            return slice(None), slice(None)
        t, b, l, r = self.crop
        return slice(t, b), slice(l, r)

    def rescaled(self, h: int, w: int) -> "Protocol":
        """This protocol for h x w frames: crop scaled proportionally, renamed '<name>@<h>x<w>'."""
        if self.frame_size is None or (h, w) == tuple(self.frame_size):
            return self
        fh, fw = self.frame_size
        crop = None
        if self.crop is not None:
            t, b, l, r = self.crop
            crop = (round(t * h / fh), round(b * h / fh), round(l * w / fw), round(r * w / fw))
        base = self.name.split("@")[0]
        return dataclasses.replace(self, name=f"{base}@{h}x{w}", crop=crop, frame_size=(h, w))

    def describe(self) -> str:
        """One line naming every choice, for table captions."""
        if self.crop is None:
            crop = "no crop" + (", any frame size" if self.frame_size is None else "")
        else:
            t, b, l, r = self.crop
            ch, cw = self.crop_size  # type: ignore[misc]
            crop = f"crop rows {t}-{b - 1}, cols {l}-{r - 1} of {self.frame_size[1]}x{self.frame_size[0]} ({cw}x{ch})"
        gt = "filled GT required" if self.require_filled else "raw GT allowed"
        rng = "" if self.valid_range is None else f", valid {self.valid_range[0]:g} < gt < {self.valid_range[1]:g} m"
        return (f"{self.name}: {crop}, {gt}{rng}, {self.reduce.replace('_', '-')} mean, "
                f"prediction clamped to [{self.pred_range[0]:g}, {self.pred_range[1]:g}] m, bilinear "
                f"upsampling (align_corners={self.align_corners})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-builtin dict of every field (for metrics JSON)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def apply(self, pred: Tensor, target: Tensor, valid: Tensor, *, alignment: str = "none",
              source: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """pred [B,1,h,w] m (model resolution), target/valid [B,1,H,W] -> cropped pred, target, valid [B,1,h',w']."""
        if pred.ndim != 4 or target.ndim != 4 or valid.shape != target.shape:
            raise DataError(source, f"expected [B,1,H,W] tensors, got pred {tuple(pred.shape)}, target "
                            f"{tuple(target.shape)}, valid {tuple(valid.shape)}.", "batch the samples first.")
        if bool(torch.isnan(pred).any()):
            raise DataError(source, "the model produced NaN depth.", "check the checkpoint and the input images.")
        hh, ww = target.shape[-2:]
        rows, cols = self.crop_slices(hh, ww, source)
        lo, hi = self.pred_range
        if alignment == "none" and self.clamp_before_upsample:
            pred = pred.clamp(lo, hi)
        if pred.shape[-2:] != target.shape[-2:]:
            pred = F.interpolate(pred.to(torch.float64), size=(hh, ww), mode="bilinear",
                                 align_corners=self.align_corners)
        pred, target, valid = pred[..., rows, cols], target[..., rows, cols], valid[..., rows, cols]
        if self.valid_range is not None:
            valid = valid & (target > self.valid_range[0]) & (target < self.valid_range[1])
        if self.require_filled and not bool(valid.all()):
            raise DataError(
                source,
                f"protocol {self.name!r} evaluates filled ground truth, but {int((~valid).sum())} pixels "
                "inside the crop are marked invalid (holes).",
                "use protocol='eigen' for raw depth, or a filled source (DenseDepth's test set, the labeled "
                "set's in-painted `depths`).",
            )
        pred = align(pred, target, valid, alignment, depth_range=self.pred_range)
        return pred.clamp(lo, hi), target, valid


PROTOCOLS: dict[str, Protocol] = {
    "densedepth": Protocol(
        name="densedepth",
        crop=(20, 460, 24, 616),
        require_filled=True,
        valid_range=None,
        pred_range=(0.1, 10.0),
        clamp_before_upsample=True,
        align_corners=False,
        reduce="pooled",
        flip_average=True,
        reference="Alhashim & Wonka 2018 (arXiv 1812.11941), DenseDepth evaluate.py / utils.py",
    ),
    "eigen": Protocol(
        name="eigen",
        crop=(45, 471, 41, 601),
        require_filled=False,
        valid_range=(1e-3, 10.0),
        pred_range=(1e-3, 10.0),
        clamp_before_upsample=False,
        align_corners=True,
        reduce="per_image",
        flip_average=True,
        reference="BTS (Lee et al. 2019), AdaBins (Bhat et al. 2021), ZoeDepth (Bhat et al. 2023) NYU evaluation",
    ),
    "no_crop_valid": Protocol(
        name="no_crop_valid",
        crop=None,
        frame_size=None,
        require_filled=False,
        valid_range=None,
        pred_range=(1e-3, 1000.0),
        clamp_before_upsample=False,
        align_corners=False,
        reduce="per_image",
        flip_average=True,
        reference="not a published protocol: your own data, any frame size, no crop, the reader's valid pixels",
    ),
}


def list_protocols() -> list[str]:
    """Names accepted by get_protocol, sorted."""
    return sorted(PROTOCOLS)


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The preset named `protocol`, or `protocol` itself when it already is a Protocol."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; known: {list_protocols()}.")
    return PROTOCOLS[protocol]
