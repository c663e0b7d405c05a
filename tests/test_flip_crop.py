"""Issue 21: on real 640x480 NYU frames, predict replays the checkpoint's border crop, and flip averaging
mirrors the cropped window (NYU's border is uneven: 7 columns left, 8 right), never the whole frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from _tiny_checkpoint import tiny_checkpoint
from depthlib.data import frame_to_sample, open_source
from depthlib.inference import load_for_inference
from depthlib.models.predict import predict

SIZE = [192, 256]          # the default training input (DataConfig.image_size)
T, B, L, R = 6, 6, 7, 8    # NYU's white border: rows 0-5 / 474-479, columns 0-6 / 632-639
# float32: convolutions differ between kernels and memory formats at ~1e-6 relative, and grid_sample's float32
# sample positions (~1e-5 of a raw pixel) move this steep random model's depth by up to ~2e-5 m. 0.1 mm and 1e-4
# relative cover both and stay far under what is caught here (decimetres).
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _frames(sample_dir, n: int = 1) -> Tensor:
    """The embedded sample's first `n` frames as the user's images: float[n,3,480,640] in [0,1]."""
    src = open_source("densedepth", sample_dir)
    return torch.stack([frame_to_sample(src[i])["image"] for i in range(n)])


def _coords(n_out: int, size: int, lo: int, hi: int, n_raw: int) -> Tensor:
    """Pixel coordinates (0 = first pixel's centre) in a raw grid of n_raw pixels spanning frame pixels [lo, size - hi)
    of the frame's stride-2 output pixels 0..n_out-1, whose centres lie at frame coordinate 2 * (i + 0.5)."""
    centre = 2.0 * (torch.arange(n_out, dtype=torch.float64) + 0.5)
    return (centre - lo) * n_raw / (size - lo - hi) - 0.5


def _bilinear(raw: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """raw float[B,1,h,w] read at (rows[i], cols[j]) by hand, separably; coordinates clamped to the edge pixels."""
    def axis(pos: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
        pos = pos.clamp(0, n - 1)
        lo = pos.floor().long().clamp(max=n - 2)
        return lo, lo + 1, (pos - lo).to(raw.dtype)

    r0, r1, fr = axis(rows, raw.shape[-2])
    c0, c1, fc = axis(cols, raw.shape[-1])
    by_row = raw[..., r0, :] * (1 - fr)[:, None] + raw[..., r1, :] * fr[:, None]
    return by_row[..., c0] * (1 - fc) + by_row[..., c1] * fc


def _placed(raw: Tensor) -> Tensor:
    """A raw prediction of the cropped window placed back on the 480x640 frame's 240x320 output grid."""
    return _bilinear(raw, _coords(240, 480, T, B, raw.shape[-2]), _coords(320, 640, L, R, raw.shape[-1]))


def _window(x: Tensor) -> Tensor:
    """What training fed the model: the border cut off, resized to SIZE (as depthlib.data.transforms does)."""
    return F.interpolate(x[..., T : 480 - B, L : 640 - R], size=SIZE, mode="bilinear", antialias=True,
                         align_corners=False)


def test_flip_average_mirrors_the_cropped_window_not_the_frame(sample_dir, tmp_path):
    # Mirroring the whole frame and cropping after it shows the mirrored pass columns 8..632 (a white one in view)
    # instead of 7..631: the two halves of the average were a column apart.
    model = load_for_inference(tiny_checkpoint(tmp_path / "t.pt", data={"image_size": SIZE, "border_crop": "nyu"}))
    x = _frames(sample_dir)
    with torch.inference_mode():
        inner = _window(x)
        plain = _placed(model.model(inner))
        mirrored = _placed(model.model(inner.flip(-1)).flip(-1))
    to_depth = model.head.to_depth
    expect = 0.5 * (to_depth(plain) + to_depth(mirrored))
    got = predict(model, x, out_size="native")
    assert got.shape == expect.shape == (1, 1, 240, 320)
    err = float((got - expect).abs().max())
    torch.testing.assert_close(got, expect, **TOL, msg=lambda m: f"flip-averaged depth off by up to {err:.4f} m\n{m}")
    torch.testing.assert_close(predict(model, x, flip_average=False, out_size="native"), to_depth(plain), **TOL)
    # The model depends on position and content enough that the two passes differ: the average is no identity.
    assert float((to_depth(plain) - to_depth(mirrored)).abs().max()) > 0.1


def test_predict_replays_the_checkpoints_nyu_crop_on_a_real_frame(sample_dir, tmp_path):
    # Same weights (same seed) recorded once with border_crop="nyu" and once with "none".
    nyu = load_for_inference(tiny_checkpoint(tmp_path / "nyu.pt", data={"image_size": SIZE, "border_crop": "nyu"}))
    none = load_for_inference(tiny_checkpoint(tmp_path / "none.pt", data={"image_size": SIZE, "border_crop": "none"}))
    x = _frames(sample_dir, 2)
    got = predict(nyu, x, flip_average=False, out_size="native")
    uncropped = predict(none, x, flip_average=False, out_size="native")
    with torch.inference_mode():  # the model run on the cropped frame, its prediction placed back on the frame
        cropped = none.head.to_depth(_placed(none.model(_window(x))))
    err = float((got - cropped).abs().max())
    torch.testing.assert_close(got, cropped, **TOL, msg=lambda m: f"off the cropped run by up to {err:.4f} m\n{m}")
    # Output pixels centred in the border (rows 0-2 / 237-239, columns 0-2 / 316-319) repeat the window's edge,
    # where the uncropped run saw the white border.
    for rows, edge in ((slice(0, 3), 3), (slice(237, 240), 236)):
        assert torch.equal(got[..., rows, :], got[..., edge : edge + 1, :].expand_as(got[..., rows, :]))
    for cols, edge in ((slice(0, 3), 3), (slice(316, 320), 315)):
        assert torch.equal(got[..., cols], got[..., edge : edge + 1].expand_as(got[..., cols]))
    band = torch.ones(240, 320, dtype=torch.bool)
    band[3:237, 3:316] = False
    assert float((got - uncropped).abs()[..., band].max()) > 0.1
