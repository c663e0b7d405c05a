"""A declared no-depth code stored inside the data ("max", "nan") comes back invalid there and valid elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlib.data import open_source

LABELED_01MM = "labeled_full_depth_depth2hha_python/{}.png"   # NYU labeled frame #1, uint16 in 0.1 mm


def _folder(tmp_path: Path, sample_dir: Path, depth_name: str) -> Path:
    root = tmp_path / "own"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    shutil.copy(sample_dir / "data/nyu2_test/00000_colors.png", root / "rgb/00000.png")   # the same frame's RGB
    return root / "depth" / depth_name


@pytest.mark.parametrize("stored, invalid", [("0", "max"), ("0_raw", [0, "max"])])
def test_uint16_max_code_in_the_file_is_invalid_there(tmp_path, sample_dir, shared_nyu, stored, invalid) -> None:
    """A real 0.1 mm frame with 65535 written into it: at 0.1 mm 65535 is 6.55 m, inside max_depth, so only the
    declared code can mask it."""
    raw = np.array(Image.open(shared_nyu / LABELED_01MM.format(stored)))
    assert raw.dtype == np.uint16 and raw.max() < 65535       # the real file holds no 65535 of its own
    raw[100:120, 200:260] = 65535
    raw[0, 0] = raw[-1, -1] = 65535
    code = raw == 65535
    out = _folder(tmp_path, sample_dir, "00000.png")
    Image.fromarray(raw).save(out)
    expect = (raw > 0) & ~code
    f = open_source("pairs", str(out.parent.parent), depth_scale=1e-4, invalid=invalid)[0]
    np.testing.assert_array_equal(f.valid, expect)
    assert (f.depth[~expect] == 0).all()
    # float64 product rounded once to float32, as the reader computes it: equal bit for bit.
    np.testing.assert_array_equal(f.depth[expect], (raw[expect] * 1e-4).astype(np.float32))
    # Without the declared code the same pixels are 6.55 m and valid: the mask above is the option's doing.
    plain = open_source("pairs", str(out.parent.parent), depth_scale=1e-4)[0]
    assert plain.valid[code].all() and np.all(plain.depth[code] == np.float32(65535 * 1e-4))


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_float_nan_in_the_file_is_invalid_there(tmp_path, sample_dir, shared_nyu, suffix) -> None:
    """The same real frame as float32 metres with NaN written into it, read with invalid="nan"."""
    depth = (np.array(Image.open(shared_nyu / LABELED_01MM.format("0"))) * 1e-4).astype(np.float32)
    depth[100:120, 200:260] = np.nan
    depth[0, 0] = depth[-1, -1] = np.nan
    nan = np.isnan(depth)
    out = _folder(tmp_path, sample_dir, "00000" + suffix)
    if suffix == ".npy":
        np.save(out, depth)
    else:
        Image.fromarray(depth).save(out)
    f = open_source("pairs", str(out.parent.parent), invalid="nan")[0]
    np.testing.assert_array_equal(f.valid, ~nan)
    assert (f.depth[nan] == 0).all()
    np.testing.assert_array_equal(f.depth[~nan], depth[~nan])   # float32 metres pass through unchanged
