"""The camera of an image: pinhole intrinsics in its own pixels, and where they came from.

Pixel centres sit at integer coordinates (0-based), as everywhere in depthlib: an image W pixels wide spans
x = -0.5 .. W - 0.5, its centre is (W - 1) / 2, and its horizontal field of view is 2 atan(W / 2 fx).

`resolve` picks an image's camera in issue #22's order: --intrinsics, then --focal-35mm or --fov, then the
image's EXIF, then the camera the model was trained with (NYU's Kinect unless told otherwise).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, DataError

# 35 mm film's frame is 36 x 24 mm; its diagonal is what EXIF's 35 mm-equivalent focal length is scaled by.
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)   # 43.27 mm

# EXIF tags (CIPA DC-008, Exif 2.3): the Exif sub-IFD and the focal-length tags inside it.
EXIF_IFD = 0x8769
FOCAL_LENGTH_35MM = 0xA405          # FocalLengthIn35mmFilm, integer mm; 0 means unknown
FOCAL_LENGTH = 0x920A               # FocalLength, rational mm
FOCAL_PLANE_X_RESOLUTION = 0xA20E   # pixels of the image width per FocalPlaneResolutionUnit on the sensor
FOCAL_PLANE_Y_RESOLUTION = 0xA20F
FOCAL_PLANE_RESOLUTION_UNIT = 0xA210
ORIENTATION = 0x0112                # in the main IFD; 5..8 store the picture turned by 90 degrees
# FocalPlaneResolutionUnit -> millimetres per unit (2 inch is the default; 1 "no unit" cannot be used)
_MM_PER_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics (fx, fy, cx, cy) in pixels of a width x height image, and where they came from."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str

    def __post_init__(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not (self.fx > 0 and self.fy > 0 and all(math.isfinite(v) for v in vals)):
            raise ConfigError(f"{self.source}: the focal lengths fx, fy must be positive pixels and every value "
                              f"finite, got fx={self.fx:g}, fy={self.fy:g}, cx={self.cx:g}, cy={self.cy:g}.")
        if self.width < 1 or self.height < 1:
            raise ConfigError(f"{self.source}: the image size must be positive, got {self.width}x{self.height}.")

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels."""
        return self.fx, self.fy, self.cx, self.cy

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view in degrees, over the image's full width."""
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))

    @classmethod
    def parse(cls, text: str | Sequence[float], width: int, height: int, option: str = "--intrinsics") -> Camera:
        """'fx,fy,cx,cy' (or 4 numbers) in pixels of a width x height image; ConfigError naming `option` when not."""
        example = f"{option} 518.9,519.5,325.6,253.7 (NYU's Kinect at 640x480)"
        if not isinstance(text, str):
            text = ",".join(f"{float(v):g}" for v in text)
        try:
            vals = tuple(float(v) for v in text.split(","))
        except ValueError:
            vals = ()
        if len(vals) != 4:
            raise ConfigError(f"{option} must be 4 comma-separated numbers FX,FY,CX,CY in pixels, got {text!r}. "
                              f"Fix: e.g. {example}.")
        fx, fy, cx, cy = vals
        if not (fx > 0 and fy > 0 and all(math.isfinite(v) for v in vals)):
            raise ConfigError(f"{option}: the focal lengths FX, FY must be positive pixels and every value finite, "
                              f"got {text!r}. Fix: your camera's calibration, e.g. {example}.")
        return cls(fx, fy, cx, cy, int(width), int(height), source=f"{option} {text}")

    @classmethod
    def from_focal_35mm(cls, mm: float, width: int, height: int, source: str = "") -> Camera:
        """Square pixels, centred, from a 35 mm-equivalent focal length of a width x height image.

        Convention: 35 mm-equivalent focal lengths scale by the diagonal (the "crop factor" is 43.27 mm over the
        sensor's diagonal; ExifTool's ScaleFactor35efl computes it so, and cameras write EXIF
        FocalLengthIn35mmFilm, CIPA DC-008, the same way), so f_px = mm / 43.27 * sqrt(W^2 + H^2).
        """
        what = source or f"--focal-35mm {mm:g}"
        if not (math.isfinite(mm) and mm > 0):
            raise ConfigError(f"{what}: a 35 mm-equivalent focal length must be positive millimetres, got {mm!r}. "
                              "Fix: e.g. --focal-35mm 26 (a phone's main camera).")
        f = mm / FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height), source=what)

    @classmethod
    def from_fov(cls, deg: float, width: int, height: int, source: str = "") -> Camera:
        """Square pixels, centred, from the horizontal field of view in degrees over the image's full width."""
        what = source or f"--fov {deg:g}"
        if not (math.isfinite(deg) and 0 < deg < 180):
            raise ConfigError(f"{what}: the horizontal field of view must be between 0 and 180 degrees, got {deg!r}. "
                              "Fix: e.g. --fov 63.3 (NYU's Kinect) or --fov 69 (a phone's main camera).")
        f = width / (2.0 * math.tan(math.radians(deg) / 2.0))
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height), source=what)

    @classmethod
    def from_exif(cls, path: str | os.PathLike[str]) -> Camera | None:
        """The camera of an image file from its EXIF focal length, at its upright size; None when EXIF has none.

        FocalLengthIn35mmFilm first; else FocalLength with FocalPlaneX/YResolution (the sensor's pixel pitch).
        The focal-plane resolution is taken as recorded: a file resized after capture without updating it gives
        a wrong focal length (nothing in EXIF says it was resized), so pass --intrinsics for such files.
        """
        (w, h), exif = _header(path)
        turned = exif.get(ORIENTATION) in (5, 6, 7, 8)
        ifd = exif.get_ifd(EXIF_IFD)
        name = Path(path).name
        f35 = _number(ifd.get(FOCAL_LENGTH_35MM))
        if f35 is not None and f35 > 0:
            return cls.from_focal_35mm(f35, w, h, source=f"EXIF FocalLengthIn35mmFilm {f35:g} mm of {name}")
        f_mm = _number(ifd.get(FOCAL_LENGTH))
        xres = _number(ifd.get(FOCAL_PLANE_X_RESOLUTION))
        yres = _number(ifd.get(FOCAL_PLANE_Y_RESOLUTION))
        unit = _MM_PER_UNIT.get(int(_number(ifd.get(FOCAL_PLANE_RESOLUTION_UNIT)) or 2))
        if f_mm is None or not f_mm > 0 or xres is None or not xres > 0 or unit is None:
            return None
        yres = yres if yres is not None and yres > 0 else xres
        # pixels per mm on the sensor, along the stored image's x and y; turned pictures swap them
        px, py = (yres / unit, xres / unit) if turned else (xres / unit, yres / unit)
        return cls(f_mm * px, f_mm * py, (w - 1) / 2.0, (h - 1) / 2.0, w, h,
                   source=f"EXIF FocalLength {f_mm:g} mm and FocalPlaneResolution of {name}")

    def fx_at(self, width: int) -> float:
        """fx in pixels of this camera's image resized to `width` pixels wide (a reader's frames of another width)."""
        return self.fx * width / self.width

    def resized(self, width: int, height: int) -> Camera:
        """The same camera for the image resized to width x height: focal lengths and centre scale with it."""
        sx, sy = width / self.width, height / self.height
        # pixel centres at integer coordinates: the principal point scales about -0.5
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5, width=int(width), height=int(height))


def _header(path: str | os.PathLike[str]) -> tuple[tuple[int, int], Any]:
    """((width, height) as shown, upright by its EXIF orientation, PIL's Exif) of an image file, from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            (w, h), exif = img.size, img.getexif()
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(path, f"cannot be read as an image ({e}).", "check the file.") from e
    # predict reads a picture upright (EXIF orientation 5..8: turned by 90 degrees), so its width and height swap
    return ((h, w) if exif.get(ORIENTATION) in (5, 6, 7, 8) else (w, h)), exif


def upright_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image file as predict reads it (upright by its EXIF orientation), from its header."""
    return _header(path)[0]


def _number(value: object) -> float | None:
    """An EXIF value (int, IFDRational, (num, den) tuple) as a float; None when absent or not a finite number."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        value = value[0] / value[1] if value[1] else math.nan
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


# NYU Depth V2's Kinect RGB camera at 640x480 (the NYU toolbox's camera_params.m: fx_rgb, fy_rgb, cx_rgb, cy_rgb)
NYU_KINECT = Camera(5.1885790117450188e02, 5.1946961112127485e02, 3.2558244941119034e02, 2.5373616633400465e02,
                    640, 480, source="the training camera (NYU Kinect)")

# where a resolved camera came from, in resolve's order
ORIGINS = ("intrinsics", "focal_35mm", "fov", "exif", "assumed")


def resolve(width: int, height: int, *, intrinsics: str | Sequence[float] | None = None, focal_35mm: float | None = None,
            fov: float | None = None, path: str | os.PathLike[str] | None = None,
            training: Camera = NYU_KINECT) -> tuple[Camera, str]:
    """The camera of a width x height image and its origin (one of ORIGINS), in issue #22's order.

    intrinsics ('fx,fy,cx,cy' or 4 numbers, the image's pixels), focal_35mm and fov are the command line's, exclusive;
    without them, `path`'s EXIF; otherwise `training` resized to the image ("assumed": it keeps the training
    camera's field of view).
    """
    given = [o for o, v in (("--intrinsics", intrinsics), ("--focal-35mm", focal_35mm), ("--fov", fov))
             if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} each state the camera. Fix: give one of them.")
    if intrinsics is not None:
        return Camera.parse(intrinsics, width, height), "intrinsics"
    if focal_35mm is not None:
        return Camera.from_focal_35mm(focal_35mm, width, height), "focal_35mm"
    if fov is not None:
        return Camera.from_fov(fov, width, height), "fov"
    if path is not None:
        cam = Camera.from_exif(path)
        if cam is not None:
            if (cam.width, cam.height) != (width, height):
                cam = cam.resized(width, height)
            return cam, "exif"
    return training.resized(width, height), "assumed"


def assumed_line(camera: Camera, path: str | os.PathLike[str] | None = None, *, rescales: bool = False,
                 known: bool = False) -> str:
    """The sentence predict prints (once per run) when no camera was given and the image's EXIF has none; rescales:
    the model was trained in a canonical camera space, so a given camera also scales its depth; known: --known
    distances rescale the depth already (so they are not suggested)."""
    where = f" in {Path(path).name}" if path is not None else ""
    uses = "the depth and the PLY follow it" if rescales else "the PLY uses it"
    rescale = "" if known else ", or --known distances to rescale the depth"
    return (f"no camera given and no EXIF focal length{where}: assumed {camera.source}, "
            f"{camera.hfov_deg:.1f}° horizontal field of view (fx {camera.fx:.1f} px at {camera.width}x{camera.height}), "
            "here and for any other image without one. The model's metric depth holds for a lens like that; pass "
            f"--intrinsics, --focal-35mm or --fov ({uses}){rescale}.")


# what predict prints once when a camera was given to a model trained on metres (camera_space "none")
NO_CAMERA_SPACE_LINE = ("this model was trained without a camera space: the focal length changes only the point cloud, "
                        "not the depth (a model trained with camera_space='canonical' follows it).")


def no_camera_space_line(*, ply: bool) -> str:
    """NO_CAMERA_SPACE_LINE, and without --ply (no point cloud written) that the camera given changes nothing."""
    if ply:
        return NO_CAMERA_SPACE_LINE
    return ("this model was trained without a camera space: the focal length changes only the point cloud (--ply), "
            "not the depth, and no point cloud is written here, so the camera given changes nothing in this run (a "
            "model trained with camera_space='canonical' follows it).")
