"""Checkpoints: bit-identical round trip, wrapper prefixes, atomic writes, clear errors."""

from __future__ import annotations

import errno
import io
import os

import numpy as np
import pytest
import torch
from torch import nn

from depthlib import __version__
from depthlib.models.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    clean_state_dict,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from depthlib.models import create_model

SMALL = dict(width=4, depth=2)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    m = create_model("unet", **SMALL)
    m.train()
    with torch.no_grad():  # move BatchNorm running stats away from their init values
        m(torch.rand(2, 3, 32, 32))
    return m.eval()


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_round_trip_bit_identical_with_training_state(tmp_path, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model.train()
    model(_images()).mean().backward()
    opt.step()
    sched.step()
    model.eval()
    path = save_checkpoint(tmp_path / "sub" / "last.pt", model=model, optimizer=opt, scheduler=sched,
                           epoch=3, step=17, metrics={"abs_rel": 0.12}, extra={"note": "x"})
    with torch.no_grad():
        want = model(_images())
        got = load_model(path)(_images())
    assert torch.equal(got, want)
    ckpt = load_checkpoint(path)
    assert ckpt["format_version"] == FORMAT_VERSION and ckpt["depthlib_version"] == __version__
    assert ckpt["arch"] == "unet" and ckpt["model_config"] == model.config
    assert (ckpt["epoch"], ckpt["step"], ckpt["metrics"], ckpt["extra"]) == (3, 17, {"abs_rel": 0.12}, {"note": "x"})
    opt2 = torch.optim.Adam(create_model("unet", **SMALL).parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(ckpt["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr() == [5e-4]
    assert sorted(os.listdir(path.parent)) == ["last.pt"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the umask's mode, as every file depthlib writes


class _CompiledStandIn(nn.Module):
    """Holds a model as `_orig_mod`, like torch._dynamo's OptimizedModule."""

    def __init__(self, mod: nn.Module) -> None:
        super().__init__()
        self._orig_mod = mod


@pytest.mark.slow
def test_torch_compile_wrapper_is_unwrapped(tmp_path, model):
    p = save_checkpoint(tmp_path / "c.pt", model=torch.compile(model))
    assert set(load_checkpoint(p)["model"]) == set(model.state_dict())


def test_clean_state_dict_strips_ddp_and_compile_prefixes():
    t = torch.zeros(1)
    sd = {"module._orig_mod.a.w": t, "_orig_mod.module.b": t, "enc._orig_mod.c": t, "d.module.e": t}
    assert list(clean_state_dict(sd)) == ["a.w", "b", "enc.c", "d.module.e"]
    with pytest.raises(CheckpointError, match="collide"):
        clean_state_dict({"module.a": t, "a": t})


def test_prefixed_state_dicts_load(tmp_path, model):
    # a checkpoint written by other code from a DDP(compile(model)) state_dict
    path = tmp_path / "ddp.pt"
    sd = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"format_version": 1, "arch": "unet", "model_config": model.config, "model": sd}, path)
    with torch.no_grad():
        assert torch.equal(load_model(path)(_images()), model(_images()))
    # saving through the wrappers themselves unwraps them (torch.compile itself costs ~10 s of
    # dynamo import on CPU; the stand-in holds the model as `_orig_mod` as OptimizedModule does)
    for wrapped in (nn.DataParallel(model), _CompiledStandIn(model), nn.DataParallel(_CompiledStandIn(model))):
        p = save_checkpoint(tmp_path / "w.pt", model=wrapped)
        assert not any(k.startswith(("module.", "_orig_mod.")) for k in load_checkpoint(p)["model"])
        with torch.no_grad():
            assert torch.equal(load_model(p)(_images()), model(_images()))


def test_failed_write_keeps_previous_checkpoint_and_no_temp(tmp_path, model, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", model=model, step=1)
    before = path.read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="last.pt.*No space left") as info:
        save_checkpoint(path, model=model, step=2)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model=model, step=3)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_missing_truncated_and_corrupt_files(tmp_path, model):
    with pytest.raises(CheckpointError, match="nope.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", model=model)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt: is truncated or corrupt"):
        load_checkpoint(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match="junk.pt: refused by the safe loader.*or it is corrupt") as info:
        load_model(junk)
    assert "weights_only=False" not in str(info.value) and info.value.__suppress_context__


def test_foreign_files_say_what_they_hold(tmp_path, model):
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(CheckpointError, match=r"bare.pt: not a depthlib checkpoint: missing keys "
                                              r"\['format_version', 'arch', 'model_config', 'model'\]"
                                              r".*bare state_dict"):
        load_model(bare)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 4}, other)
    with pytest.raises(CheckpointError, match=r"other.pt: .*missing keys .*keys \['state_dict', 'epoch'\]"):
        load_checkpoint(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": 1, "arch": "unet", "model_config": {}, "model": {},
                "extra": io.StringIO("x")}, pickled)
    with pytest.raises(CheckpointError, match=r"pickled.pt: holds Python objects.*StringIO"):
        load_checkpoint(pickled)
    newer = tmp_path / "newer.pt"
    torch.save({"format_version": FORMAT_VERSION + 1, "arch": "unet", "model_config": {}, "model": {},
                "depthlib_version": "9.9"}, newer)
    with pytest.raises(CheckpointError, match="newer.pt: written by a newer depthlib.*upgrade"):
        load_checkpoint(newer)


def test_wrong_architecture_keys_are_listed(tmp_path, model):
    deeper = create_model("unet", width=4, depth=3)
    path = tmp_path / "mismatch.pt"
    ckpt = {"format_version": 1, "arch": "unet", "model_config": model.config,
            "model": deeper.state_dict()}
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"mismatch.pt: .*missing keys .*unexpected keys \['"):
        load_model(path)
    wider = create_model("unet", width=8, depth=2)
    torch.save({**ckpt, "model": wider.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"mismatch.pt: .*shape mismatches \['.*file \(8, 3, 3, 3\)"):
        load_model(path)
    torch.save({**ckpt, "model_config": {**model.config, "colour": "red"}}, path)
    with pytest.raises(CheckpointError, match=r"mismatch.pt: its model_config does not build 'unet'.*colour"):
        load_model(path)
    torch.save({**ckpt, "arch": "no_such_net"}, path)
    with pytest.raises(CheckpointError, match=r"mismatch.pt: architecture 'no_such_net' is not registered"):
        load_model(path)


def test_save_refuses_what_weights_only_loading_would_refuse(tmp_path, model):
    with pytest.raises(CheckpointError, match=r"x.pt: checkpoint\['metrics'\]\['rmse'\] is a float64"):
        save_checkpoint(tmp_path / "x.pt", model=model, metrics={"rmse": np.float64(0.5)})
    with pytest.raises(CheckpointError, match="no `arch`"):
        save_checkpoint(tmp_path / "y.pt", model=nn.Linear(2, 2))
    assert os.listdir(tmp_path) == []


class _RunsCode:
    """Pickles as a call of os.mkdir(path): loading it unsafely would create the folder."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_checkpoint_carrying_code_is_refused_as_such(tmp_path, model):
    ran = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    good = {"format_version": 1, "arch": "unet", "model_config": dict(model.config), "model": model.state_dict()}
    torch.save({**good, "extra": {"hook": _RunsCode(str(ran))}}, evil)
    with pytest.raises(CheckpointError) as info:
        load_model(evil)
    msg = str(info.value)
    assert msg.startswith(f"{evil}: holds Python objects that are refused (['{os.mkdir.__module__}.mkdir'])"), msg
    # Never torch's advice to load unsafely, neither in the message nor in a chained traceback.
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "truncated" not in msg and not ran.exists()
    # The same file in torch's legacy (non-zip) format cannot be scanned for names; still refused, no advice.
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as f:
        torch.save({**good, "extra": {"hook": _RunsCode(str(ran))}}, f, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy.pt: refused by the safe loader.*pickled Python objects") as info:
        load_checkpoint(legacy)
    assert "weights_only=False" not in str(info.value) and not ran.exists()


def test_zero_byte_checkpoint_is_named(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: is empty \(0 bytes\).*Fix: "):
        load_checkpoint(empty)


def test_a_missing_checkpoint_says_where_a_relative_path_was_looked_for(tmp_path):
    from depthlib.core.errors import CheckpointError
    from depthlib.models.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError, match="no such checkpoint file") as e:
        load_checkpoint(tmp_path / "nope.pt")   # absolute (as the CLI passes it, from the working directory)
    assert "project root" not in str(e.value) and str(tmp_path / "nope.pt") in str(e.value)
    with pytest.raises(CheckpointError, match=r"relative paths resolve from the project root"):
        load_checkpoint("checkpoints/does/not/exist.pt")
