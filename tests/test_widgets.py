"""The explorer's logic without a browser: caching, frame switching, pixel readout, metrics, static figure."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.core.errors import CheckpointError, ConfigError
from depthlib.data.frame import Frame
from depthlib.models.checkpoint import load_model
from depthlib.models.predict import predict
from depthlib.notebook.widgets import LRUCache, Explorer, explore

ROOT = Path(__file__).resolve().parent.parent


class ListSource:
    """An in-memory FrameSource of small random frames (frame i at 1+i..5+i m), each with a hole in its ground truth."""

    def __init__(self, n: int = 3, h: int = 24, w: int = 32, splits: list[str] | None = None) -> None:
        rng = np.random.default_rng(0)
        self.path = "<memory>"
        self.frames = []
        for i in range(n):
            depth = rng.uniform(1.0, 5.0, (h, w)).astype(np.float32)
            valid = np.ones((h, w), bool)
            valid[:3, :4] = False
            self.frames.append(Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth=depth + i,
                                     valid=valid, name=f"f{i}", scene="s"))
        if splits is not None:  # as a prepared file does
            self.splits = splits
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
    assert img.size == (4 * 64, 48 + ex.layout().legend_h)  # one row of four 64x48 panels, then the colour bars
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
    assert Image.open(io.BytesIO(ex.image.value)).size == (4 * 64, 2 * 48 + ex.layout().legend_h)
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
    assert "split not recorded" in ex.split.value  # DenseDepth's "test" half is not this project's held-out split


def test_explore_a_prepared_files_split(ckpts: dict[str, Path], sample_dir: Path, tmp_path: Path) -> None:
    from depthlib.data import open_source
    from depthlib.notebook import workbook

    raw = open_source("bts", sample_dir / "raw_depth")
    prepared = workbook.prepare(raw, str(tmp_path / "p.h5"), labels=["train", "test", "test"])
    ex = explore(source="prepared", path=prepared.path, split="test", current=ckpts["current"], device="cpu",
                 flip_average=False, panel_width=64)
    assert len(ex.source) == 2 and "test split: held out" in ex.split.value


def test_explore_a_reader_without_splits_and_with_options(ckpts: dict[str, Path], sample_dir: Path) -> None:
    # bts has no split option: the explorer shows every frame instead of failing on split="test"; a reader's own
    # settings come through `options`, and a misspelt one is refused by name.
    ex = explore(source="bts", path=sample_dir / "raw_depth", current=ckpts["current"], device="cpu",
                 flip_average=False, panel_width=64, options={"max_depth": 8.0})
    assert len(ex.source) == 3
    with pytest.raises(ConfigError, match=r"'bts' has no option 'max_dpeth'.*Fix: correct the name \(max_dpeth -> max_depth\)"):
        explore(source="bts", path=sample_dir / "raw_depth", current=ckpts["current"], options={"max_dpeth": 8.0})


def test_the_frame_says_its_split(ckpts: dict[str, Path]) -> None:
    ex = Explorer(ListSource(splits=["test", "train", "val"]), ckpts, device="cpu", panel_width=64)
    assert "test split: held out" in ex.split.value and "· test split: held out ·" in ex.table.value
    ex.frame.value = 1
    assert "train split: seen in training" in ex.split.value and "· train split" in ex.table.value
    ex.frame.value = 2
    assert "val split" in ex.split.value
    assert "split not recorded" in _explorer(ckpts).split.value  # a reader without split labels


def test_metrics_follow_the_picture_on_every_move(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts, previous="previous")
    seen: list[tuple[str, str]] = []
    ex.image.observe(lambda _: seen.append((ex.frame_name.value, ex.table.value)), names="value")
    for i in (1, 2, 0, 2):
        ex.frame.value = i
        f = ex.source[i]
        for lb in ("current", "previous"):
            p = ex.prediction(lb, i)
            abs_rel = float(np.mean(np.abs(p[f.valid] - f.depth[f.valid]) / f.depth[f.valid]))
            assert f"<td>{lb}</td><td style='padding:0 8px'>{ex.metrics(lb, i)['delta1']:.4f}" in ex.table.value
            assert f"{abs_rel:.4f}" in ex.table.value
        assert f"frame f{i} " in ex.table.value
    # when the new picture arrives, the name and the table already belong to it
    assert [(name, f"frame {name} " in table) for name, table in seen] == [(f"f{i}", True) for i in (1, 2, 0, 2)]


def test_depth_range_defaults_to_each_frames_ground_truth(ckpts: dict[str, Path]) -> None:
    from depthlib.figures.explorer import ground_truth_range

    ex = _explorer(ckpts)
    src = ex.source
    assert ex.auto_range.value and ex.depth_range.value == pytest.approx(ground_truth_range(src[0]), abs=1e-6)
    lo0, hi0 = ex.depth_range.value
    assert 1.0 <= lo0 < 1.2 and 4.8 < hi0 <= 5.0  # frame 0 spans about 1-5 m, not 0-10 m
    ex.frame.value = 2  # frame 2 spans about 3-7 m: the scale follows
    assert ex.depth_range.value == pytest.approx(ground_truth_range(src[2]), abs=1e-6)
    ex.depth_range.value = (0.5, 8.0)  # the user's own range turns the automatic one off and stays
    assert not ex.auto_range.value
    ex.frame.value = 1
    assert ex.depth_range.value == pytest.approx((0.5, 8.0))
    ex.auto_range.value = True
    assert ex.depth_range.value == pytest.approx(ground_truth_range(src[1]), abs=1e-6)
    fixed = _explorer(ckpts, depth_range=[0.0, 10.0])
    assert not fixed.auto_range.value and fixed.depth_range.value == (0.0, 10.0)
    with pytest.raises(ConfigError, match="depth_range must be"):
        _explorer(ckpts, depth_range=[3.0, 1.0])


def test_clicking_the_picture_reads_the_depth_there(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts, previous="previous")
    H, W = ex.layout().size  # two rows of 64x48 panels, then the colour bars
    # a click in the third panel of the second row, at panel pixel (40, 30) -> frame pixel (20, 15)
    ex.clicks.value = f"{(2 * 64 + 40.5) / W},{(48 + 30.5) / H},1"
    assert (ex.x.value, ex.y.value) == (20, 15)
    f = ex.source[0]
    assert f"<b>(20, 15)</b> ground truth {f.depth[15, 20]:.3f} m" in ex.readout.value
    assert f"previous {ex.prediction('previous', 0)[15, 20]:.3f} m" in ex.readout.value
    ex.clicks.value = f"{10 / W},{(2 * 48 + 5) / H},2"  # on the colour bars: nothing happens
    assert (ex.x.value, ex.y.value) == (20, 15)
    assert "depthlib-click" in ex.clicks._dom_classes and "onerror=" in ex._click_bridge.value


def test_titles_are_readable_and_colour_bars_are_drawn(ckpts: dict[str, Path]) -> None:
    from depthlib.figures.explorer import Layout

    assert Layout(h=240, w=320, rows=1, frame_hw=(480, 640)).text_size >= 14  # was PIL's 11 px bitmap font
    ex = Explorer(ListSource(), ckpts, device="cpu", panel_width=320)
    a = np.asarray(Image.open(io.BytesIO(ex.image.value)))
    h = ex.layout().h
    strip = a[h:]  # below the panels: a depth bar (magma_r, light to dark) and an error bar (blue to red)
    row = strip[8, 320 + 10: 3 * 320 - 10].astype(int)
    assert row[:5].sum() > row[-5:].sum() + 300  # depth: light at lo, dark at hi
    err = strip[8, 3 * 320 + 10: 4 * 320 - 10].astype(int)
    assert err[0, 2] > err[0, 0] and err[-1, 0] > err[-1, 2]  # error: blue for negative, red for positive


def test_static_figure_labels_its_colour_bars_and_no_text_overlaps(ckpts: dict[str, Path]) -> None:
    import matplotlib.text

    from depthlib.figures.explorer import static_figure

    ex = _explorer(ckpts, previous="previous")
    f = ex.source[0]
    rows = [(lb, ex.prediction(lb, 0), ex.metrics(lb, 0)) for lb in ex.labels_shown()]
    long_name = "RGB " + "rgbd_dataset_freiburg1_desk/rgb/1305031452.791720"[-40:] + "\ntest split: held out"
    for title, pixels in (("RGB f0", "its valid pixels, no crop"),  # the pixels: as Explorer.pixels_text(short=True)
                          (long_name, "densedepth protocol\n(crop 592x440, as 04 evaluates)")):
        fig = static_figure(f, title, rows, depth=(1.0, 5.0, "magma_r"), err_max=1.0, error_cmap="RdBu_r",
                            pixels=pixels)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        labels = {t.get_text() for t in texts}
        assert "depth (m)" in labels and any(lb.startswith("pred \u2212 gt (m)") and "too near" in lb for lb in labels)
        assert any(lb.startswith("current \u2212 previous (m), \u00b1") for lb in labels)  # the difference's own bar
        assert any(lb.startswith("previous\n\u03b41 ") for lb in labels)  # the metrics, in the prediction's title
        assert f"ground truth\nmetrics: {pixels}" in labels
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
        assert not clashes, clashes


def _ramp(strip_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left end, middle, right end) RGB of a colour bar's row of pixels, as ints."""
    a = strip_row.astype(int)
    return a[:5].mean(0), a[len(a) // 2 - 2: len(a) // 2 + 3].mean(0), a[-5:].mean(0)


def test_the_difference_panel_has_its_own_colour_bar(ckpts: dict[str, Path]) -> None:
    # "current - previous" sat above the depth bar, so it read as depth.
    ex = Explorer(ListSource(), ckpts, previous="previous", device="cpu", panel_width=320)
    a = np.asarray(Image.open(io.BytesIO(ex.image.value)))
    lay = ex.layout()
    y = lay.rows * lay.h + 12  # inside the bars, under the panels
    left, mid, right = _ramp(a[y, lay.w + 10: 2 * lay.w - 10])  # under "current - previous"
    assert left[2] > left[0] + 60 and right[0] > right[2] + 60, (left, right)  # diverging: blue .. red
    assert mid.min() > 200, mid  # white at 0
    left, _, right = _ramp(a[y, 2 * lay.w + 10: 3 * lay.w - 10])  # under the previous prediction: depth
    assert left.sum() > right.sum() + 300, (left, right)  # magma_r: light near, dark far


def test_pixel_readout_entries_stay_on_one_line(ckpts: dict[str, Path]) -> None:
    # The readout wrapped between a label and its value ("previous" / "1.775 m").
    from html.parser import HTMLParser

    class Spans(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[bool] = []
            self.loose: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.open.append("white-space:nowrap" in (dict(attrs).get("style") or "").replace(" ", ""))

        def handle_endtag(self, tag: str) -> None:
            self.open.pop()

        def handle_data(self, data: str) -> None:
            if data.strip() and data.strip() != "|" and not any(self.open):
                self.loose.append(data)

    ex = _explorer(ckpts, previous="previous")
    for x, y in ((20, 10), (1, 1)):  # a measured pixel, a hole
        ex.x.value, ex.y.value = x, y
        parser = Spans()
        parser.feed(ex.readout.value)
        assert not parser.loose, (parser.loose, ex.readout.value)
    assert "<b>(1, 1)</b>" in ex.readout.value and "previous" in ex.readout.value


def test_the_slot_under_the_rgb_shows_how_the_two_checkpoints_differ() -> None:
    from depthlib.figures.explorer import histogram_panel

    diff = np.full((48, 64), 0.1)           # every pixel 10 cm: one bar, right of centre, the median line on it
    diff[:, :16] = np.nan                   # holes are left out
    img = histogram_panel(diff, 0.2, (120, 160), "RdBu_r", 11).astype(int)
    plot = img[25:120 - 20]                 # under the title, over the tick labels
    is_red = (plot[..., 0] > 200) & (plot[..., 1] < 80) & (plot[..., 2] < 80)
    ground = (plot == (32, 32, 32)).all(axis=-1) | (plot == (46, 52, 66)).all(axis=-1)   # background, +-d shade
    x0, x1 = 6, 160 - 6                     # the plot's +-2.5 d = +-0.5 m across the panel
    red = np.nonzero(is_red.any(axis=0))[0]
    assert red.size and abs(red.mean() - (x0 + 0.6 * (x1 - x0))) <= 2, red     # the median: +0.1 m
    bar = np.nonzero((~ground & ~is_red).any(axis=0))[0]
    # 32 bins of 1/32 m: 0.1 m falls in [0.09375, 0.125), x 93.9-98.5
    assert bar.size and bar.min() >= 93 and bar.max() <= 99, bar
    assert histogram_panel(diff, 0.2, (20, 64), "RdBu_r", 11).shape == (20, 64, 3)   # too small to plot: no error


def test_a_click_on_the_histogram_panel_is_ignored(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts, previous="previous")
    H, W = ex.layout().size
    slot = ex.render()[48:96, :64].reshape(-1, 3)
    assert len(np.unique(slot, axis=0)) > 3     # the distribution is drawn there, no longer an empty panel
    before = (ex.x.value, ex.y.value)
    ex.clicks.value = f"{20.5 / W},{(48 + 20.5) / H},1"  # second row, first panel: no frame pixel there
    assert (ex.x.value, ex.y.value) == before
    ex.clicks.value = f"{(64 + 20.5) / W},{(48 + 20.5) / H},2"  # the panel beside it ("current - previous")
    assert (ex.x.value, ex.y.value) == (10, 10)


def test_the_depth_range_ignores_a_few_far_pixels(ckpts: dict[str, Path]) -> None:
    from depthlib.figures.explorer import ground_truth_range

    src = ListSource()
    f = src.frames[0]
    f.depth[5, 5:9] = 9.5  # a window's worth of far pixels in a room 1-5 m deep
    lo, hi = ground_truth_range(f)
    assert 1.0 <= lo < 1.2 and 4.8 < hi <= 5.0, (lo, hi)


def test_explorer_metrics_say_their_pixels_and_can_use_04s_protocol(ckpts: dict[str, Path]) -> None:
    # For one frame the explorer said AbsRel 0.2061 and 04's table 0.2017: valid pixels vs the densedepth crop.
    if not (ROOT / "data" / "sample" / "data" / "nyu2_test.csv").is_file():
        pytest.skip("embedded sample data/sample not present")
    from torch.utils.data import Subset

    from depthlib.evaluation.report import worst_table
    from depthlib.notebook import workbook

    kw = dict(source="densedepth", path="data/sample", current=ckpts["current"], device="cpu", panel_width=64)
    plain = explore(**kw)  # type: ignore[arg-type]
    assert "valid pixels, no crop" in plain.table.value
    ex = explore(protocol="densedepth", **kw)  # type: ignore[arg-type]
    assert "densedepth" in ex.table.value and "crop rows 20-459, cols 24-615" in ex.table.value
    frames = workbook.eval_frames("", "test", source="densedepth", path="data/sample", options={"split": "test"})
    models = workbook.inference_models({"current": str(ckpts["current"])}, device="cpu")
    result = workbook.evaluate_all(models, Subset(frames, [0, 1]), protocol="densedepth", flip_average=True,
                                   device="cpu", progress=False)["current"]
    want = result.per_image[0]["abs_rel"]
    assert ex.metrics("current", 0)["abs_rel"] == pytest.approx(want, rel=1e-5)  # float32 convs, batch of 2 vs 1
    assert plain.metrics("current", 0)["abs_rel"] != pytest.approx(want, rel=1e-3)  # other pixels, other number
    shown = f"{want:.4f}"
    assert shown in worst_table(result) and shown in ex.table.value
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        explore(protocol="densdepth", **kw)  # type: ignore[arg-type]


def test_readout_and_caption_are_one_line_that_scrolls_and_the_range_slider_is_usable(ckpts: dict[str, Path]) -> None:
    # Issue 25 trial, JupyterLab at 1280x900 with the file browser open: the pixel readout wrapped onto two lines
    # (clipped at 1000 px), the metrics caption wrapped, and the depth-range slider was ~70 px wide, its value box cut.
    import ipywidgets as W

    ex = _explorer(ckpts, previous="previous")
    for w in (ex.readout, ex.table):  # full width; a longer line scrolls sideways inside it instead of wrapping
        assert (w.layout.width, w.layout.overflow) == ("100%", "auto")
    assert ex.readout in ex.widget.children  # a row of its own, not squeezed beside the x / y boxes
    value = ex.readout.value
    assert value.startswith("<span style='white-space:nowrap'>") and value.count("<span") == 1  # one unbreakable line
    assert "<caption style='white-space:nowrap;text-align:left'>" in ex.table.value
    assert int(ex.depth_range.layout.width.removesuffix("px")) >= 400
    assert ex.depth_range.layout.min_width == ex.depth_range.layout.width  # never squeezed by its row
    rows = [c for c in ex.widget.children if isinstance(c, W.HBox)]
    assert rows and all(r.layout.flex_flow == "row wrap" for r in rows)  # controls move down a line, not shrink


def test_the_metrics_table_uses_the_reports_labels(ckpts: dict[str, Path]) -> None:
    # The table said "delta1 / abs_rel" where 04 and the figures say "δ1 / AbsRel".
    from depthlib.evaluation.report import LABELS

    table = _explorer(ckpts).table.value
    heads = [h.split(">", 1)[1] for h in table.split("</th>")[:-1]]
    assert heads[1:] == [LABELS[k] for k in ("delta1", "abs_rel", "rmse", "log10")] == ["\u03b41", "AbsRel", "RMSE", "log10"]


@pytest.fixture(scope="module")
def near_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """current, and previous: the same weights with the head's bias nudged, so the two differ by centimetres."""
    from depthlib.models.checkpoint import load_checkpoint, save_checkpoint

    d = tmp_path_factory.mktemp("near")
    cur = tiny_checkpoint(d / "cur.pt", seed=0)
    model = load_model(cur)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.add_(0.01)
    assert load_checkpoint(cur)["arch"] == model.arch
    return {"current": cur, "previous": save_checkpoint(d / "prev.pt", model=model)}


def test_the_difference_panel_spans_the_differences_own_range(near_ckpts: dict[str, Path]) -> None:
    # "current - previous" spanned +-err_max (1 m): two models centimetres apart drew a near-white panel.
    from depthlib.figures.explorer import difference_range

    ex = Explorer(ListSource(), near_ckpts, previous="previous", device="cpu", panel_width=64)
    diff = ex.prediction("current", 0) - ex.prediction("previous", 0)
    d = ex.difference_max()
    assert d == difference_range(diff) and 0.001 <= d < 0.2 < ex.err_max.value
    assert np.percentile(np.abs(diff), 98) <= d <= 1.1 * np.percentile(np.abs(diff), 98) + 1e-9
    a = np.asarray(Image.open(io.BytesIO(ex.image.value))).astype(int)
    lay = ex.layout()
    panel = a[lay.h + 18: 2 * lay.h, lay.w: 2 * lay.w]  # the difference panel, under its title
    # median distance from white over its pixels: 26 of 765 with the old +-1 m range, 440 now
    assert np.median((255 - panel).sum(axis=-1)) > 200, "the difference panel is near white: its range hides it"
    assert difference_range(np.r_[np.full(198, 0.0234), 0.5, 3.0]) == pytest.approx(0.024)
    assert difference_range(np.zeros(5)) == 0.001


def test_the_static_figure_has_a_heading_bars_under_its_panels_and_no_empty_slot(near_ckpts: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    # 05_explore.png: no heading, colour bars on the right while the notebook says "under it", an empty bottom-left.
    import matplotlib.pyplot as plt

    from depthlib.figures.explorer import static_figure

    ex = Explorer(ListSource(), near_ckpts, previous="previous", device="cpu", panel_width=64)
    rows = [(lb, ex.prediction(lb, 0), ex.metrics(lb, 0)) for lb in ex.labels_shown()]
    fig = static_figure(ex.source[0], "RGB f0", rows, depth=(1.0, 5.0, "magma_r"), err_max=1.0, error_cmap="RdBu_r",
                        suptitle="explorer: frame f0")
    try:
        assert fig.get_suptitle() == "explorer: frame f0"
        fig.canvas.draw()
        panels = [ax for ax in fig.axes if ax.get_images()]
        bars = [ax for ax in fig.axes if ax not in panels and ax.get_label() == "<colorbar>"]
        assert len(panels) == 7 and len(bars) == 6  # RGB has no bar
        for bar in bars:  # each bar directly under a panel, as wide as it
            pos = bar.get_position()
            above = [p.get_position() for p in panels if abs(p.get_position().x0 - pos.x0) < 0.02
                     and p.get_position().y0 >= pos.y1 - 1e-3]
            assert above and min(p.y0 for p in above) - pos.y1 < 0.1, pos
        empty = [ax for ax in fig.axes if ax.get_visible() and not ax.axison]
        assert not empty  # the bottom-left slot holds the difference's distribution
        hist = [ax for ax in fig.axes if ax.patches and not ax.get_images() and ax.get_label() != "<colorbar>"]
        assert len(hist) == 1 and "pixels per difference" in hist[0].get_title()
        diff_img = [ax for ax in panels if ax.get_title().startswith("current \u2212 previous")][0].get_images()[0]
        assert diff_img.get_clim() == (-ex.difference_max(), ex.difference_max())
    finally:
        plt.close(fig)
    path = ex.save_static(tmp_path / "v.png")
    assert Image.open(path).size[0] >= 1000
