"""Known distances in the explorer (issue #22 step 4): the same calibration and residuals as predict --known, per frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_checkpoint import tiny_checkpoint
from depthlib.core.errors import ConfigError, DataError
from depthlib.evaluation.metrics import depth_metrics
from depthlib.figures.viz import colorize
from depthlib.inference.calibrate import KnownPoint, calibrate, residual_table
from depthlib.notebook import widgets
from depthlib.notebook.widgets import Explorer, explore
from test_widgets import ListSource

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ck")
    return {"current": tiny_checkpoint(d / "cur.pt", seed=0), "previous": tiny_checkpoint(d / "prev.pt", seed=1)}


def _explorer(ckpts: dict[str, Path], **kw: object) -> Explorer:
    return Explorer(ListSource(), ckpts, device="cpu", panel_width=64, **kw)  # type: ignore[arg-type]


def _want(ex: Explorer, label: str, i: int, xym: list[tuple[float, float, float]]):  # noqa: ANN202
    """What predict --known's calibrate gives for the same prediction and points."""
    points = [KnownPoint(x, y, m, where=f"known point {k}") for k, (x, y, m) in enumerate(xym, start=1)]
    return calibrate(ex.prediction(label, i), points, f"frame f{i}")


def test_one_and_three_points_give_what_predict_known_gives(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    raw, plain = ex.prediction("current", 0).copy(), bytes(ex.image.value)
    added: list[tuple[float, float, float]] = []
    for x, y, m in ((20, 15, 2.5), (5, 20, 1.6), (28, 4, 3.9)):
        ex.add_known(x, y, m)
        added.append((x, y, m))
        if len(added) == 2:
            continue
        want, got = _want(ex, "current", 0, added), ex.calibration()
        assert got is not None and got.fit == want.fit and got.fit.shift == 0.0  # 1 and 3 points: a scale
        np.testing.assert_array_equal(got.depth, want.depth)
        np.testing.assert_array_equal(got.rows, want.rows)
        assert not np.allclose(got.depth, raw)  # it did rescale
        # predict's residual table, as predict prints it, and the summary line
        assert residual_table(want, "frame f0, current") in ex.known.residuals.value.replace("&#x27;", "'")
        assert f"calibrated from {len(added)} point{'s' if len(added) > 1 else ''}: scale {want.fit.scale:.4f}" \
            in ex.known.residuals.value
        # the picture, the readout and the metrics show the calibrated map, and say so
        assert bytes(ex.image.value) != plain
        panels = dict(ex.panels())
        h, w = ex.panel_size()
        small = np.asarray(Image.fromarray(want.depth).resize((w, h), Image.BILINEAR))  # as the explorer shows maps
        np.testing.assert_array_equal(panels[f"current, calibrated \u00d7{want.fit.scale:.3g}"],
                                      colorize(small, *ex.depth_range.value, ex.cmap.value))
        x, y = ex.x.value, ex.y.value
        assert f"current, calibrated {want.depth[y, x]:.3f} m (predicted {raw[y, x]:.3f} m)" in ex.readout.value
        f = ex.source[0]
        t = lambda a: torch.from_numpy(np.array(a))[None, None]  # noqa: E731
        m_cal = depth_metrics(pred=t(want.depth), target=t(f.depth), valid=t(f.valid))
        assert ex.metrics("current", 0) == m_cal and ex.metrics("current", 0, calibrated=False) != m_cal
        assert f"<td>current, calibrated ({len(added)} points)</td><td style='padding:0 8px'>{m_cal['delta1']:.4f}" \
            in ex.table.value and "<td>current, as predicted</td>" in ex.table.value
    ex.clear_known()  # back to the prediction as it came, byte for byte
    assert ex.calibration() is None and ex.known_points() == [] and bytes(ex.image.value) == plain
    assert ex.known.residuals.value == "" and "<td>current</td>" in ex.table.value


def test_a_shift_is_fitted_and_applied_as_predict_does(ckpts: dict[str, Path]) -> None:
    # Points that an inverse-depth shift fits exactly: from 4 points calibrate keeps the shift, so must the explorer.
    ex = _explorer(ckpts)
    raw = ex.prediction("current", 0)
    s, t = 1.3, 0.12
    # in float64: raw[y, x] is a float32 scalar, and NumPy keeps 1.3 * float32 in float32, whose rounding the
    # intercept of 5 close depths magnified to 1.6e-7 on 0.12 under torch's portable kernels (make test-kernels)
    xym = [(x, y, 1 / (1 / (s * float(raw[y, x])) + t)) for x, y in ((20, 15), (5, 20), (28, 4), (10, 8), (25, 22))]
    for x, y, m in xym:
        ex.add_known(x, y, m)
    want, got = _want(ex, "current", 0, xym), ex.calibration()
    assert want.fit.shift == pytest.approx(t, rel=1e-6) and got is not None and got.fit == want.fit
    np.testing.assert_array_equal(got.depth, want.depth)
    np.testing.assert_allclose(got.rows[:, 4], got.rows[:, 2], rtol=1e-6)  # fitted = given (float32 map)
    assert "shift +0.1200 1/m" in ex.known.residuals.value
    assert any(title.endswith("+shift") for title, _ in ex.panels())


def test_a_click_then_add_uses_the_clicked_pixel(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts, previous="previous")
    H, W = ex.layout().size
    ex.clicks.value = f"{(2 * 64 + 40.5) / W},{(48 + 30.5) / H},1"  # frame pixel (20, 15), as test_widgets clicks
    ex.known.distance.value = " 2.35 "
    ex.known.add.click()
    assert [(p.x, p.y, p.metres) for p in ex.known_points()] == [(20.0, 15.0, 2.35)]
    assert "added known point 1: 2.35 m at (20, 15)" in ex.known.message.value and ex.known.distance.value == ""
    for label in ("current", "previous"):  # both shown predictions, each with its own fit
        got, want = ex.calibration(label), _want(ex, label, 0, [(20, 15, 2.35)])
        assert got is not None and got.fit == want.fit
        assert residual_table(want, f"frame f0, {label}") in ex.known.residuals.value
        assert got.depth[15, 20] == pytest.approx(2.35, rel=1e-5)  # one point: the map passes through it
    a = np.asarray(Image.open(io.BytesIO(ex.image.value))).astype(int)
    ring = a[:48, :64][np.all(np.abs(a[:48, :64] - (0, 230, 255)) < 40, axis=-1)]  # the ring on the RGB panel
    assert len(ring) > 10


def test_a_bad_distance_shows_a_message_and_adds_nothing(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    before = bytes(ex.image.value)
    for typed in ("abc", "", "-1", "0", "nan", "inf", "2,5"):
        ex.known.message.value = ""
        ex.known.distance.value = typed
        ex.known.add.click()  # no exception escapes into the notebook
        msg = ex.known.message.value
        assert "not added" in msg and "color:#b00020" in msg and "Fix: type the distance" in msg, typed
        assert ("not a number" in msg) if typed in ("abc", "", "2,5") else ("positive metres" in msg), (typed, msg)
        assert ex.known_points() == [] and ex.calibration() is None and bytes(ex.image.value) == before, typed
        with pytest.raises(ConfigError, match="distance"):
            ex.add_known(3, 3, typed)


def test_a_point_the_calibration_refuses_is_said_and_not_kept(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    with pytest.raises(DataError, match=r"known point 1: pixel \(40, 3\) is outside the image's 32x24 pixels"):
        ex.add_known(40, 3, 2.0)
    ex.prediction("current", 0)[15, 20] = np.nan  # the cached map has no depth there: predict would refuse it
    ex.x.value, ex.y.value = 20, 15
    ex.known.distance.value = "2.0"
    ex.known.add.click()
    assert "no valid depth at pixel (20, 15)" in ex.known.message.value and ex.known_points() == []
    assert ex.known.distance.value == "2.0"  # kept, for the user to move the point


def test_points_are_kept_per_frame(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    plain1 = ex.show(1)
    ex.show(0)
    ex.add_known(20, 15, 2.5)
    ex.add_known(5, 20, 1.6)
    on0 = bytes(ex.image.value)
    ex.frame.value = 1
    assert ex.known_points() == [] and ex.calibration() is None and bytes(ex.image.value) == plain1
    ex.add_known(10, 10, 4.0)
    want1 = _want(ex, "current", 1, [(10, 10, 4.0)])
    assert ex.calibration().fit == want1.fit  # type: ignore[union-attr]
    ex.frame.value = 0
    want0 = _want(ex, "current", 0, [(20, 15, 2.5), (5, 20, 1.6)])
    got = ex.calibration()
    assert got is not None and got.fit == want0.fit and bytes(ex.image.value) == on0
    np.testing.assert_array_equal(got.rows, want0.rows)
    assert ex.calibration(i=1).fit == want1.fit and len(ex.known_points(1)) == 1  # type: ignore[union-attr]
    ex.clear_known()  # this frame's only
    assert ex.known_points(0) == [] and len(ex.known_points(1)) == 1


def test_the_toggle_shows_the_prediction_as_it_came(ckpts: dict[str, Path]) -> None:
    ex = _explorer(ckpts)
    ex.add_known(20, 15, 2.5)
    calibrated = bytes(ex.image.value)
    ex.known.use.value = False
    raw = ex.prediction("current", 0)
    assert ex.calibration() is None and bytes(ex.image.value) != calibrated
    np.testing.assert_array_equal(ex.shown_prediction("current", 0), raw)
    assert f"current {raw[ex.y.value, ex.x.value]:.3f} m" in ex.readout.value and "<td>current</td>" in ex.table.value
    assert len(ex.known_points()) == 1  # kept, and still ringed
    ex.known.use.value = True
    assert bytes(ex.image.value) == calibrated


def test_save_static_draws_the_calibrated_view(ckpts: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.text

    seen: dict[str, object] = {}
    real = widgets.static_figure

    def spy(*args: object, **kw: object) -> object:
        fig = real(*args, **kw)  # type: ignore[arg-type]
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
        seen.update(args=args, kw=kw, suptitle=fig.get_suptitle(), titles=[ax.get_title() for ax in fig.axes],
                    clashes=[(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)])
        return fig

    monkeypatch.setattr(widgets, "static_figure", spy)
    ex = _explorer(ckpts, previous="previous")
    for x, y, m in ((20, 15, 2.5), (5, 20, 1.6), (28, 4, 3.9)):
        ex.add_known(x, y, m)
    assert Image.open(ex.save_static(tmp_path / "v.png")).size[0] >= 1000
    rows = seen["args"][2]  # type: ignore[index]
    for (label, pred, metrics), lb in zip(rows, ("current", "previous")):
        want = _want(ex, lb, 0, [(20, 15, 2.5), (5, 20, 1.6), (28, 4, 3.9)])
        np.testing.assert_array_equal(pred, want.depth)
        assert label == lb and metrics == ex.metrics(lb, 0)
    assert seen["kw"]["known"] == [(20.0, 15.0), (5.0, 20.0), (28.0, 4.0)]  # type: ignore[index]
    assert "calibrated from 3 points: current scale" in seen["suptitle"]  # type: ignore[operator]
    assert any(t.startswith("current, calibrated \u00d7") for t in seen["titles"])  # type: ignore[union-attr]
    assert not seen["clashes"], seen["clashes"]


def test_on_the_embedded_sample_with_04s_protocol(ckpts: dict[str, Path]) -> None:
    if not (ROOT / "data" / "sample" / "data" / "nyu2_test.csv").is_file():
        pytest.skip("embedded sample data/sample not present")
    ex = explore(source="densedepth", path="data/sample", current=ckpts["current"], device="cpu", flip_average=False,
                 panel_width=64, protocol="densedepth")
    f = ex.source[0]
    xym = [(x, y, float(f.depth[y, x])) for x, y in ((100, 100), (320, 240), (500, 380))]  # the true distances
    raw_metrics = ex.metrics("current", 0)
    for x, y, m in xym:
        ex.add_known(x, y, m)
    want, got = _want(ex, "current", 0, xym), ex.calibration()
    assert got is not None and got.fit == want.fit and got.depth.shape == (480, 640)
    np.testing.assert_array_equal(got.depth, want.depth)
    cal_metrics = ex.metrics("current", 0)
    assert cal_metrics["abs_rel"] != pytest.approx(raw_metrics["abs_rel"], rel=1e-3)
    assert ex.metrics("current", 0, calibrated=False) == raw_metrics
