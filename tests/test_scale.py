"""Costs that must not grow with the dataset: frame reads, splits, the sampler (issue 14, full NYU scale)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from depthlib.core.distributed import ShardSampler
from depthlib.core.errors import DataError
from depthlib.data import densedepth, open_source
from depthlib.data.dataset import scene_split
from depthlib.data.holes import FilledSource
from depthlib.data.prepared import PreparedDataset
from depthlib.data.prepared_write import write_prepared
from depthlib.data.select import SubsetSource
from depthlib.data.standin import StandinSettings, write_standin
from depthlib.notebook import workbook

TINY = StandinSettings(size=(48, 64))


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standin") / "nyu_data.zip"
    return write_standin(out, n_frames=66, n_test=6, n_scenes=5, settings=TINY, workers=0, progress=False).path


def _forbid_tables(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    def refuse(self: object) -> list[str]:
        raise AssertionError(f"{cls.__name__}: a frame read rebuilt a per-source table (O(N) per frame)")

    monkeypatch.setattr(cls, "names", property(refuse))
    monkeypatch.setattr(cls, "scenes", property(refuse))


def test_frame_reads_never_rebuild_per_source_tables(tiny_zip: Path, sample_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = PreparedDataset(str(write_prepared(open_source("densedepth", str(tiny_zip), split="train"),
                                                  tmp_path / "p.h5", progress=False)))
    sources = [open_source("densedepth", str(tiny_zip), split="train"), open_source("densedepth", str(tiny_zip), split="test"),
               open_source("densedepth", str(sample_dir), split="test"), open_source("bts", str(sample_dir / "raw_depth")),
               prepared]
    for src in sources:
        with monkeypatch.context() as m:
            _forbid_tables(m, type(src))
            for i in (0, len(src) // 2, len(src) - 1):
                assert src[i].rgb.ndim == 3
            assert SubsetSource(src, [1, 0])[1].name
            assert FilledSource(src, "nearest")[0].valid.all()


def test_densedepth_name_table_is_built_once(tiny_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = densedepth._row_name
    monkeypatch.setattr(densedepth, "_row_name", lambda split, rgb: calls.append(rgb) or real(split, rgb))
    src = open_source("densedepth", str(tiny_zip), split="train")
    assert len(calls) == len(src) == 60
    names = [src[i].name for i in range(len(src))]
    assert len(calls) == 60 and names == src.names and names[0].startswith("data/nyu2_train/")


@pytest.mark.parametrize("n_scenes, val_frac, test_frac, want", [
    (8, 0.02, 0.0, (7, 1, 0)),       # 0.16 scenes rounds to none: validation still gets one
    (6, 0.02, 0.0, (5, 1, 0)),
    (56, 0.02, 0.0, (55, 1, 0)),
    (284, 0.02, 0.0, (278, 6, 0)),   # the real archive's scene count: round(5.68)
    (10, 0.02, 0.01, (8, 1, 1)),
    (10, 0.0, 0.0, (10, 0, 0)),      # no validation asked for: none given
])
def test_scene_split_gives_validation_at_least_one_scene(n_scenes: int, val_frac: float, test_frac: float,
                                                         want: tuple[int, int, int]) -> None:
    scenes = [f"scene_{k:03d}" for k in range(n_scenes) for _ in range(3)]
    labels = scene_split(scenes, val_frac=val_frac, test_frac=test_frac, seed=0)
    got = tuple(len({s for s, lab in zip(scenes, labels) if lab == split}) for split in ("train", "val", "test"))
    assert got == want
    assert all(len({lab for s, lab in zip(scenes, labels) if s == sc}) == 1 for sc in set(scenes))  # whole scenes
    assert labels == scene_split(list(scenes), val_frac=val_frac, test_frac=test_frac, seed=0)  # reproducible


def test_scene_split_refuses_too_few_scenes() -> None:
    with pytest.raises(DataError, match="1 scene.*split file"):
        scene_split(["only"] * 5, val_frac=0.02)
    with pytest.raises(DataError, match="sum to less than 1"):
        scene_split(["a", "b"], val_frac=0.6, test_frac=0.4)


def test_split_labels_reports_frames_and_scenes(tiny_zip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = open_source("densedepth", str(tiny_zip), split="train")
    labels = workbook.split_labels(src, val_frac=0.02)
    n_val = labels.count("val")
    assert 0 < n_val < len(src) and labels.count("train") == len(src) - n_val
    out = capsys.readouterr().out
    assert f"val {n_val} frames / 1 scene," in out and f"train {len(src) - n_val} frames / 4 scenes" in out


def test_shard_sampler_holds_no_python_list_of_the_epoch() -> None:
    n = 1_000_000
    sampler = ShardSampler(n, rank=0, world_size=1, seed=0, shuffle=True)
    tracemalloc.start()
    try:
        it = iter(sampler)
        head = [next(it) for _ in range(5)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A list of a million Python ints is ~36 MB; an int64 array is 8 MB (torch's own buffer is not traced).
    assert peak < 12e6, f"{peak / 1e6:.1f} MB traced for an epoch of {n} indices"
    assert all(isinstance(i, int) for i in head) and len(set(head)) == 5
    sampler.set_epoch(0, skip=3)
    assert next(iter(sampler)) == head[3] and len(sampler) == n - 3
