"""Decoding of image and depth files with errors that name the file, never a crash inside PIL/torch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import DataError

# PIL modes of 16-bit greyscale PNGs.
_MODES_16 = ("I;16", "I;16B", "I;16L", "I")


def looks_like_zip(path: Path) -> bool:
    """True when `path` starts with a zip local-file signature, so a failing zipfile.is_zipfile means damage."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _open(data: bytes | str | Path, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
        img.load()  # force full decode now so truncation surfaces here
    except FileNotFoundError:
        raise DataError(name, "file not found.", "check the path, or re-extract the archive.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            name, f"cannot decode image ({e}).", "the file is truncated or not an image; re-download or re-extract it."
        ) from None
    return img


# PIL modes a photo may come in that convert("RGB") maps faithfully (palette, grey, alpha, CMYK, ...).
_PHOTO_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "La", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")


def read_rgb(data: bytes | str | Path, name: str = "", *, photo: bool = False) -> np.ndarray:
    """Decode an RGB image file (path or bytes) -> uint8 [H, W, 3].

    Dataset frames (photo=False) must be 8-bit colour or grey: anything else is more likely a depth map in
    the RGB column. A photo (photo=True, what `predict` reads) is read as read_photo reads it.
    """
    name = name or str(data if not isinstance(data, (bytes, bytearray)) else "<bytes>")
    if photo:
        return read_photo(data, name)[0]
    img = _open(data, name)
    if img.mode not in ("RGB", "RGBA", "L", "P"):
        raise DataError(name, f"expected an 8-bit colour image, got PIL mode {img.mode!r}.",
                        "is this a depth map listed in the RGB column?")
    return np.array(img.convert("RGB"), dtype=np.uint8)


PHOTO_BACKGROUND = (255, 255, 255)  # what transparent pixels of a photo are composited on


def read_photo(data: bytes | str | Path, name: str = "") -> tuple[np.ndarray, bool]:
    """Decode a photo (path or bytes) -> (uint8 [H, W, 3], whether it had transparent pixels).

    Turned upright by its EXIF orientation and converted from any mode PIL can convert (CMYK, grey + alpha,
    1-bit, palette; 16-bit grey keeps its top 8 bits). Pixels an alpha channel (or a palette's transparency)
    makes transparent are composited on white (PHOTO_BACKGROUND): dropping the alpha would show the model the
    colours stored under it, often black or leftovers. The flag is True only when some pixel was not opaque.
    """
    name = name or str(data if not isinstance(data, (bytes, bytearray)) else "<bytes>")
    img = ImageOps.exif_transpose(_open(data, name))  # a phone photo stored sideways comes out as it is shown
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            out = Image.new("RGBA", rgba.size, PHOTO_BACKGROUND + (255,))
            out.alpha_composite(rgba)
            return np.array(out.convert("RGB"), dtype=np.uint8), True
        return np.array(rgba.convert("RGB"), dtype=np.uint8), False
    if img.mode in _PHOTO_MODES:
        return np.array(img.convert("RGB"), dtype=np.uint8), False
    if img.mode in _MODES_16:
        grey = np.array(img, dtype=np.int64)
        if grey.min() < 0 or grey.max() > 65535:
            raise DataError(name, f"a {img.mode!r} image with values outside 0..65535 is not a photo.",
                            "convert it to an 8-bit RGB image.")
        grey8 = (grey >> 8).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2), False
    raise DataError(name, f"cannot be read as a photo: PIL mode {img.mode!r} has no RGB conversion.",
                    "convert it to an 8-bit RGB image (e.g. PNG or JPEG).")


def read_depth_png(data: bytes | str | Path, *, encoding: str, name: str = "") -> np.ndarray:
    """Decode a depth PNG -> float32 metres [H, W] (0 where the file stores 0).

    encoding: "mm16" (uint16 millimetres, DenseDepth test / BTS), "u8_10m" (uint8, 0..255 = 0..10 m,
    DenseDepth train), "dmm16" (uint16 tenths of a millimetre, the labeled set exported by Depth2HHA).
    The bit depth must match the encoding: a mismatch means the wrong units, so it is refused.
    """
    name = name or str(data if not isinstance(data, (bytes, bytearray)) else "<bytes>")
    img = _open(data, name)
    if encoding in ("mm16", "dmm16"):
        if img.mode not in _MODES_16:
            raise DataError(
                name,
                f"expected a 16-bit depth PNG ({encoding}), got an {img.mode!r} image "
                f"(8-bit depth means 0..255 = 0..10 m, the DenseDepth train encoding).",
                "use the 'train' split/encoding for 8-bit depth, or check that this is a depth file.",
            )
        arr = np.array(img, dtype=np.uint16 if img.mode != "I" else np.int32).astype(np.float32)
        return arr / (1000.0 if encoding == "mm16" else 10000.0)
    if encoding == "u8_10m":
        if img.mode != "L":
            raise DataError(
                name,
                f"expected an 8-bit depth PNG (0..255 = 0..10 m), got a {img.mode!r} image "
                "(16-bit depth is millimetres, the DenseDepth test encoding).",
                "use the 'test' split/encoding for 16-bit millimetre depth.",
            )
        return np.asarray(img, dtype=np.uint8).astype(np.float32) * (10.0 / 255.0)
    raise ValueError(f"unknown depth encoding {encoding!r}; use 'mm16', 'u8_10m' or 'dmm16'")


def read_depth_raw(path: str | Path) -> np.ndarray:
    """A depth file's values as stored -> [H, W] integer codes or floats: PNG/TIFF (PIL, modes L, I;16, I, F) or .npy.

    No unit is applied here (see depthlib.data.units). OpenEXR is refused: no installed library reads it
    (Pillow does not; OpenCV and OpenEXR are not dependencies), so convert such files to float32 .npy or TIFF.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".exr":
        raise DataError(p, "OpenEXR depth cannot be read: no installed library decodes .exr (Pillow does not).",
                        "convert the depth to float32 .npy or float TIFF (metres), e.g. with OpenCV or OpenEXR.")
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(p, "file not found.", "check the path or the file list.") from None
        except (ValueError, OSError, EOFError) as e:
            raise DataError(p, f"cannot be read as a .npy array ({e}).", "re-export it with numpy.save.") from None
        arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
        if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(p, f"expected a 2-D numeric depth array, got {arr.dtype} {arr.shape}.",
                            "save one HxW depth map per file.")
        return arr
    img = _open(p, str(p))
    if img.mode in _MODES_16 or img.mode in ("L", "F"):
        return np.array(img)
    raise DataError(p, f"a depth file must hold one channel, got PIL mode {img.mode!r}.",
                    "export raw depth (16-bit PNG, float TIFF or .npy), not a colour-mapped picture.")


def write_depth_png(path: str | Path, depth_m: np.ndarray, *, encoding: str = "mm16") -> None:
    """Encode float metres [H, W] as a depth PNG (inverse of read_depth_png); holes must be 0."""
    d = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0)
    if encoding == "mm16":
        arr = np.clip(np.round(d * 1000.0), 0, 65535).astype(np.uint16)
    elif encoding == "u8_10m":
        arr = np.clip(np.round(d * 25.5), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown depth encoding {encoding!r}")
    Image.fromarray(arr).save(path, format="PNG")
