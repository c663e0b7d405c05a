"""Flip and channel swap have one owner: DataConfig's rates, applied per sample in the loader or, with
gpu_augment, per batch on the device; never both, and the swap never draws the identity order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthlib.core.config import DataConfig
from depthlib.data import open_source
from depthlib.notebook import workbook
from depthlib.training import train as train_module
from depthlib.training import train_cli
from depthlib.training.train_setup import training_sets
from depthlib.data.transforms import flip_swap_batch


def _batch(n: int) -> dict[str, torch.Tensor]:
    """n copies of one [3,1,2] image whose 6 values tell its channel order and whether it is mirrored."""
    x = torch.arange(6.0).view(1, 3, 1, 2).expand(n, 3, 1, 2).contiguous()
    return {"image": x, "depth": x[:, :1].clone(), "valid": torch.ones(n, 1, 1, 2, dtype=torch.bool)}


def test_device_flip_and_swap_happen_at_the_asked_rates():
    # 6000 draws: the standard error of a rate of 0.25 is 0.0056, so 0.02 is a loose bound; drawing the identity
    # order one time in six swapped 0.208 of the frames, 0.042 under the asked 0.25.
    torch.manual_seed(0)
    b = _batch(6000)
    out = flip_swap_batch(b, flip_p=0.5, swap_p=0.25)
    mirrored = out["depth"][:, 0, 0, 0] == 1.0
    unmirrored = torch.where(mirrored.view(-1, 1, 1, 1), out["image"].flip(-1), out["image"])
    swapped = (unmirrored != b["image"]).flatten(1).any(1)
    assert abs(float(mirrored.float().mean()) - 0.5) < 0.02
    assert abs(float(swapped.float().mean()) - 0.25) < 0.02, f"swapped {float(swapped.float().mean()):.4f} of frames"
    assert torch.equal(out["depth"].flip(-1)[mirrored], b["depth"][mirrored])  # depth moves with the image


@pytest.fixture(scope="module")
def prepared(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 embedded NYU frames in a prepared file: 6 train, 2 val."""
    src = open_source("densedepth", str(sample_dir), split="test")
    labels = ["train"] * len(src)
    labels[6] = labels[7] = "val"
    out = tmp_path_factory.mktemp("aug") / "p.h5"
    workbook.prepare(src, str(out), labels=labels, indices=range(8))
    return out


@pytest.mark.parametrize("on_device", [False, True])
def test_train_command_flips_each_frame_once(prepared, tmp_path, monkeypatch, on_device):
    # flip_p=1: every frame must reach the model mirrored. With gpu_augment the loader flipped it (DataConfig's
    # flip_p) and the device flipped it again (TrainConfig's own rate), which un-mirrored about half of them.
    seen: list[tuple[str, torch.Tensor]] = []
    forward = train_module.forward_with_targets

    def recording(model, b, *args, **kwargs):
        seen.extend(zip(b["name"], b["image"].detach().cpu().clone()))
        return forward(model, b, *args, **kwargs)

    monkeypatch.setattr(train_module, "forward_with_targets", recording)
    data = ["image_size=[96,128]", "border_crop=none", "flip_p=1.0", "swap_p=0.0"]
    argv = ["--prepared", str(prepared), "--model", "unet", "--model-kwargs", '{"width": 4, "depth": 2}',
            "--data", *data, "--train", "epochs=1", "batch_size=3", "device=cpu", "progress=false",
            f"out_dir={tmp_path}", f"gpu_augment={'true' if on_device else 'false'}"]
    assert train_cli.main(argv) == 0
    plain = training_sets(str(prepared), DataConfig(image_size=(96, 128), border_crop="none", flip_p=0.0, swap_p=0.0),
                          splits=("train",))["train"]
    ref = {s["name"]: s["image"] for s in (plain[i] for i in range(len(plain)))}
    assert len(seen) == 6
    mirrored = [torch.equal(img, ref[name].flip(-1)) for name, img in seen]
    unmirrored = [torch.equal(img, ref[name]) for name, img in seen]
    assert all(mirrored), f"{sum(unmirrored)} of {len(seen)} frames reached the model unmirrored"


def test_fit_refuses_augmenting_twice_or_not_at_all(prepared, tmp_path):
    from _train_helpers import cfg, tiny_model

    from depthlib.core.errors import ConfigError
    from depthlib.data.transforms import BatchFlipSwap
    from depthlib.training.train import fit

    data_cfg = DataConfig(image_size=(96, 128), border_crop="none", flip_p=0.3, swap_p=0.1)
    loader_side = training_sets(str(prepared), data_cfg, splits=("train",))["train"]
    device_side = training_sets(str(prepared), data_cfg, splits=("train",), gpu_augment=True)["train"]
    assert "RandomHorizontalFlip" in repr(loader_side.transform) and loader_side.device_augment is None
    assert "RandomHorizontalFlip" not in repr(device_side.transform) and "RandomChannelSwap" not in repr(device_side.transform)
    assert device_side.device_augment == BatchFlipSwap(flip_p=0.3, swap_p=0.1)  # DataConfig's rates, nobody else's
    with pytest.raises(ConfigError, match="gpu_augment=True .* Fix: build it with training_sets"):
        fit(tiny_model(), loader_side, None, cfg(tmp_path / "a", gpu_augment=True))
    with pytest.raises(ConfigError, match="nothing would flip or swap"):
        fit(tiny_model(), device_side, None, cfg(tmp_path / "b"))


def test_train_command_names_where_the_rates_went(capsys):
    assert train_cli.main(["--prepared", "x.h5", "--train", "gpu_augment=true", "aug_flip_p=1.0"]) == 2
    assert "Fix: --data flip_p=..." in capsys.readouterr().err
