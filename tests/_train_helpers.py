"""Tiny models, synthetic datasets and subprocess entry points shared by the training tests.

As a script (used by test_faults / test_distributed):
    python tests/_train_helpers.py killable OUT_DIR SLEEP_S   # steps logged to OUT_DIR/steps.txt
    torchrun --standalone --nproc_per_node=2 tests/_train_helpers.py ddp OUT_DIR COUNT_DIR
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlib.core.config import DataConfig, TrainConfig
from depthlib.data.dataset import MappedDataset
from depthlib.data.transforms import BatchFlipSwap
from depthlib.models.base import DepthModel
from depthlib.models.heads import make_head
from depthlib.training.callbacks import Callback, TrainState


class TinyEncoder(nn.Module):
    """Two convs, no batch statistics: float[B,3,H,W] -> features at strides 1 and 2."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_channels, self.strides = [width, width], [1, 2]
        self.c1 = nn.Conv2d(3, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, width, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


class TinyDecoder(nn.Module):
    """Stride-2 feature -> one raw inverse-depth channel, offset into the head's target range."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return 3.0 + self.conv(feats[-1])


def tiny_model(width: int = 4, seed: int = 0) -> DepthModel:
    """A model obeying depthlib's model contract, without BatchNorm (DDP-equivalence tests)."""
    torch.manual_seed(seed)
    return DepthModel(TinyEncoder(width), TinyDecoder(width), make_head("inverse"), arch="tiny",
                      config={"width": width}, output_stride=2, input_multiple=2)


class SynthDepth(torch.utils.data.Dataset):
    """n random sample dicts (image [3,hw,hw], depth [1,hw,hw] metres, valid) from a seed."""

    def __init__(self, n: int, hw: int = 24, seed: int = 0, holes: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.image = torch.rand(n, 3, hw, hw, generator=g)
        depth = 0.5 + 4.0 * self.image[:, :1] + torch.rand(n, 1, hw, hw, generator=g)
        self.valid = torch.rand(n, 1, hw, hw, generator=g) > 0.2 if holes else torch.ones(n, 1, hw, hw, dtype=torch.bool)
        self.depth = depth * self.valid

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.image[i], "depth": self.depth[i], "valid": self.valid[i], "name": f"s{i}"}


def on_device(dataset: torch.utils.data.Dataset, **rates: float) -> MappedDataset:
    """`dataset` handing its flip and channel swap (DataConfig's flip_p / swap_p, default or `rates`) to fit, which
    applies them per batch on the device: what training_sets(..., gpu_augment=True) builds, for TrainConfig.gpu_augment."""
    return MappedDataset(dataset, _same, device_augment=BatchFlipSwap.from_config(DataConfig(**rates)))


def _same(sample: dict[str, Any]) -> dict[str, Any]:
    return sample


class Recorder(Callback):
    """Records (step, loss, lr) after every optimiser step; optional sleep and file log."""

    def __init__(self, log_file: Path | None = None, sleep_s: float = 0.0) -> None:
        self.rows: list[tuple[int, float, float]] = []
        self.log_file, self.sleep_s = log_file, sleep_s

    def on_step_end(self, state: TrainState) -> None:
        self.rows.append((state.step, state.loss, state.lr))
        if self.log_file is not None and state.is_main:
            with open(self.log_file, "a") as f:
                f.write(f"{state.step}\n")
        time.sleep(self.sleep_s)


def cfg(out_dir: Path | str, **kw: Any) -> TrainConfig:
    """A quiet, fast TrainConfig for tests."""
    base = dict(epochs=1, batch_size=2, lr=1e-3, loss="densedepth", scheduler="cosine", progress=False,
                device="cpu", out_dir=str(out_dir), resume=False, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def weights(model_or_sd: Any) -> dict[str, torch.Tensor]:
    """A detached copy of a model's (or state_dict's) tensors."""
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd
    return {k: v.detach().clone() for k, v in sd.items()}


KILLABLE = dict(epochs=2, batch_size=2, checkpoint_every=3, resume=True)
DDP_RUN = dict(epochs=1, batch_size=2, grad_accum=2, scheduler="onecycle", grad_clip=0.5)


def _main(argv: list[str]) -> None:
    from depthlib.training.train import fit

    torch.set_num_threads(1)
    mode, out = argv[0], Path(argv[1])
    if mode == "killable":
        rec = Recorder(out / "steps.txt", float(argv[2]))
        out.mkdir(parents=True, exist_ok=True)
        fit(tiny_model(), SynthDepth(24), SynthDepth(4, seed=1), cfg(out, **KILLABLE), [rec])
    elif mode == "ddp":  # argv[2]: folder for rank<r>.txt = how often this rank skipped the all-reduce
        ddp = torch.nn.parallel.DistributedDataParallel
        real, calls = ddp.no_sync, []
        ddp.no_sync = lambda self: (calls.append(1), real(self))[1]  # type: ignore[method-assign]
        fit(tiny_model(), SynthDepth(16), SynthDepth(5, seed=1), cfg(out, **DDP_RUN))
        (Path(argv[2]) / f"rank{os.environ['RANK']}.txt").write_text(str(len(calls)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
