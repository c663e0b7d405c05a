"""Source "nyu_test_npy": DenseDepth's ``nyu_test.zip`` (654 Eigen test frames as .npy), memory-mapped.

Members: ``eigen_test_rgb.npy`` (N, 480, 640, 3) uint8, ``eigen_test_depth.npy`` (N, 480, 640) metres
(hole-filled), ``eigen_test_crop.npy`` = [20, 459, 24, 615] (inclusive rows/cols of DenseDepth's crop).
``path`` is the zip or the folder it was extracted to. From a folder the arrays are ``np.load(mmap_mode="r")``.
From a zip, the .npy members are normally *stored* (not deflated), so their bytes sit contiguously inside
the zip: the array is memory-mapped at its offset in the zip file and never read whole. A deflated member
cannot be mapped (decompressing frame i needs all bytes before it), so it is refused with the fix.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..core.camera import NYU_KINECT
from ..core.errors import DataError
from .frame import Frame
from .io import looks_like_zip
from .registry import register_source

MEMBERS = ("eigen_test_rgb.npy", "eigen_test_depth.npy", "eigen_test_crop.npy")


def _header(fh: io.BufferedIOBase, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fh)
        return npy_format.read_array_header_2_0(fh)
    except ValueError as e:
        raise DataError(where, f"not a valid .npy array ({e}).", "re-download nyu_test.zip.") from None


def _map_zip_member(zip_path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Memory-map a stored .npy member of a zip (read-only), checking that it is complete."""
    where = f"{zip_path}!{info.filename}"
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(where, "is deflated inside the zip, so it cannot be memory-mapped frame by frame.",
                        "extract the zip (`unzip nyu_test.zip -d nyu_test`) and pass the folder as path.")
    with open(zip_path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise DataError(where, "local zip header is damaged.", "re-download nyu_test.zip.")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        shape, fortran, dtype = _header(fh, where)
        data_offset = fh.tell()
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if data_offset + nbytes > zip_path.stat().st_size or data_offset - start + nbytes > info.file_size:
        raise DataError(where, "is truncated (its header promises more bytes than the file holds).",
                        "re-download nyu_test.zip.")
    return np.memmap(zip_path, dtype=dtype, mode="r", offset=data_offset, shape=shape,
                     order="F" if fortran else "C")


def _read_small_member(z: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Read a small .npy member whole (decompressing it if deflated), naming zip and member on damage."""
    where = f"{zip_path}!{info.filename}"
    try:
        data = z.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:  # zlib.error: corrupt deflate data
        raise DataError(where, f"this member of the zip is damaged and cannot be read ({e}).",
                        "re-download nyu_test.zip.") from None
    try:
        return np.load(io.BytesIO(data))
    except (ValueError, EOFError) as e:
        raise DataError(where, f"not a valid .npy array ({e or type(e).__name__}).", "re-download nyu_test.zip.") from None


def _load_folder(folder: Path, member: str) -> np.ndarray:
    p = folder / member
    if not p.is_file():
        raise DataError(p, "missing.", f"extract all of {list(MEMBERS)} from nyu_test.zip into {folder}.")
    try:
        return np.load(p, mmap_mode="r")
    except (ValueError, EOFError) as e:  # numpy: ValueError for a short file, EOFError for an empty one
        raise DataError(p, f"cannot be memory-mapped ({e or type(e).__name__}); it is empty, truncated or not "
                        "a .npy file.", "re-extract it from nyu_test.zip.") from None


@register_source("nyu_test_npy")
class NyuTestNpySource:
    """The Eigen test set as DenseDepth ships it for evaluation (metres, filled; crop in meta["crop"])."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        p = Path(path)
        if p.is_file() and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                infos = {Path(i.filename).name: i for i in z.infolist()}
                missing = [m for m in MEMBERS if m not in infos]
                if missing:
                    raise DataError(p, f"has no {missing} member(s).", "use DenseDepth's nyu_test.zip.")
                crop = _read_small_member(z, p, infos[MEMBERS[2]])
            self.rgb = _map_zip_member(p, infos[MEMBERS[0]])
            self.depth = _map_zip_member(p, infos[MEMBERS[1]])
        elif p.is_dir():
            self.rgb, self.depth = _load_folder(p, MEMBERS[0]), _load_folder(p, MEMBERS[1])
            crop = np.asarray(_load_folder(p, MEMBERS[2]))
        elif p.is_file() and looks_like_zip(p):
            raise DataError(p, "is a damaged or truncated zip archive (it starts like a zip but its central "
                            "directory at the end is missing).", "re-download nyu_test.zip and check its size.")
        else:
            raise DataError(p, "is neither nyu_test.zip nor a folder.", "download DenseDepth's nyu_test.zip.")
        if self.rgb.ndim != 4 or self.rgb.shape[3] != 3 or self.rgb.dtype != np.uint8:
            raise DataError(p, f"eigen_test_rgb is {self.rgb.dtype} {self.rgb.shape}, expected uint8 (N, H, W, 3).")
        if self.depth.shape != self.rgb.shape[:3]:
            raise DataError(p, f"eigen_test_depth {self.depth.shape} does not match eigen_test_rgb {self.rgb.shape}.",
                            "the two arrays come from different downloads; re-download nyu_test.zip.")
        self.crop = [int(c) for c in np.asarray(crop).ravel()]

    def __getstate__(self) -> dict[str, str]:
        return {"path": self.path}  # a pickled memmap would copy the whole array; re-map instead

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        depth = np.asarray(self.depth[i], dtype=np.float32)
        valid = np.isfinite(depth) & (depth > 0)
        frame = Frame(np.array(self.rgb[i]), np.where(valid, depth, 0).astype(np.float32), valid,
                      f"{i:05d}", "", {"crop": self.crop}, NYU_KINECT.fx_at(self.rgb.shape[2]))
        return frame.check(self.path)

    @property
    def names(self) -> list[str]:
        """Eigen test index as 5 digits (= 0-based index in the 654-frame test list)."""
        return [f"{i:05d}" for i in range(len(self))]

    @property
    def scenes(self) -> list[str]:
        """No scene ids ship with the .npy files (every frame is test data)."""
        return ["" for _ in range(len(self))]
