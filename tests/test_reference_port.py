"""benchmarks/reference_port.py is the DenseDepth PyTorch port's model: its parameter count and FLOPs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import reference_port  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny inputs gain nothing from two, and on 2 shared cores two threads spun against any
    other process (the smoke run below took 148 s of CPU on two, 11 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_parameters_and_flops_are_the_ports():
    with torch.device("meta"):
        model = reference_port.PortModel()
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == 44.32  # the port's count, its unused ImageNet classifier included
    with FlopCounterMode(display=False) as counter:  # a multiply-add counts as 2 FLOPs
        out = model(torch.empty(1, 3, 480, 640, device="meta"))
    assert out.shape == (1, 1, 240, 320)
    assert round(counter.get_total_flops() / 1e9, 2) == 245.35


def test_one_leaky_relu_per_up_block_and_the_lighter_loss():
    torch.manual_seed(0)
    model = reference_port.PortModel().eval()
    calls = {"unused": 0, "used": 0}
    for up in (model.up1, model.up2, model.up3, model.up4):
        up.unused_act.register_forward_hook(lambda *a: calls.__setitem__("unused", calls["unused"] + 1))
        up.act.register_forward_hook(lambda *a: calls.__setitem__("used", calls["used"] + 1))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert calls == {"unused": 0, "used": 4}
    depth = 0.5 + 9 * torch.rand(2, 1, 32, 32)
    assert reference_port.port_loss(10.0 / depth, depth).item() < 1e-6  # perfect output: SSIM 1, L1 0
    # SSIM + 0.1 L1 and nothing else (no gradient term).
    out = 10.0 / depth + torch.rand_like(depth)
    by_hand = (1 - reference_port.port_ssim(out, 10.0 / depth, 100.0)) / 2 + 0.1 * (out - 10.0 / depth).abs().mean()
    torch.testing.assert_close(reference_port.port_loss(out, depth), by_hand)


def test_port_ssim_is_the_published_ssim():
    # Checked against scikit-image's SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, population
    # covariance), whose mean over the un-padded region is what a convolution without padding averages.
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a = 100 * torch.rand(1, 1, 40, 48, generator=g, dtype=torch.float64)
    b = a + 20 * torch.rand(1, 1, 40, 48, generator=g, dtype=torch.float64)
    want = structural_similarity(a[0, 0].numpy(), b[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=100.0)
    assert 0.5 < want < 0.99
    assert reference_port.port_ssim(a, b, 100.0).item() == pytest.approx(want, abs=1e-6)


@pytest.mark.slow
def test_benchmark_script_runs_end_to_end_on_tiny_models(tmp_path):
    import bench_models

    out = tmp_path / "results.md"
    assert bench_models.main(["--smoke", "--checkpoint", str(tmp_path / "none.pt"), "--write", str(out)]) == 0
    text = out.read_text()
    for heading in ("## Flip-averaged predict", "## Training step", "## Loss terms", "## Adam step", "## Light model"):
        assert heading in text
    assert "Flags present" in text and "x reference" in text
