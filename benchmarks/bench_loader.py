"""Prepared-dataset training loader vs a DenseDepth-style zip loader, on the same real NYU frames.

Usage: .venv/bin/python benchmarks/bench_loader.py [--epochs 4] [--reps 5] [--out runs/bench_loader]
Prints its tables; benchmarks/RESULTS_loader.md records a run, written by hand from them.

1. Builds a DenseDepth *train-layout* zip (JPEG RGB + 8-bit PNG depth, 0..255 = 0..10 m, CSV) from the real
   frames in ../shared/data/nyu_samples/densedepth_nyu2_test, and a prepared HDF5 file from that zip.
2. Times both training loaders (flip + channel swap, shuffled, num_workers=0, torch threads 1) interleaved
   in one run -> samples/s per core, through a DataLoader (batch 8) and per sample (dataset[i] alone).
3. Size: prepared bytes per frame -> full NYU estimate (50,688 train + 654 test frames) vs the 4.1 GB zip.
4. Memory: loader RSS growth over 1020 random samples of 34-, 340- and 1360-frame prepared files (subprocesses).

The baseline is written here (not copied) to do the work DenseDepth's PyTorch data.py does per sample: the
whole zip is read into a dict of bytes; each sample PIL-decodes JPEG + PNG from BytesIO, flips with PIL,
swaps channels through NumPy back to PIL, converts through the raw bytes to float tensors, and resizes depth
to half resolution (scaled and clamped as DenseDepth does). Both loaders flip with p=0.5, swap with p=0.5.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import subprocess
import sys
import time
import zipfile
from functools import partial
from pathlib import Path

from _common import ROOT, cpu_summary, each_round, parse_early, proc_status_kib, ratios, script_parser, utc_stamp


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, "none: it prints its tables (benchmarks/RESULTS_loader.md holds a run, written by hand "
                                "from that output); --out is its scratch folder (default runs/bench_loader)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_loader"))
    ap.add_argument("--mem-child", default="", help=argparse.SUPPRESS)
    return ap


parse_early(__name__, build_parser)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from depthlib.data import open_source  # noqa: E402
from depthlib.data.dataset import MappedDataset, make_loader  # noqa: E402
from depthlib.data.prepared_loader import PreparedTorchDataset  # noqa: E402
from depthlib.data.transforms import Compose, RandomChannelSwap, RandomHorizontalFlip  # noqa: E402
from depthlib.data.prepared_write import write_prepared  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "data" / "nyu_samples" / "densedepth_nyu2_test"
FULL_FRAMES = 50688 + 654
ZIP_BYTES = 4.1e9
_PERMS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def build_train_zip(out: Path, repeat: int = 1, jpeg_quality: int = 85) -> Path:
    """Real sample frames in DenseDepth's train layout (JPEG + 8-bit PNG) -> zip path."""
    src = open_source("densedepth", str(SAMPLES), split="test")
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for r in range(repeat):
            for i in range(len(src)):
                f = src[i]
                stem = f"data/nyu2_train/{f.scene}_out/{r * len(src) + i}"
                b = io.BytesIO()
                Image.fromarray(f.rgb).save(b, format="JPEG", quality=jpeg_quality)
                z.writestr(stem + ".jpg", b.getvalue())
                b = io.BytesIO()
                Image.fromarray(np.clip(np.round(f.depth / 10.0 * 255), 0, 255).astype(np.uint8)).save(b, format="PNG")
                z.writestr(stem + ".png", b.getvalue())
                rows.append((stem + ".jpg", stem + ".png"))
        s = io.StringIO()
        csv.writer(s).writerows(rows)
        z.writestr("data/nyu2_train.csv", s.getvalue())
    return out


def _pil_to_tensor(pic: Image.Image) -> torch.Tensor:
    """PIL -> float [C,H,W] / 255 through the raw bytes, the conversion DenseDepth's loader performs."""
    t = torch.frombuffer(bytearray(pic.tobytes()), dtype=torch.uint8).view(pic.size[1], pic.size[0], len(pic.getbands()))
    return t.permute(2, 0, 1).contiguous().float().div(255)


class ZipInMemoryLoader(Dataset):
    """DenseDepth-style training samples: PIL decode of JPEG + PNG held in memory, flip, channel swap, tensors."""

    def __init__(self, zip_path: Path, flip_p: float = 0.5, swap_p: float = 0.5) -> None:
        with zipfile.ZipFile(zip_path) as z:
            self.data = {n: z.read(n) for n in z.namelist()}
        text = self.data["data/nyu2_train.csv"].decode()
        self.rows = [r for r in csv.reader(io.StringIO(text)) if r]
        self.flip_p, self.swap_p = flip_p, swap_p

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        image = Image.open(io.BytesIO(self.data[self.rows[i][0]]))
        depth = Image.open(io.BytesIO(self.data[self.rows[i][1]]))
        if torch.rand(()) < self.flip_p:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            depth = depth.transpose(Image.FLIP_LEFT_RIGHT)
        if torch.rand(()) < self.swap_p:
            arr = np.asarray(image)
            image = Image.fromarray(arr[..., list(_PERMS[int(torch.randint(5, ()))])])
        img = _pil_to_tensor(image)
        # DenseDepth trains against half-resolution depth, rescaled and clamped in its ToTensor.
        d = _pil_to_tensor(depth.resize((depth.width // 2, depth.height // 2)))
        d = torch.clamp(d * 1000, 10, 1000)
        return {"image": img, "depth": d}


def time_loader(ds: Dataset, epochs: int, seed: int) -> float:
    """Samples per second over `epochs` shuffled passes through a DataLoader (batch 8, num_workers=0)."""
    loader = make_loader(ds, batch_size=8, shuffle=True, num_workers=0, seed=seed)
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def time_samples(ds: Dataset, epochs: int, seed: int) -> float:
    """Samples per second of dataset[i] alone (decode + augmentation + tensors; no batching)."""
    g = torch.Generator().manual_seed(seed)
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for i in torch.randperm(len(ds), generator=g).tolist():
            ds[i]
            n += 1
    return n / (time.perf_counter() - t0)


def mem_child(path: str, reads: int = 1020) -> None:
    """Print frames, RSS after the first sample and peak RSS over `reads` random samples of the file at `path`."""
    torch.set_num_threads(1)
    ds = PreparedTorchDataset(path)
    ds[0]
    before = peak = proc_status_kib()
    rng = np.random.default_rng(0)
    for _ in range(reads):  # the same number of reads for every file size
        ds[int(rng.integers(len(ds)))]
        peak = max(peak, proc_status_kib())
    print(f"{len(ds)} {before} {peak}")


def main() -> None:
    a = build_parser().parse_args()
    if a.mem_child:
        return mem_child(a.mem_child)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    zp = build_train_zip(out / "train_layout.zip")
    src = open_source("densedepth", str(zp), split="train")
    n = len(src)
    prep = {q: write_prepared(src, out / f"prepared_q{q}.h5", jpeg_quality=q, depth_unit_m=10.0 / 255,
                              overwrite=True, progress=False) for q in (95, 90)}
    # Same augmentation probabilities for both: flip 0.5, channel swap 0.5 (DenseDepth's PyTorch defaults); the
    # prepared file's through depthlib's transforms, as training applies them.
    augment = Compose([RandomHorizontalFlip(0.5), RandomChannelSwap(0.5)])
    loaders = {"densedepth_zip": ZipInMemoryLoader(zp),
               "prepared_q95": MappedDataset(PreparedTorchDataset(str(prep[95])), augment),
               "prepared_q90": MappedDataset(PreparedTorchDataset(str(prep[90])), augment)}
    for ds in loaders.values():  # warm-up
        time_loader(ds, 1, 0)
    print(f"machine: {cpu_summary()}; torch threads 1, python {platform.python_version()}, torch {torch.__version__}, "
          f"{utc_stamp()}")
    for label, fn in (("DataLoader batch 8", time_loader), ("dataset[i] only", time_samples)):
        # interleaved so all see the same machine load; each round's index seeds its shuffle
        rates = each_round({k: partial(fn, ds, a.epochs) for k, ds in loaders.items()}, a.reps, rotate=False)
        per_round = ratios(rates, "densedepth_zip", higher_is_better=True)
        print(f"[{label}]")
        for k, v in rates.items():
            print(f"  {k:16s} samples/s per core: " + " ".join(f"{x:.1f}" for x in v) +
                  f"  (median {np.median(v):.1f}; vs zip: median per-round ratio {per_round[k]['median']:.2f}x)")
    zb = zp.stat().st_size / n
    print(f"train-layout zip built here: {zb / 1e3:.1f} KB/frame (real nyu_data.zip: {ZIP_BYTES / FULL_FRAMES / 1e3:.1f} KB/frame)")
    for q, p in prep.items():
        pb = p.stat().st_size / n
        est = pb * FULL_FRAMES
        print(f"prepared JPEG q{q}: {pb / 1e3:.1f} KB/frame -> full NYU {est / 1e9:.2f} GB = {est / ZIP_BYTES:.2f}x the 4.1 GB zip"
              f" ({pb / zb:.2f}x the zip built here)")
    files = [prep[95]] + [write_prepared(src, out / f"prepared_x{k}.h5", indices=np.tile(np.arange(n), k),
                                         jpeg_quality=95, depth_unit_m=10.0 / 255, progress=False) for k in (10, 40)]
    for p in files:
        r = subprocess.run([sys.executable, __file__, "--mem-child", str(p)], capture_output=True, text=True, check=True)
        frames, before, peak = (int(x) for x in r.stdout.split())
        print(f"memory, {frames:4d}-frame file: RSS after first sample {before / 1024:.1f} MiB, peak over 1020 random "
              f"samples {peak / 1024:.1f} MiB (growth {(peak - before) / 1024:.1f} MiB)")
    held = sum(len(v) for v in loaders["densedepth_zip"].data.values())  # type: ignore[attr-defined]
    print(f"baseline holds the whole zip in memory: {held / 2**20:.1f} MiB for {n} frames (grows with the dataset)")


if __name__ == "__main__":
    main()
