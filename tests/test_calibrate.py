"""depthlib.inference.calibrate: known distances parsed, checked against the image and the map, and fitted; the
fits are compared with numpy's least squares or a closed form worked out here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from depthlib.core.errors import ConfigError, DataError
from depthlib.inference.calibrate import (KnownPoint, calibrate, fit_known, loo_error, parse_known, read_known_file,
                                          read_points, residual_table)


def test_parse_known_and_its_refusals() -> None:
    assert parse_known("10,20.5,1.5") == KnownPoint(10.0, 20.5, 1.5, "--known 10,20.5,1.5")
    for bad, why in (("10,20", "needs 3 comma-separated numbers"), ("10,20,0", "must be positive metres"),
                     ("10,20,-2", "must be positive metres"), ("a,b,c", "must be numbers"),
                     ("10,nan,2", "finite")):
        with pytest.raises(ConfigError, match=f"--known {bad}: .*{why}"):
            parse_known(bad)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_known_file_matches_by_name_or_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b, c = tmp_path / "photos" / "a.jpg", tmp_path / "photos" / "b.jpg", tmp_path / "c.jpg"
    f = _csv(tmp_path / "pts.csv", "\ufeffimage, x, y, metres\na.jpg,1,2,1.5\n\nphotos/b.jpg,3,4,2\na.jpg,5,6,3\n")
    pts = read_known_file("pts.csv", [a, b, c])
    assert pts == {a: [KnownPoint(1, 2, 1.5, "pts.csv row 2"), KnownPoint(5, 6, 3, "pts.csv row 5")],
                   b: [KnownPoint(3, 4, 2, "pts.csv row 4")]}
    assert read_known_file(f, [a, b, c])[b][0].metres == 2.0


@pytest.mark.parametrize("text, why", [
    ("img,x,y,m\n", "the header must be 'image,x,y,metres'"),
    ("", "--known-file is empty"),
    ("image,x,y,metres\na.jpg,1,2\n", "row 2 has 3 fields, not 4"),
    ("image,x,y,metres\na.jpg,1,2,3\na.jpg,1,two,3\n", "row 3: X, Y and METRES must be numbers"),
    ("image,x,y,metres\na.jpg,1,2,0\n", "row 2: the distance must be positive metres, got 0"),
    ("image,x,y,metres\nzz.jpg,1,2,3\n", "row 2: image 'zz.jpg' is not among the 1 input image"),
])
def test_known_file_refusals_name_the_file_and_row(tmp_path: Path, text: str, why: str) -> None:
    f = _csv(tmp_path / "pts.csv", text)
    with pytest.raises(DataError, match=why) as e:
        read_known_file(f, [tmp_path / "a.jpg"])
    assert str(f) in str(e.value)


def test_a_missing_known_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--known-file cannot be read"):
        read_known_file(tmp_path / "nope.csv", [])


def test_points_read_the_nearest_pixel_and_bad_ones_are_refused() -> None:
    depth = np.arange(12, dtype=np.float32).reshape(3, 4) + 1.0     # 1..12, W=4, H=3
    pts = [KnownPoint(0, 0, 1, "p0"), KnownPoint(3.4, 2.49, 1, "p1"), KnownPoint(-0.5, 1, 1, "p2")]
    np.testing.assert_array_equal(read_points(depth, pts, "im.png"), [1.0, 12.0, 5.0])
    for x, y in ((3.5, 0), (0, -0.6), (10, 10)):
        with pytest.raises(DataError, match=r"im.png: q: pixel .* is outside the image's 4x3 pixels"):
            read_points(depth, [KnownPoint(x, y, 1, "q")], "im.png")
    for bad in (0.0, -1.0, np.nan, np.inf):
        d = depth.copy()
        d[1, 2] = bad
        with pytest.raises(DataError, match=r"q: the predicted map has no valid depth at pixel \(2, 1\)"):
            read_points(d, [KnownPoint(2, 1, 1, "q")], "im.png")


def test_one_and_two_points_give_a_scale() -> None:
    assert fit_known(np.array([2.0]), np.array([3.0])).scale == pytest.approx(1.5)
    # log depth: the geometric mean of the ratios 2 and 4
    f = fit_known(np.array([1.0, 2.0]), np.array([2.0, 8.0]))
    assert (f.scale, f.two_params, f.space) == (pytest.approx(math.sqrt(8)), False, "log")
    # inverse depth: 1/m = c/p by least squares, c = (1*0.5 + 0.5*0.125) / (1 + 0.25) = 0.45, scale 1/c
    f = fit_known(np.array([1.0, 2.0]), np.array([2.0, 8.0]), scale_space="inverse")
    assert f.scale == pytest.approx(1 / 0.45) and not f.two_params
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_known(np.array([1.0, 2.0]), np.array([2.0, 8.0]), second=True)
    with pytest.raises(ConfigError, match="space 'depth' is not one of"):
        fit_known(np.array([1.0]), np.array([2.0]), space="depth")


RNG = np.random.default_rng(0)
P = np.array([0.8, 1.3, 2.1, 2.9, 4.2])
M = P * 1.7 * np.exp(RNG.normal(0, 0.1, P.size))


def test_scale_fits_match_numpy_least_squares() -> None:
    (a,), *_ = np.linalg.lstsq(np.ones((P.size, 1)), np.log(M) - np.log(P), rcond=None)
    assert fit_known(P, M, second=False).scale == pytest.approx(math.exp(a), rel=1e-12)
    (c,), *_ = np.linalg.lstsq((1 / P)[:, None], 1 / M, rcond=None)
    assert fit_known(P, M, scale_space="inverse", second=False).scale == pytest.approx(1 / c, rel=1e-12)


def test_two_parameter_fits_match_numpy_least_squares() -> None:
    (b, a), *_ = np.linalg.lstsq(np.stack([np.log(P), np.ones(P.size)], 1), np.log(M), rcond=None)
    f = fit_known(P, M, space="log", second=True)
    assert (f.scale, f.power) == (pytest.approx(math.exp(a), rel=1e-12), pytest.approx(b, rel=1e-12))
    np.testing.assert_allclose(f.apply(P), np.exp(a) * P ** b, rtol=1e-12)
    (c, t), *_ = np.linalg.lstsq(np.stack([1 / P, np.ones(P.size)], 1), 1 / M, rcond=None)
    f = fit_known(P, M, second=True)                      # inverse depth is the default space
    assert (f.space, f.scale, f.shift) == ("inverse", pytest.approx(1 / c, rel=1e-12), pytest.approx(t, rel=1e-12))
    np.testing.assert_allclose(f.apply(P), 1 / (c / P + t), rtol=1e-12)


def test_leave_one_out_error_by_hand() -> None:
    # predicted 1, 1, 1; given 1, 2, 4. Leaving out 1: scale sqrt(8) -> error 1.8284; out 2: sqrt(4) = 2 -> 0;
    # out 4: sqrt(2) -> |1.4142 - 4| / 4 = 0.6464. Mean 0.8249.
    got = loo_error(np.ones(3), np.array([1.0, 2.0, 4.0]), lambda p, m: fit_known(p, m, second=False))
    assert got == pytest.approx((math.sqrt(8) - 1 + (4 - math.sqrt(2)) / 4) / 3)


def test_the_shift_is_kept_only_from_4_points_and_where_it_lowers_the_leave_one_out_error() -> None:
    p = np.array([0.5, 1.0, 2.0, 4.0])
    exact_shift = 1 / (0.5 / p + 0.1)             # 1/m = 0.5/p + 0.1 exactly: the shift predicts every point
    f = fit_known(p, exact_shift)
    assert f.two_params and (f.space, f.scale, f.shift) == ("inverse", pytest.approx(2.0), pytest.approx(0.1))
    assert f.note.startswith("shift used: leave-one-out error 0.0 % with it")
    three = fit_known(p[:3], exact_shift[:3])     # 3 points: a scale (in log depth), no leave-one-out
    assert not three.two_params and three.note == "" and three.space == "log"
    assert fit_known(p[:3], exact_shift[:3], min_points=3).two_params
    noisy = 2 * p * np.array([1.05, 0.95, 1.0, 1.02])  # a scale with noise
    f = fit_known(p, noisy)
    e1 = loo_error(p, noisy, lambda a, b: fit_known(a, b, second=False))
    e2 = loo_error(p, noisy, lambda a, b: fit_known(a, b, second=True))
    assert e1 < e2 and not f.two_params and f.space == "log" and f.scale == pytest.approx(
        math.exp(np.mean(np.log(noisy / p))), rel=1e-12)
    assert f.note == f"shift not used: leave-one-out error {100 * e2:.1f} % with it, {100 * e1:.1f} % without"


def test_a_shift_that_would_make_the_map_negative_is_not_used() -> None:
    p = np.array([1.0, 2.0, 3.0, 4.0])
    m = 1 / (1 / p - 0.2)                          # t = -0.2: fine up to 5 m, negative beyond
    assert fit_known(p, m, second=True).shift == pytest.approx(-0.2)
    f = fit_known(p, m, span=(0.5, 6.0))
    assert not f.two_params and "makes some depths of the map non-positive" in f.note
    assert f.scale == pytest.approx(fit_known(p, m, second=False).scale, rel=1e-12)


def test_calibrate_rescales_the_map_and_tabulates_residuals() -> None:
    depth = np.linspace(1.0, 3.0, 48, dtype=np.float32).reshape(6, 8)
    pts = [KnownPoint(1, 1, 2.0, "a"), KnownPoint(6, 4, 5.0, "b"), KnownPoint(3, 5, 4.5, "c")]
    p = np.array([depth[1, 1], depth[4, 6], depth[5, 3]], dtype=np.float64)
    m = np.array([2.0, 5.0, 4.5])
    cal = calibrate(depth, pts, "im.png")           # 3 points: a scale
    s = math.exp(np.mean(np.log(m / p)))
    assert cal.fit.scale == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(cal.depth, depth * s, rtol=1e-6)
    assert cal.depth.dtype == np.float32
    np.testing.assert_allclose(cal.rows, np.stack([[1, 6, 3], [1, 4, 5], m, p, p * s], 1), rtol=1e-12)
    lines = residual_table(cal, "im.png").splitlines()
    assert lines[0] == f"known distances in im.png: scale {s:.4f} fitted in log depth from 3 points"
    assert lines[1].split() == ["x", "y", "given", "m", "predicted", "m", "fitted", "m", "error", "m", "error", "%"]
    x, y, given, pred, fitted, err, pct = lines[2].split()
    assert (x, y, float(given), float(pred), float(fitted)) == ("1", "1", 2.0, round(p[0], 3), round(p[0] * s, 3))
    assert float(err) == round(p[0] * s - 2.0, 3) and float(pct) == round(100 * (p[0] * s - 2.0) / 2.0, 1)


def test_known_points_from_the_options(tmp_path: Path) -> None:
    from depthlib.inference.calibrate import check_inside, known_points

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    assert known_points([a], ["1,2,3", "4,5,6"]) == {a: [KnownPoint(1, 2, 3, "--known 1,2,3"),
                                                         KnownPoint(4, 5, 6, "--known 4,5,6")]}
    assert known_points([a, b]) == {}
    with pytest.raises(ConfigError, match="--known is for one input image, and 2 were given"):
        known_points([a, b], ["1,2,3"])
    f = _csv(tmp_path / "p.csv", "image,x,y,metres\nb.jpg,1,2,3\n")
    assert known_points([a, b], known_file=f) == {b: [KnownPoint(1, 2, 3, "p.csv row 2")]}
    with pytest.raises(ConfigError, match="--known and --known-file both give known distances"):
        known_points([a], ["1,2,3"], f)
    check_inside([KnownPoint(639.4, 479.4, 1, "p")], 640, 480, a)
    with pytest.raises(DataError, match=r"a.jpg: p: pixel \(639.5, 0\) is outside the image's 640x480 pixels"):
        check_inside([KnownPoint(639.5, 0, 1, "p")], 640, 480, a)
