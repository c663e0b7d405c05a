"""A stand-in for DenseDepth's `nyu_data.zip` at any size, built from the embedded real frames (scale rehearsals).

Layout as the real archive (see depthlib.data.densedepth): ``data/nyu2_train.csv`` and ``data/nyu2_test.csv``
(no header, ``rgb,depth``); ``data/nyu2_train/<scene>_out/<n>.jpg`` + ``<n>.png`` (8-bit depth, 0..255 =
0..10 m); ``data/nyu2_test/NNNNN_colors.png`` + ``NNNNN_depth.png`` (16-bit mm), NNNNN the real Eigen test
indices. The real archive holds 50,688 train frames in 284 scene folders and 654 test frames (4.1 GB);
``n_frames`` counts both halves, so 51,342 gives the real counts.

Every frame derives from one of the real sample frames (data/sample): a scene takes one base frame, a
zoom, a colour cast, a depth scale and a camera pan; each of its frames is a crop along the pan with its own
colour jitter, flip and sensor-like noise, so frames differ byte for byte and compress as camera frames do
(JPEG ~43 KB + PNG ~31 KB a train frame at 640x480, calibrated to the real archive's total size). The
members are stored (not deflated: JPEG and PNG do not compress further). The zip is written frame by frame
(bounded memory) to ``<name>.partial`` and renamed when complete; the output is the same for any number of
worker processes.
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageChops

from ..core.atomic import publish
from ..core.errors import DataError
from ..core.paths import resolve

FULL_TRAIN, FULL_TEST, FULL_SCENES = 50688, 654, 284
# The 654 Eigen test frames as 0-based NYU labeled indices (NYU splits.mat testNdxs - 1; the names of
# DenseDepth's data/nyu2_test/NNNNN_*.png), as runs a-b.
TEST_INDEX_RUNS = (
    "0-1,8,13-17,20,27-42,45-46,55-56,58-62,75-78,83-90,116-118,124-128,130-133,136,152-154,166-168,"
    "170-175,179-201,206-211,219-221,249,263,270-272,278-284,295-301,309-311,314-316,324-334,350-351,"
    "354-363,383-389,394-396,410-413,429-434,440-447,461-465,468-476,507-512,514-525,530-532,536-538,"
    "548-550,554-570,578-582,590-593,602-606,611-612,616-620,632-637,643-644,649-650,655-657,662-663,"
    "667-672,675-680,685-689,692-693,696-698,705-712,716-717,723-727,730-733,742-743,758-786,799-803,"
    "809-813,820-822,832-845,849-851,856-861,868-870,905-907,916-918,925-927,931-934,944-946,958-961,"
    "964-966,969-976,990-994,1000-1003,1009-1011,1020-1022,1031-1033,1037-1038,1047-1048,1051-1052,"
    "1056-1057,1074-1083,1087-1095,1097-1103,1105-1108,1116-1118,1122-1130,1134-1135,1143-1157,1161-1166,"
    "1169-1170,1173-1175,1178-1183,1191-1195,1200-1211,1215-1219,1225-1229,1232-1234,1246-1249,1253-1264,"
    "1274-1279,1284-1294,1296-1298,1301-1307,1313-1314,1328-1331,1334-1339,1346-1348,1352-1355,1363-1364,"
    "1367-1368,1383-1390,1393-1400,1406-1413,1420-1423,1429-1432,1440-1448")
# NYU Depth V2 scene types (the raw dataset's folder prefixes).
SCENE_TYPES = ("basement", "bathroom", "bedroom", "bookstore", "cafe", "classroom", "computer_lab",
               "conference_room", "dining_room", "excercise_room", "foyer", "furniture_store", "home_office",
               "home_storage", "kitchen", "living_room", "office", "office_kitchen", "playroom", "printer_room",
               "reception_room", "student_lounge", "study", "study_room")
_BORDER = (6, 474, 7, 632)  # rows / cols inside NYU's white border at 640x480 (data/sample/README.md)


@dataclass(frozen=True)
class StandinSettings:
    """How frames are rendered (defaults calibrated to the real archive's 4.1 GB at 640x480)."""

    size: tuple[int, int] = (480, 640)   # (H, W) of every frame
    jpeg_quality: int = 85
    png_level: int = 4                   # zlib level of every PNG: ~3x faster than 6, files ~10 % larger
    noise: int = 4                       # +- grey levels of train RGB noise (JPEG size, no flat patches)
    seed: int = 0


@dataclass
class StandinInfo:
    """What write_standin wrote."""

    path: Path
    n_train: int
    n_test: int
    n_scenes: int
    bytes: int
    seconds: float

    @property
    def frames_per_s(self) -> float:
        """Frames (train + test) written per second of wall time."""
        return (self.n_train + self.n_test) / max(self.seconds, 1e-9)


def eigen_test_indices(n: int) -> list[int]:
    """The first n of the 654 real test indices (the real names), continued past the last index beyond 654."""
    out = []
    for run in TEST_INDEX_RUNS.split(","):
        a, _, b = run.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out[:n] + list(range(out[-1] + 1, out[-1] + 1 + max(0, n - len(out))))


def scene_plan(n_train: int, n_scenes: int | None = None, seed: int = 0) -> list[tuple[str, int]]:
    """(scene name, frame count) per scene; by default the real archive's ~178 frames a scene, at most 284."""
    if n_train < 2:
        raise DataError(None, f"a stand-in needs at least 2 train frames, got {n_train}.", "pass a larger n_frames.")
    k = n_scenes or min(FULL_SCENES, max(2, round(n_train * FULL_SCENES / FULL_TRAIN)))
    k = min(k, n_train)
    rng = np.random.default_rng([seed, 1])
    w = rng.lognormal(0.0, 0.6, k)  # scenes of very different lengths, as recorded sequences are
    counts = 1 + np.floor(w / w.sum() * (n_train - k)).astype(int)
    counts[np.argsort(-w)[: n_train - counts.sum()]] += 1
    numbers: dict[str, int] = {}
    out = []
    for c in counts:
        t = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
        numbers[t] = numbers.get(t, 0) + int(rng.integers(1, 4))
        out.append((f"{t}_{numbers[t]:04d}", int(c)))
    return out


class _Renderer:
    """Renders stand-in frames from the real sample frames (one per worker process)."""

    def __init__(self, sample_dir: str, settings: StandinSettings) -> None:
        from .densedepth import DenseDepthSource

        src = DenseDepthSource(sample_dir, split="test")
        self.s = settings
        h, w = settings.size
        self.bases = []
        for i in range(len(src)):
            f = src[i]
            scale = (f.rgb.shape[0] / 480, f.rgb.shape[1] / 640)
            box = (_BORDER[2] * scale[1], _BORDER[0] * scale[0], _BORDER[3] * scale[1], _BORDER[1] * scale[0])
            full_rgb = Image.fromarray(f.rgb).resize((w, h), Image.BILINEAR)
            full_depth = Image.fromarray(np.where(f.valid, f.depth, 0).astype(np.float32)).resize((w, h), Image.NEAREST)
            self.bases.append((Image.fromarray(f.rgb), Image.fromarray(f.depth.astype(np.float32)), box,
                               full_rgb, np.asarray(full_depth)))
        amp = settings.noise
        noise = np.random.default_rng([settings.seed, 2]).integers(0, 2 * amp + 1, (2 * h, 2 * w, 3), dtype=np.uint8)
        self.noise = Image.fromarray(noise)
        self._scene_key: tuple | None = None

    def _scene(self, scene: int) -> tuple:
        """Zoomed RGB and 8-bit depth codes of a scene, its pan and colour cast (cached: frames come in scene order)."""
        if self._scene_key is not None and self._scene_key[0] == scene:
            return self._scene_key[1]
        h, w = self.s.size
        rng = np.random.default_rng([self.s.seed, 3, scene])
        rgb, depth, box, _, _ = self.bases[int(rng.integers(len(self.bases)))]
        z = rng.uniform(1.05, 1.35)
        zw, zh = int(round(w * z)), int(round(h * z))
        zrgb = rgb.resize((zw, zh), Image.BILINEAR, box=box)
        zdepth = np.asarray(depth.resize((zw, zh), Image.BILINEAR, box=box)) * rng.uniform(0.85, 1.15)
        codes = Image.fromarray(np.clip(np.round(zdepth * 25.5), 1, 255).astype(np.uint8))
        pan = rng.uniform(0, 1, (2, 2)) * [zw - w, zh - h]
        cast = (rng.uniform(0.8, 1.2, 3), rng.uniform(-15, 15, 3))
        value = (zrgb, codes, pan, cast)
        self._scene_key = (scene, value)
        return value

    def _jitter(self, img: Image.Image, rng: np.random.Generator, gain: np.ndarray, bias: np.ndarray) -> Image.Image:
        g, b = gain * rng.uniform(0.97, 1.03, 3), bias + rng.uniform(-3, 3, 3)
        lut = np.clip(np.arange(256)[None] * g[:, None] + b[:, None], 0, 255).astype(np.uint8)
        return img.point(lut.ravel().tolist())

    def _noisy(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.s.noise == 0:
            return img
        h, w = self.s.size
        x, y = int(rng.integers(w)), int(rng.integers(h))
        return ImageChops.add(img, self.noise.crop((x, y, x + w, y + h)), 1.0, -self.s.noise)

    def train(self, scene: int, pos: int, count: int) -> tuple[bytes, bytes]:
        """(JPEG, 8-bit depth PNG) of frame `pos` of `count` in scene number `scene`."""
        h, w = self.s.size
        zrgb, codes, pan, (gain, bias) = self._scene(scene)
        rng = np.random.default_rng([self.s.seed, 4, scene, pos])
        t = pos / max(1, count - 1)
        x, y = (pan[0] * (1 - t) + pan[1] * t + rng.uniform(-3, 3, 2)).round().astype(int)
        x, y = int(np.clip(x, 0, zrgb.width - w)), int(np.clip(y, 0, zrgb.height - h))
        rgb = self._noisy(self._jitter(zrgb.crop((x, y, x + w, y + h)), rng, gain, bias), rng)
        depth = codes.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            rgb, depth = rgb.transpose(Image.FLIP_LEFT_RIGHT), depth.transpose(Image.FLIP_LEFT_RIGHT)
        return _encode(rgb, "JPEG", quality=self.s.jpeg_quality), _encode(depth, "PNG", compress_level=self.s.png_level)

    def test(self, i: int) -> tuple[bytes, bytes]:
        """(RGB PNG, 16-bit mm depth PNG) of test frame i: a whole real frame, border kept, colour and depth varied."""
        rng = np.random.default_rng([self.s.seed, 5, i])
        _, _, _, rgb, depth = self.bases[i % len(self.bases)]
        rgb = self._jitter(rgb, rng, rng.uniform(0.92, 1.08, 3), rng.uniform(-6, 6, 3))
        mm = np.clip(np.round(depth * rng.uniform(0.95, 1.05) * 1000), 0, 9990).astype(np.uint16)
        return (_encode(rgb, "PNG", compress_level=self.s.png_level),
                _encode(Image.fromarray(mm), "PNG", compress_level=self.s.png_level))


def _encode(img: Image.Image, fmt: str, **kw: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


_WORKER: _Renderer | None = None  # the renderer of a pool worker process (set by its initializer)


def _init_worker(sample_dir: str, settings: StandinSettings) -> None:
    global _WORKER
    _WORKER = _Renderer(sample_dir, settings)


def _render(task: tuple) -> tuple[bytes, bytes]:
    assert _WORKER is not None
    return _WORKER.train(*task[1:]) if task[0] == "train" else _WORKER.test(task[1])


def _member(name: str) -> zipfile.ZipInfo:
    """A stored member with a fixed timestamp, so the archive is byte-identical for the same arguments."""
    info = zipfile.ZipInfo(name, date_time=(2019, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info


def _csv_text(rows: Sequence[tuple[str, str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def _blocks(items: list, n: int) -> Iterator[list]:
    for k in range(0, len(items), n):
        yield items[k:k + n]


def write_standin(out: str | os.PathLike[str], *, n_frames: int = FULL_TRAIN + FULL_TEST, n_test: int = FULL_TEST,
                  n_scenes: int | None = None, settings: StandinSettings = StandinSettings(),
                  sample_dir: str = "data/sample", workers: int = 2, progress: bool = True) -> StandinInfo:
    """Write a stand-in nyu_data.zip with n_frames frames (n_test of them test frames) -> StandinInfo."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    path = resolve(out)
    n_train = n_frames - n_test
    if n_test < 1:
        raise DataError(path, f"n_test must be >= 1, got {n_test}.", "the real archive has 654 test frames.")
    plan = scene_plan(n_train, n_scenes, settings.seed)
    tasks: list[tuple] = []
    train_rows, test_rows, members = [], [], []
    for s, (scene, count) in enumerate(plan):
        for pos in range(count):
            stem = f"data/nyu2_train/{scene}_out/{pos + 1}"
            train_rows.append((f"{stem}.jpg", f"{stem}.png"))
            members.append(train_rows[-1])
            tasks.append(("train", s, pos, count))
    for i, k in enumerate(eigen_test_indices(n_test)):
        test_rows.append((f"data/nyu2_test/{k:05d}_colors.png", f"data/nyu2_test/{k:05d}_depth.png"))
        members.append(test_rows[-1])
        tasks.append(("test", i))
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = str(resolve(sample_dir))
    pool = mp.get_context("spawn").Pool(workers, _init_worker, (sample, settings)) if workers > 0 else None
    if pool is None:
        _init_worker(sample, settings)
    bar = tqdm(total=len(tasks), desc=path.name, unit="frame", disable=not progress)
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            z.writestr(_member("data/nyu2_train.csv"), _csv_text(train_rows))
            z.writestr(_member("data/nyu2_test.csv"), _csv_text(test_rows))
            done = 0
            # Blocks bound what is in flight (a few hundred frames) whatever the archive's size.
            for block in _blocks(tasks, 256):
                results = pool.imap(_render, block, chunksize=8) if pool is not None else map(_render, block)
                for rgb, depth in results:
                    z.writestr(_member(members[done][0]), rgb)
                    z.writestr(_member(members[done][1]), depth)
                    done += 1
                    bar.update(1)
        publish(partial, path)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return StandinInfo(path, n_train, n_test, len(plan), path.stat().st_size, time.perf_counter() - t0)

