"""The canonical camera space (issue #22): depth targets scaled to one focal length, and the lens augmentation.

A network that reads distance from apparent size is right only for the lens it was trained with: the same room
through a z-times longer lens looks z times larger, as if the camera were z times closer. DataConfig's
``camera_space="canonical"`` trains in the space of one camera instead (Metric3D's canonical camera transform):

- every sample carries ``fx``, the focal length in pixels of its image's width (the reader's, through the prepared
  file), and each transform keeps it true: a crop leaves it, a resize scales it with the width (Resize);
- the target is ``depth * canonical_fx / fx`` at the model's input size (CanonicalDepth, the last step);
- a prediction p of such a model means metric depth ``p * f / canonical_fx`` for an image whose focal length at the
  input size is f (depthlib.models.predict rescales by it when given the images' fx).

``canonical_fx`` defaults to NYU's Kinect after the run's border crop and resize, so NYU frames keep their metres
(factor 1). Pixels never change: only the depth's scale does. The default ``camera_space="none"`` trains on metres
as read and ignores every focal length.

Two random zooms, both a crop of 1/z of the frame that Resize brings back to the input size:

- ``lens_zoom_max`` (LensZoom, here): a longer lens. The focal length at the input is z times the frame's, and with
  camera_space="canonical" the target follows: the same metres, seen z times larger, are z times nearer to the
  canonical camera. It teaches how apparent size and distance go together.
- ``zoom_max`` (depthlib.data.transforms.RandomZoom): the target is kept, in either space (its crop is labelled with
  the frame's own focal length). It teaches that apparent size alone says nothing, so the model reads layout.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..core.camera import NYU_KINECT
from ..core.config import DataConfig
from ..core.errors import ConfigError, DataError

Sample = dict[str, Any]
CAMERA_SPACES = ("none", "canonical")


def default_canonical_fx(image_size: Sequence[int], border: Sequence[int]) -> float:
    """NYU's Kinect fx (518.86 px at 640 wide) after a crop of `border` (top, bottom, left, right) and the resize to
    image_size (H, W): the focal length NYU frames have at the model's input, so their canonical factor is 1."""
    _, _, left, right = border
    return NYU_KINECT.fx * int(image_size[1]) / (NYU_KINECT.width - left - right)


def check_camera_settings(cfg: DataConfig) -> None:
    """ConfigError naming the setting and the fix for camera_space / canonical_fx / lens_zoom_max values."""
    if cfg.camera_space not in CAMERA_SPACES:
        raise ConfigError(f"camera_space={cfg.camera_space!r} is not one of {list(CAMERA_SPACES)}. Fix: 'none' (depth "
                          "in metres as read) or 'canonical' (depth scaled to one focal length, issue #22).")
    fc = cfg.canonical_fx
    if isinstance(fc, bool) or not isinstance(fc, (int, float)) or not (fc == 0 or (math.isfinite(fc) and fc > 0)):
        raise ConfigError(f"canonical_fx={fc!r} must be a focal length in pixels at image_size's width, or 0 for NYU's "
                          "Kinect at that size. Fix: e.g. canonical_fx=0.")
    if fc and cfg.camera_space != "canonical":
        raise ConfigError(f"canonical_fx={fc:g} is set but camera_space={cfg.camera_space!r}: it would change nothing. "
                          "Fix: camera_space='canonical', or canonical_fx=0.")
    if not 1.0 <= cfg.lens_zoom_max <= 4.0:
        raise ConfigError(f"lens_zoom_max must be in [1, 4] (1 = off), got {cfg.lens_zoom_max}.")
    if cfg.lens_zoom_max > 1.0 and cfg.camera_space != "canonical":
        raise ConfigError(f"lens_zoom_max={cfg.lens_zoom_max:g} with camera_space={cfg.camera_space!r}: without a "
                          "camera space a longer lens keeps the metres, which is zoom_max's crop. Fix: "
                          "camera_space='canonical' (the target follows the lens), or zoom_max instead.")


def canonical_fx_of(cfg: DataConfig, border: Sequence[int]) -> float:
    """The run's canonical focal length in pixels at image_size: cfg.canonical_fx, or the Kinect's default when 0."""
    return float(cfg.canonical_fx) or default_canonical_fx(cfg.image_size, border)


def crop_window(s: Sample, max_zoom: float) -> tuple[Sample, float]:
    """A random window of 1/z of the height and width (z uniform in [1, max_zoom]), the same place in image, depth
    and valid -> (the cropped sample, its width over the sample's). The focal length in pixels is the crop's too."""
    z = 1.0 + (max_zoom - 1.0) * float(torch.rand(()))
    h, w = s["image"].shape[-2:]
    ch, cw = max(1, round(h / z)), max(1, round(w / z))
    top = int(torch.randint(h - ch + 1, ()))
    left = int(torch.randint(w - cw + 1, ()))
    out = dict(s)
    for k in ("image", "depth", "valid"):
        out[k] = s[k][..., top : top + ch, left : left + cw]
    return out, cw / w


class LensZoom:
    """A longer lens: crop 1/z of the frame (z uniform in [1, max_zoom]); the Resize after it makes the focal length
    at the input z times the frame's (exactly w / crop width), and with camera_space="canonical" the target 1/z."""

    def __init__(self, max_zoom: float = 1.0) -> None:
        if not 1.0 <= max_zoom <= 4.0:
            raise ConfigError(f"lens_zoom_max must be in [1, 4] (1 = off), got {max_zoom}.")
        self.max_zoom = float(max_zoom)

    def __call__(self, s: Sample) -> Sample:
        if self.max_zoom <= 1.0:
            return s
        return crop_window(s, self.max_zoom)[0]


class CanonicalDepth:
    """depth *= canonical_fx / fx, the sample's focal length at the model's input: depth as a camera of canonical_fx
    would measure it at the same apparent size. Holes stay 0; a sample without a focal length is refused."""

    def __init__(self, canonical_fx: float) -> None:
        self.canonical_fx = float(canonical_fx)

    def __call__(self, s: Sample) -> Sample:
        fx = float(s.get("fx", math.nan))
        if not (math.isfinite(fx) and fx > 0):
            raise DataError(s.get("name") or None, "has no focal length, and camera_space='canonical' scales its depth "
                            "by one.", "re-run 01_data_prep so the prepared file records each frame's focal length "
                            "(format 2), and declare your camera to the pairs reader (focal= or intrinsics=, or "
                            "focal / fx columns in its list); or train with camera_space='none'.")
        out = dict(s)
        out["depth"] = s["depth"] * (self.canonical_fx / fx)
        return out

    def __repr__(self) -> str:
        return f"CanonicalDepth(canonical_fx={self.canonical_fx:.4f})"
