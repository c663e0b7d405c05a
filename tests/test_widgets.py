"""The explorer's logic without a browser: caching, frame switching, pixel readout, metrics, static figure."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.checkpoint import load_model
from depthlib.data.frame import Frame
from depthlib.errors import CheckpointError, ConfigError
from depthlib.predict import predict
from depthlib.widgets import LRUCache, Explorer, explore

ROOT = Path(__file__).resolve().parent.parent


class ListSource:
    """An in-memory FrameSource of small random frames, each with a hole in its ground truth."""

    def __init__(self, n: int = 3, h: int = 24, w: int = 32) -> None:
        rng = np.random.default_rng(0)
        self.path = "<memory>"
        self.frames = []
        for i in range(n):
            depth = rng.uniform(1.0, 5.0, (h, w)).astype(np.float32)
            valid = np.ones((h, w), bool)
            valid[:3, :4] = False
            self.frames.append(Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth=depth,
                                     valid=valid, name=f"f{i}", scene="s"))
        self.reads = 0

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Frame:
        self.reads += 1
        return self.frames[i]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.frames]

    @property
    def scenes(self) -> list[str]:
        return [f.scene for f in self.frames]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ck")
    return {"current": tiny_checkpoint(d / "cur.pt", seed=0), "previous": tiny_checkpoint(d / "prev.pt", seed=1)}


def _explorer(ckpts: dict[str, Path], **kw: object) -> Explorer:
    return Explorer(ListSource(), ckpts, device="cpu", panel_width=64, **kw)  # type: ignore[arg-type]


def test_lru_cache_evicts_the_least_recently_used() -> None:
    c = LRUCache(2)
    calls: list[str] = []
    make = lambda k: (lambda: calls.append(k) or k.upper())  # noqa: E731
    assert c.get("a", make("a")) == "A" and c.get("b", make("b")) == "B"
    assert c.get("a", make("a")) == "A"  # hit; "b" is now the oldest
    c.get("c", make("c"))
    assert "a" in c and "c" in c and "b" not in c and len(c) == 2
    assert calls == ["a", "b", "c"] and (c.hits, c.misses) == (1, 3)
    with pytest.raises(ConfigError):
        LRUCache(0)


def test_frames_switch_the_image_and_predictions_are_cached(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    first = bytes(ex.image.value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(first))
    assert img.size == (4 * 64, 48)  # one row of four 64x48 panels
    misses = ex.predictions.misses
    second = ex.show(1)
    assert second != first and ex.frame_name.value == "f1"
    assert ex.predictions.misses > misses
    misses = ex.predictions.misses
    assert ex.show(0) == first  # back to frame 0: same bytes, nothing recomputed
    assert ex.predictions.misses == misses and ex.predictions.hits > 0


def test_prediction_equals_depthlib_predict(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    f = ex.source[2]
    x = torch.from_numpy(f.rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
    for flip in (True, False):
        want = predict(load_model(ckpts["current"]), x, flip_average=flip)[0, 0].numpy()
        np.testing.assert_allclose(ex.prediction("current", 2, flip), want, rtol=0, atol=1e-6)


def test_flip_colormap_and_range_redraw(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    seen = {bytes(ex.image.value)}
    misses = ex.predictions.misses
    ex.flip.value = False  # another prediction: computed once, then cached
    assert ex.predictions.misses > misses and ("current", 0, False) in ex.predictions
    seen.add(bytes(ex.image.value))
    ex.cmap.value = "viridis_r"
    seen.add(bytes(ex.image.value))
    ex.depth_range.value = (1.0, 4.0)
    seen.add(bytes(ex.image.value))
    ex.err_max.value = 0.2
    seen.add(bytes(ex.image.value))
    assert len(seen) == 5


def test_comparison_adds_a_row_and_metrics(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts, previous="previous")
    assert ex.labels_shown() == ["current", "previous"]
    assert Image.open(io.BytesIO(ex.image.value)).size == (4 * 64, 2 * 48)
    assert "<td>previous</td>" in ex.table.value
    f = ex.source[0]
    p = ex.prediction("previous", 0)
    abs_rel = float(np.mean(np.abs(p[f.valid] - f.depth[f.valid]) / f.depth[f.valid]))
    assert ex.metrics("previous", 0)["abs_rel"] == pytest.approx(abs_rel, rel=1e-5)
    assert f"{abs_rel:.4f}" in ex.table.value
    ex.previous.value = "(none)"
    assert ex.labels_shown() == ["current"] and "<td>previous</td>" not in ex.table.value


def test_pixel_readout(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    assert (ex.x.value, ex.y.value, ex.x.max, ex.y.max) == (16, 12, 31, 23)  # centred, bounded by the frame
    before = bytes(ex.image.value)
    ex.x.value, ex.y.value = 20, 10
    f = ex.source[0]
    assert f"<b>(20, 10)</b> ground truth {f.depth[10, 20]:.3f} m" in ex.readout.value
    assert f"current {ex.prediction('current', 0)[10, 20]:.3f} m" in ex.readout.value
    assert bytes(ex.image.value) != before  # the marker moved
    ex.x.value, ex.y.value = 1, 1
    assert "ground truth hole" in ex.readout.value


def test_save_static_writes_a_png(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ex = _explorer(ckpts, previous="previous", frame=1)
    out = ex.save_static(tmp_path / "figs" / "explore.png")
    assert out == tmp_path / "figs" / "explore.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    assert not [p for p in out.parent.iterdir() if p.name != "explore.png"]  # no temporary left behind


def test_bad_settings_are_refused(ckpts: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt.*does not exist"):
        Explorer(ListSource(), {"current": tmp_path / "missing.pt"})
    with pytest.raises(ConfigError, match="colormap"):
        _explorer(ckpts, cmap="no-such-map")
    with pytest.raises(ConfigError, match="previous='other'"):
        _explorer(ckpts, previous="other")


def test_explore_on_the_embedded_sample(ckpts: dict[str, Path]) -> None:
    if not (ROOT / "data" / "sample" / "data" / "nyu2_test.csv").is_file():
        pytest.skip("embedded sample data/sample not present")
    ex = explore(source="densedepth", path="data/sample", current=ckpts["current"], device="cpu", flip_average=False)
    assert len(ex.source) == 34 and ex.labels_shown() == ["current"]
    assert ex.prediction("current", 0).shape == (480, 640)
    assert "frame 00000" in ex.table.value
