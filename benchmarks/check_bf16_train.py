"""bf16 autocast training on the CPU against fp32: the same short run on the sample, loss curves side by side.

Issue 13's check: where the CPU computes bfloat16 natively, training with precision="bf16" must end at the
same loss as fp32 within 2 %. Both runs train the sample profile's light model (DenseDepth decoder, width
0.5, on EfficientNet-Lite0, log head; random weights so nothing is downloaded) with the DenseDepth loss on
the prepared sample, same seed, same batches.

    nice -n 15 .venv/bin/python benchmarks/check_bf16_train.py            # ~2 min on 2 idle cores
    nice -n 15 .venv/bin/python -m depthlib.pipeline --profile sample --only 01   # first, if the .h5 is missing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from depthlib.config import DataConfig, TrainConfig  # noqa: E402
from depthlib.fastpath import cpu_has_native_bf16  # noqa: E402
from depthlib.models import create_model  # noqa: E402
from depthlib.train import fit  # noqa: E402
from depthlib.workbook import training_sets  # noqa: E402


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepared", default="data/prepared/sample.h5")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    a = p.parse_args(argv)
    if not cpu_has_native_bf16():
        print("this CPU has no native bf16 (avx512_bf16 / amx_bf16): the check does not apply here", file=sys.stderr)
        return 0
    fp32, bf16 = run("fp32", a), run("bf16", a)
    rel = abs(bf16[-1] - fp32[-1]) / abs(fp32[-1])
    print("| epoch | fp32 loss | bf16 loss |\n|---|---|---|")
    for i, (x, y) in enumerate(zip(fp32, bf16), start=1):
        print(f"| {i} | {x:.4f} | {y:.4f} |")
    print(f"\nfinal loss: bf16 differs from fp32 by {100 * rel:.2f} % ({'within' if rel <= 0.02 else 'OUTSIDE'} 2 %)")
    return 0 if rel <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
