"""bf16 autocast training on the CPU against fp32: the same short run on the sample, loss curves side by side.

Issue 13's check: where the CPU computes bfloat16 natively, training with precision="bf16" must end at the
same loss as fp32 within 2 %. Both runs train the sample profile's light model (DenseDepth decoder, width
0.5, on EfficientNet-Lite0, log head; random weights so nothing is downloaded) with the DenseDepth loss on
the prepared sample, same seed, same batches. Measured against fp32: the final training loss's relative difference.

    nice -n 15 .venv/bin/python benchmarks/check_bf16_train.py --write benchmarks/RESULTS_bf16_train.md  # ~3 min
    nice -n 15 .venv/bin/python -m depthlib pipeline --profile sample --only 01   # first, if the .h5 is missing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_facts, parse_early, script_parser, utc_stamp, write_results


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, "benchmarks/RESULTS_bf16_train.md with --write benchmarks/RESULTS_bf16_train.md "
                               "(without --write it prints the same markdown)")
    p.add_argument("--prepared", default="data/prepared/sample.h5")
    p.add_argument("--epochs", type=int, default=15,
                   help="epochs of 7 steps (default 15: over the first ~8 both runs are still in the chaotic start "
                        "from random weights, and one epoch's loss can jump 3x)")
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--write", default="", help="also write the result as markdown to this file")
    return p


parse_early(__name__, build_parser)

import torch  # noqa: E402

from depthlib.core.config import DataConfig, TrainConfig  # noqa: E402
from depthlib.models import create_model  # noqa: E402
from depthlib.models.fastpath import cpu_has_native_bf16  # noqa: E402
from depthlib.training.train import fit  # noqa: E402
from depthlib.training.train_setup import training_sets  # noqa: E402


def run(precision: str, args: argparse.Namespace) -> list[float]:
    """Per-epoch training loss of one run."""
    data = training_sets(args.prepared, DataConfig(image_size=(args.height, args.width), seed=0))
    torch.manual_seed(0)  # both precisions start from the same random weights
    model = create_model("densedepth", encoder="efficientnet_lite0", width=0.5, pretrained=False, head="log")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=args.epochs, batch_size=4, lr=1e-3, loss="densedepth", precision=precision,
                          device="cpu", out_dir=out, resume=False, progress=False, seed=0)
        hist = fit(model, data["train"], None, cfg)
    return hist["train_loss"]


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not cpu_has_native_bf16():
        print("this CPU has no native bf16 (avx512_bf16 / amx_bf16): the check does not apply here", file=sys.stderr)
        return 0
    t0 = time.perf_counter()
    fp32, bf16 = run("fp32", a), run("bf16", a)
    rel = abs(bf16[-1] - fp32[-1]) / abs(fp32[-1])
    cpu = cpu_facts()
    flags = " ".join(f for f in cpu["flags"] if f.startswith(("avx512_bf16", "amx")))
    text = "\n".join([
        "# bf16 autocast training against fp32 on the CPU (`benchmarks/check_bf16_train.py`)", "",
        f"Run {utc_stamp()} ({(time.perf_counter() - t0) / 60:.1f} min); {cpu['model']}, "
        f"{cpu['logical_cpus']} logical CPUs, native bf16 flags: {flags}; torch {cpu['torch']}. Both runs: the "
        f"sample profile's light model (DenseDepth decoder, width 0.5, on EfficientNet-Lite0, log head) from the "
        f"same random weights, DenseDepth loss, batch 4, the prepared sample at {a.height}x{a.width}, {a.epochs} "
        "epochs, same seed and batches. Issue 13's bar: the final training loss within 2 %.", "",
        "| epoch | fp32 loss | bf16 loss |", "|---|---|---|",
        *(f"| {i} | {x:.4f} | {y:.4f} |" for i, (x, y) in enumerate(zip(fp32, bf16), start=1)), "",
        f"Final loss: bf16 differs from fp32 by **{100 * rel:.2f} %** ({'within' if rel <= 0.02 else 'OUTSIDE'} "
        "the 2 % bar). The decoder's output convolution runs in float32 under autocast "
        "(depthlib.models.base.conv_out_fp32). `precision` stays \"fp32\" by default all the same: results "
        "of a seeded run then do not depend on whether the CPU has bf16.", ""])
    print(text)
    if a.write:
        write_results(Path(a.write), text)
    return 0 if rel <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
