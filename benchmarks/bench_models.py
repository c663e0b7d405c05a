"""Train-step throughput, inference latency, peak memory and matmul efficiency of the models.

Each (model, size) runs in a fresh process so that peak-memory numbers are its own (on CPU the
peak is the ru_maxrss growth over the model's construction; on CUDA torch's allocator peak).
Efficiency = FLOPs counted by torch.utils.flop_counter (a multiply-add is 2 FLOPs) / time,
divided by the GFLOP/s of a large float32 matmul timed in the same process just before.

    .venv/bin/python benchmarks/bench_models.py                      # CPU defaults (~5-10 min)
    .venv/bin/python benchmarks/bench_models.py --iters 1 --warmup 0  # quicker, noisier
    .venv/bin/python benchmarks/bench_models.py --device cuda --batch 8 --iters 20
    .venv/bin/python benchmarks/bench_models.py --models unet --sizes 240x320 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from depthlib.models import create_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sgemm_gflops(device: torch.device, n: int, reps: int) -> float:
    """GFLOP/s of an n x n float32 matmul (2 n^3 FLOPs), best of `reps`."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def counted_flops(name: str, kwargs: dict[str, Any], h: int, w: int) -> tuple[float, float]:
    """(forward, forward+backward) FLOPs per image, counted on the meta device (no compute)."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    x = torch.empty(1, 3, h, w, device="meta")
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).abs().mean().backward()
    return float(fwd.get_total_flops()), float(both.get_total_flops())


def _timed(fn, device: torch.device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Benchmark one (model, size) in this process; returns a row of results."""
    device = torch.device(job["device"])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    name, kwargs, (h, w), batch = job["model"], job["kwargs"], job["size"], job["batch"]
    fwd_flops, train_flops = counted_flops(name, kwargs, h, w)
    gemm = sgemm_gflops(device, job["gemm_n"], reps=3)
    torch.manual_seed(0)
    model = create_model(name, **kwargs).to(device)
    row: dict[str, Any] = {"model": name, "size": f"{w}x{h}", "batch": batch,
                           "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                           "fwd_GFLOP": fwd_flops / 1e9, "sgemm_GFLOPs": gemm}

    # Inference latency: one image, eval mode, no grad.
    model.eval()
    x1 = torch.rand(1, 3, h, w, device=device)
    rss0 = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        lat = _timed(lambda: model(x1), device, job["warmup"], job["iters"])
    row["infer_ms"] = 1e3 * statistics.median(lat)
    row["infer_frac_sgemm"] = fwd_flops / statistics.median(lat) / 1e9 / gemm
    row["infer_peak_MiB"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                             else _rss_mib() - rss0)

    # Train step: forward, L1 to a random target, backward, Adam step.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb = torch.rand(batch, 3, h, w, device=device)
    s = model.output_stride
    target = torch.rand(batch, 1, -(-h // s), -(-w // s), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (model(xb) - target).abs().mean().backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = _timed(step, device, job["warmup"], job["iters"])
    t = statistics.median(times)
    row["train_img_s"] = batch / t
    row["train_frac_sgemm"] = train_flops * batch / t / 1e9 / gemm
    # ru_maxrss only grows, so the train peak is measured over the inference peak: report growth
    # over the start of the inference phase (weights + Adam state + activations).
    row["train_peak_MiB"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                             else _rss_mib() - rss0)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """Rows as a markdown table."""
    cols = ["model", "size", "batch", "params_M", "fwd_GFLOP", "train_img_s", "train_frac_sgemm",
            "train_peak_MiB", "infer_ms", "infer_frac_sgemm", "infer_peak_MiB", "sgemm_GFLOPs"]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--models", nargs="+", default=["densedepth", "unet"])
    p.add_argument("--sizes", nargs="+", default=["480x640", "240x320"], help="HxW")
    p.add_argument("--batch", type=int, default=1, help="train-step batch size")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--gemm-n", type=int, default=0, help="matmul size (0: 2048 cpu, 8192 cuda)")
    p.add_argument("--kwargs", default="{}", help='JSON {"model": {kwarg: value}} overrides')
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    overrides = json.loads(a.kwargs)
    gemm_n = a.gemm_n or (8192 if a.device.startswith("cuda") else 2048)
    ctx = mp.get_context("spawn")
    rows = []
    for name in a.models:
        for size in a.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            job = {"device": a.device, "model": name, "kwargs": overrides.get(name, {}),
                   "size": (h, w), "batch": a.batch, "iters": a.iters, "warmup": a.warmup,
                   "threads": a.threads, "gemm_n": gemm_n}
            # A fresh process per job; a crash (e.g. out of memory) raises instead of hanging.
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                row = pool.submit(run_one, job).result()
            rows.append(row)
            print(f"{name} {w}x{h}: {row['train_img_s']:.3g} img/s train, "
                  f"{row['infer_ms']:.4g} ms inference", file=sys.stderr, flush=True)
    print(markdown(rows))
    if a.json:
        out = Path(a.json)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
