"""The fast inference copy (BatchNorm folded, channels_last) predicts what the plain model predicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from depthlib.core.config import TrainConfig, to_dict
from depthlib.core.errors import ConfigError
from depthlib.inference import load_for_inference
from depthlib.models import fastpath
from depthlib.models import create_model
from depthlib.models.adapter import InputAdapter
from depthlib.models.checkpoint import save_checkpoint
from depthlib.models.fastpath import FAST_ATTR, fold_batchnorm, prepare_for_inference
from depthlib.models.predict import predict


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny inputs gain nothing from two, and two threads that spin against any other process
    on 2 shared cores took 35 s of CPU for this file's models where one took 4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _nontrivial_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm running statistics and affine weights, as a trained model has (fresh ones are 0 / 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


def _in_range(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Scale the log-head model's last conv so its depths spread over ~1-7 m on x (random weights clamp otherwise)."""
    conv = model.decoder.conv_out
    with torch.no_grad():
        raw = model.eval()(x)
        conv.weight.mul_(0.5 / raw.std())
        conv.bias.add_(1.0 - model(x).mean())
    return model


@pytest.mark.parametrize("kwargs", [
    {"encoder": "densenet121", "width": 0.25, "head": "log"},
    {"encoder": "efficientnet_lite0", "width": 0.5, "head": "log"},
])
def test_fast_copy_predicts_the_plain_path_within_1e4_m(kwargs):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 70, 90)
    model = _in_range(_nontrivial_bn(create_model("densedepth", pretrained=False, **kwargs)), x).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = prepare_for_inference(model)
    plain = predict(model, x)
    got = predict(fast, x)
    assert (plain - got).abs().max().item() < 1e-4  # metres
    assert plain.std() > 0.3 and plain.min() > 0.2 and plain.max() < 9.5  # unclamped depths that vary
    # The original keeps its weights, statistics and training mode; the copy is frozen and channels_last.
    after = model.state_dict()  # once: state_dict() per key walked the whole model each time (7 s here)
    assert model.training and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in fast.parameters())
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_densenet_folds_conv_bn_pairs_only():
    torch.manual_seed(0)
    model = _nontrivial_bn(create_model("densedepth", encoder="densenet121", width=0.25))
    folded, n = fold_batchnorm(model, torch.rand(1, 3, 64, 64))
    # conv0 -> norm0 and each of the 58 dense layers' conv1 -> norm2; norm1 and transitions (norm before conv) stay.
    assert n == 1 + 58
    left = [m for m in folded.modules() if type(m) is nn.BatchNorm2d]
    assert len(left) == sum(type(m) is nn.BatchNorm2d for m in model.modules()) - n


def test_lite0_batchnormact_is_left_alone():
    model = create_model("densedepth", encoder="efficientnet_lite0", width=0.5, head="log")
    _, n = fold_batchnorm(model, torch.rand(1, 3, 64, 64))
    assert n == 0  # timm's BatchNormAct2d also applies an activation; it is not folded


class _NotInOrder(nn.Module):
    """A Conv2d and a BatchNorm2d as consecutive children that the forward does not chain conv -> bn."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_children_order_alone_does_not_fold():
    model = _nontrivial_bn(_NotInOrder()).eval()
    x = torch.rand(1, 3, 16, 16)
    folded, n = fold_batchnorm(model, x)
    assert n == 0
    torch.testing.assert_close(folded(x), model(x))


def test_load_for_inference_returns_the_fast_copy(tmp_path):
    torch.manual_seed(0)
    m = _in_range(_nontrivial_bn(create_model("densedepth", encoder="densenet121", width=0.25, head="log")),
                  torch.rand(1, 3, 64, 96))
    path = tmp_path / "rec.pt"
    save_checkpoint(path, model=m, extra={"train_config": to_dict(TrainConfig(data={"image_size": [64, 96],
                                                                                     "border_crop": "nyu"}))})
    fast = load_for_inference(path)
    assert isinstance(fast, InputAdapter) and getattr(fast, FAST_ATTR)["channels_last"]
    n_bn = sum(type(b) is nn.BatchNorm2d for b in m.modules())
    assert sum(type(b) is nn.BatchNorm2d for b in fast.modules()) == n_bn - 59  # folded as above
    plain = InputAdapter(m, input_size=(64, 96), border=(6, 6, 7, 8), border_frame=(480, 640)).eval()
    x = torch.rand(1, 3, 120, 160)
    assert (predict(fast, x) - predict(plain, x)).abs().max().item() < 1e-4


def test_bf16_is_refused_without_native_support(monkeypatch):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: False)
    model = create_model("unet", width=4, depth=2)
    with pytest.raises(ConfigError, match="no native bfloat16"):
        prepare_for_inference(model, bf16=True)


@pytest.mark.skipif(not fastpath.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_copy_returns_float32_metres():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    model = _in_range(_nontrivial_bn(create_model("densedepth", encoder="densenet121", width=0.25, head="log")), x)
    fast = prepare_for_inference(model, bf16=True)
    got, plain = predict(fast, x), predict(model, x)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert 0 < (got - plain).abs().median() < 0.05 * plain.median()  # close, not equal: bf16 keeps 8 bits
    # The encoder, the last (highest-resolution) decoder stage and the output conv stay float32; the rest is bf16.
    dec = fast.decoder
    assert [type(u) is fastpath.Bf16Autocast for u in dec.ups] == [True] * (len(dec.ups) - 1) + [False]
    assert type(dec.conv_in) is fastpath.Bf16Autocast and type(dec.conv_out) is nn.Conv2d
    assert not any(type(m) is fastpath.Bf16Autocast for m in fast.encoder.modules())
    assert type(model.decoder.conv_in) is nn.Conv2d  # the original is untouched


def test_bf16_output_conv_runs_in_float32_under_autocast():
    model = create_model("densedepth", encoder="densenet121", width=0.25, head="log").eval()
    seen = []
    model.decoder.conv_out.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(1, 3, 64, 64))
    assert seen == [(torch.float32, torch.float32)]  # bf16 rounding would cost ~0.4 % of every depth


class _SkipReadsConvOutput(nn.Module):
    """conv -> bn, but a skip also reads the convolution's raw output: folding bn into conv would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = self.bn(y) + y                  # the skip reads conv's output before normalisation
        return self.bn2(self.conv2(z))      # a pair nothing else reads: this one folds


def test_a_conv_output_read_elsewhere_is_not_folded():
    model = _nontrivial_bn(_SkipReadsConvOutput()).eval()
    x = torch.rand(1, 3, 16, 16)
    folded, n = fold_batchnorm(model, x)
    assert n == 1 and type(folded.bn) is nn.BatchNorm2d and type(folded.bn2) is nn.Identity
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
