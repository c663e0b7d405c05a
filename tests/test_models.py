"""Model registry, DenseDepth / U-Net architecture facts, freezing, heads, pretrained-weight errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from depthlib.core.errors import ConfigError, DataError
from depthlib.models import HEADS, create_model, list_models, make_head

# Small settings per model for the tests that build many models; any registered model missing
# here is tested with its defaults, so a new registration is never skipped.
SMALL = {
    "densedepth": {"encoder": "densenet121", "width": 0.25},
    "unet": {"width": 8, "depth": 3},
}


def small_model(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **{**SMALL.get(name, {}), **kw})


def _check_shape_finite_and_gradients(model: torch.nn.Module, name: str) -> None:
    model.train()
    x = torch.rand(2, 3, 32, 64)  # the smallest size DenseNet's five poolings take
    out = model(x)
    s = model.output_stride
    assert out.shape == (2, 1, 32 // s, 64 // s)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        total = p.grad.abs().sum()  # one pass: finite and not all zero
        assert torch.isfinite(total) and total > 0, f"{name}: {pname} gradient {total}"


@pytest.mark.parametrize("name", list_models())
def test_every_model_shape_finite_and_every_param_gets_gradient(name):
    _check_shape_finite_and_gradients(small_model(name), name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_default_settings_shape_finite_and_gradients(name):
    torch.manual_seed(0)
    _check_shape_finite_and_gradients(create_model(name), name)


@pytest.mark.parametrize("name", list_models())
def test_default_settings_build_and_shape_on_meta(name):
    with torch.device("meta"):
        model = create_model(name)
        out = model(torch.empty(2, 3, 64, 96))
    s = model.output_stride
    assert out.shape == (2, 1, 64 // s, 96 // s)
    assert 64 % model.input_multiple == 0 and 96 % model.input_multiple == 0


@pytest.mark.parametrize(
    "name,kw,stride",
    [
        ("unet", {"upsample": "transpose"}, 2),
        ("unet", {"output_stride": 1}, 1),
        ("unet", {"output_stride": 4, "upsample": "transpose"}, 4),
        pytest.param("densedepth", {"encoder": "densenet161", "width": 0.1}, 2, marks=pytest.mark.slow),
        pytest.param("densedepth", {"encoder": "densenet201", "width": 0.1}, 2, marks=pytest.mark.slow),
    ],
)
def test_variants_shapes_on_odd_sizes(name, kw, stride):
    model = small_model(name, **kw).eval()
    assert model.output_stride == stride
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 47))
    assert out.shape == (1, 1, math.ceil(33 / stride), math.ceil(47 / stride))
    assert torch.isfinite(out).all()


def _meta_densedepth(**kw):
    with torch.device("meta"):
        return create_model("densedepth", **kw)


def test_densedepth169_parameter_count_matches_paper():
    model = _meta_densedepth()  # densenet169, width 1.0; `features` only, no classifier
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 42.6e6) <= 0.1e6, n
    assert model.encoder.out_channels == [64, 64, 128, 256, 1664]
    assert model.decoder.conv_in.out_channels == 1664
    assert _meta_densedepth(width=0.5).decoder.conv_in.out_channels == 832


def test_densedepth169_forward_flops_at_640x480():
    model = _meta_densedepth()
    x = torch.empty(1, 3, 480, 640, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    assert out.shape == (1, 1, 240, 320)
    # FlopCounterMode counts a multiply-add as 2 FLOPs (convs and matmuls only). That convention
    # gives 245.4 GFLOP, the paper-architecture figure; counting MACs would give half (122.7 G).
    assert abs(counter.get_total_flops() / 245e9 - 1) < 0.02, counter.get_total_flops()


@pytest.mark.parametrize("name", list_models())
def test_freeze_encoder_keeps_weights_and_bn_stats_through_a_step(name):
    model = small_model(name).freeze_encoder()
    model.train()
    assert model.training and not model.encoder.training
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    out = model(torch.rand(2, 3, 32, 64))
    out.square().mean().backward()
    opt.step()
    after = model.encoder.state_dict()
    assert any("running_mean" in k for k in after)
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{name}: encoder {k} changed while frozen"
    dec_after = model.decoder.state_dict()
    assert any(not torch.equal(v, dec_after[k]) for k, v in dec_before.items())
    model.freeze_encoder(False).train()
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())


def test_unfrozen_train_step_does_move_bn_stats():
    # The control for the test above: the same step with a trainable encoder changes its stats.
    model = small_model("unet").train()
    before = model.encoder.stem[1].running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert not torch.equal(before, model.encoder.stem[1].running_mean)


@pytest.mark.parametrize("name", list_models())
def test_config_rebuilds_same_architecture(name):
    model = small_model(name, head="log", min_depth=0.5, max_depth=8.0)
    assert model.arch == name
    json.dumps(model.config)  # plain builtins only
    assert "pretrained" not in model.config
    rebuilt = create_model(model.arch, **model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert rebuilt.head == model.head
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model.eval()(x), rebuilt.eval()(x))
    assert not any(k in ("mean", "std") for k in model.state_dict())


def test_registry_refuses_unknown_names_and_settings():
    with pytest.raises(ConfigError, match="registered models"):
        create_model("resnet_depth")
    with pytest.raises(ConfigError, match="decoder_width"):
        create_model("densedepth", decoder_width=0.5)
    with pytest.raises(ConfigError, match="densenet"):
        create_model("densedepth", encoder="resnet50")
    with pytest.raises(ConfigError, match="power of 2"):
        create_model("unet", output_stride=3)
    with pytest.raises(ConfigError, match="upsample"):
        create_model("unet", upsample="nearest")
    with pytest.raises(ConfigError, match="head"):
        create_model("unet", head="disparity")


def test_inverse_head_hand_values_and_range():
    head = make_head("inverse", min_depth=0.1, max_depth=10.0)
    d = torch.tensor([0.05, 0.1, 1.0, 2.5, 10.0, 20.0], dtype=torch.float64)
    assert torch.allclose(head.to_target(d), torch.tensor([100.0, 100, 10, 4, 1, 1], dtype=torch.float64))
    raw = torch.tensor([-1.0, 0.0, 0.5, 1.0, 4.0, 100.0, 200.0], dtype=torch.float64)
    assert torch.allclose(head.to_depth(raw), torch.tensor([10.0, 10, 10, 10, 2.5, 0.1, 0.1], dtype=torch.float64))
    assert head.target_range == (1.0, 100.0)
    assert head.to_depth(torch.tensor([4.0]), clamp=False).item() == 2.5


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_round_trip(name):
    head = make_head(name, min_depth=0.1, max_depth=10.0)
    d = torch.logspace(-1, 1, 1001, dtype=torch.float64)  # 0.1 .. 10 m
    t = head.to_target(d)
    lo, hi = head.target_range
    assert t.min() >= lo - 1e-12 and t.max() <= hi + 1e-12
    torch.testing.assert_close(head.to_depth(t), d, rtol=1e-14, atol=0)
    torch.testing.assert_close(head.to_target(head.to_depth(t)), t, rtol=1e-14, atol=0)
    outside = torch.tensor([0.01, 50.0], dtype=torch.float64)
    assert torch.allclose(head.to_depth(head.to_target(outside)), torch.tensor([0.1, 10.0], dtype=torch.float64))


def test_head_refuses_bad_range():
    with pytest.raises(ConfigError, match="min_depth"):
        make_head("inverse", min_depth=10.0, max_depth=1.0)


def test_forward_refuses_wrong_image_shape():
    model = small_model("unet")
    with pytest.raises(DataError, match=r"float\[B,3,H,W\]"):
        model(torch.rand(3, 64, 64))


def test_densenet_skips_have_stated_channels_and_strides():
    model = small_model("densedepth")
    with torch.no_grad():
        feats = model.encoder(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == model.encoder.out_channels == [64, 64, 128, 256, 1024]
    assert [64 // f.shape[2] for f in feats] == model.encoder.strides == [2, 4, 8, 16, 32]


def test_up_block_applies_both_leaky_relus():
    # conv_a outputs -1 everywhere, conv_b is the identity: with both activations the result is
    # leaky(leaky(-1)) = 0.04 * -1; DenseDepth's PyTorch port (second only) would give -0.2.
    from depthlib.models.densedepth import UpBlock

    block = UpBlock(1, 1, 1)
    with torch.no_grad():
        block.conv_a.weight.zero_()
        block.conv_a.bias.fill_(-1.0)
        block.conv_b.weight.zero_()
        block.conv_b.weight[0, 0, 1, 1] = 1.0
        block.conv_b.bias.zero_()
        out = block(torch.rand(1, 1, 2, 2), torch.rand(1, 1, 4, 4))
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, torch.full((1, 1, 4, 4), -0.04))
