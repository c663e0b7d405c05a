"""Training throughput of depthlib.training.train.fit on one GPU, per speed switch, plus loader throughput.

Issue 8's measurement: DenseDepth-169 at 640x480, batch 8, images/s in fp32, bf16,
bf16 + channels_last, bf16 + channels_last + torch.compile, on the same card; and the
data loader's samples/s on the embedded NYU frames through the real transforms. Goal:
bf16 >= 2.5x fp32, and the loader faster than the fastest training configuration.

    .venv/bin/python benchmarks/bench_train_gpu.py --json benchmarks/train_gpu.json
    .venv/bin/python benchmarks/bench_train_gpu.py --device cpu --model unet --height 64 --width 64 \\
        --batch 2 --warmup 1 --steps 2 --configs fp32,bf16 --loader-batches 2   # smoke test, no GPU

Training runs go through fit itself (synthetic samples held in host memory, so only the
host-to-device copy is paid per batch); the timer starts after `--warmup` optimiser steps
(torch.compile and cudnn autotuning happen there) and synchronises the device at both ends.
Against: fp32 on the same card (the "x fp32" column). Prints a markdown table; RESULTS_train.md is written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

from _common import cpu_facts, parse_early, script_parser, utc_stamp, write_json


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, "none: it prints a markdown table (--json also writes every number); "
                               "benchmarks/RESULTS_train.md records runs, written by hand from that table")
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="densedepth")
    p.add_argument("--model-kwargs", default='{"pretrained": false}', help="JSON kwargs of create_model")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--loader-batches", type=int, default=30)
    p.add_argument("--configs", default="fp32,bf16,bf16+cl,bf16+cl+compile")
    p.add_argument("--json", default="", help="also write the results here")
    return p


parse_early(__name__, build_parser)

import torch  # noqa: E402

from depthlib.core.config import DataConfig, TrainConfig  # noqa: E402
from depthlib.data import open_source  # noqa: E402
from depthlib.data.dataset import DepthDataset, MappedDataset, make_loader  # noqa: E402
from depthlib.data.transforms import BatchFlipSwap, build_transforms  # noqa: E402
from depthlib.models import create_model  # noqa: E402
from depthlib.training.callbacks import Callback, TrainState  # noqa: E402
from depthlib.training.train import fit  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32", "channels_last": False},
    "bf16": {"precision": "bf16", "channels_last": False},
    "fp16": {"precision": "fp16", "channels_last": False},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
    "bf16+cl+compile": {"precision": "bf16", "channels_last": True, "compile": True},
    "bf16+cl+gpuaug": {"precision": "bf16", "channels_last": True, "gpu_augment": True},
}


class HostSamples(torch.utils.data.Dataset):
    """`n` samples cycling through a small pool of random frames kept in host memory."""

    def __init__(self, n: int, h: int, w: int, pool: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.n = n
        self.image = torch.rand(pool, 3, h, w, generator=g)
        self.depth = 0.5 + 9.0 * torch.rand(pool, 1, h, w, generator=g)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = i % len(self.image)
        return {"image": self.image[j], "depth": self.depth[j], "valid": self.depth[j] > 0, "name": str(i)}


def _same(sample: dict[str, Any]) -> dict[str, Any]:
    return sample


class Timer(Callback):
    """Wall time between the end of optimiser step `warmup` and the last step, device-synchronised, and the
    part of it fit spent waiting for the loader (TrainState.data_wait_s)."""

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.device, self.warmup = device, warmup
        self.t0 = self.t1 = self.wait0 = self.wait_s = 0.0
        self.steps = 0

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.warmup:
            self.t0, self.wait0 = self._sync(), state.data_wait_s
        elif state.step > self.warmup:
            self.t1, self.steps = self._sync(), state.step - self.warmup
            self.wait_s = state.data_wait_s - self.wait0


def bench_train(args: argparse.Namespace, name: str, device: torch.device,
                data: torch.utils.data.Dataset | None = None) -> dict[str, Any]:
    """images/s, peak memory and loader wait (% of the timed wall) of fit for one configuration; `data`: samples
    of at least (warmup + steps) x batch frames (default: HostSamples, which costs the loader nothing)."""
    steps = args.warmup + args.steps
    data = HostSamples(steps * args.batch, args.height, args.width) if data is None else data
    if CONFIGS[name].get("gpu_augment"):  # the data hands DataConfig's flip / swap to fit, as training_sets does
        data = MappedDataset(data, _same, device_augment=BatchFlipSwap.from_config(DataConfig()))
    model = create_model(args.model, **json.loads(args.model_kwargs))
    timer = Timer(device, args.warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, device=str(device), progress=False,
                          resume=False, out_dir=out, num_workers=args.workers, log_every=10**9,
                          **CONFIGS[name])
        fit(model, data, None, cfg, [timer])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"config": name, "images_per_s": timer.steps * args.batch / (timer.t1 - timer.t0),
            "step_ms": 1000 * (timer.t1 - timer.t0) / timer.steps, "peak_gib": peak,
            "wait_pct": 100 * timer.wait_s / (timer.t1 - timer.t0)}


def bench_loader(args: argparse.Namespace) -> dict[str, Any]:
    """Samples/s of the embedded NYU frames through decode + crop + resize + flip/swap + collate."""
    dcfg = DataConfig(image_size=(args.height, args.width))
    ds = DepthDataset(open_source(dcfg.source, dcfg.path, split=dcfg.split), transform=build_transforms(dcfg, train=True))
    loader = make_loader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                         pin_memory=torch.cuda.is_available())
    n, it = 0, iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    for _ in range(args.loader_batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        n += len(b["image"])
    return {"samples_per_s": n / (time.perf_counter() - t0), "workers": args.workers}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible: run on a GPU machine, or pass --device cpu for a smoke test", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_facts()["model"]
    rows = [bench_train(args, name, device) for name in args.configs.split(",")]
    loader = bench_loader(args)
    base = next((r["images_per_s"] for r in rows if r["config"] == "fp32"), float("nan"))
    print(f"# {args.model} {args.width}x{args.height} batch {args.batch} on {card}, torch {torch.__version__}, "
          f"{utc_stamp()}\n")
    print("| config | images/s | x fp32 | ms/step | peak GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f} | "
              f"{r['step_ms']:.1f} | {r['peak_gib']:.2f} |")
    print(f"\nloader: {loader['samples_per_s']:.1f} samples/s with {loader['workers']} workers "
          f"(fastest training config: {max(r['images_per_s'] for r in rows):.1f} images/s)")
    if args.json:
        write_json(args.json, {"card": card, "torch": torch.__version__, "args": vars(args), "train": rows,
                               "loader": loader})
    return 0


if __name__ == "__main__":
    sys.exit(main())
