"""The lens measurement (issue #22, 04's lens section): the zoom of a frame, the ratio / AbsRel / worst drift, the
one-frame figure and the reader of the committed lens table, on synthetic frames with hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlib.core.errors import ConfigError, DataError
from depthlib.evaluation import lens
from depthlib.notebook.pipeline import make_plan, notebook_parameters

ROOT = Path(__file__).resolve().parent.parent


def _frame(depth: np.ndarray, fx: float = 100.0, name: str = "f") -> dict:
    h, w = depth.shape
    return {"image": torch.full((3, h, w), 0.5), "depth": torch.from_numpy(depth.astype(np.float32))[None],
            "valid": torch.from_numpy(depth > 0)[None], "fx": fx, "name": name}


def test_the_zoom_crops_the_centre_and_multiplies_the_focal_length():
    # 640x480 at z = 1.5: crop 427 x 320 (640 / 1.5 = 426.67 rounds up), at (106, 80)
    assert lens.zoom_box(480, 640, 1.5) == (80, 106, 320, 427)
    assert lens.zoom_box(480, 640, 2.0) == (120, 160, 240, 320)
    # 6x8 at z = 2: rows 1-3, cols 2-5, each pixel repeated 2x2 (nearest), its hole too; fx 100 -> 200
    depth = (1 + np.arange(6)[:, None] * 10 + np.arange(8)[None, :]).astype(np.float32)
    depth[2, 3] = 0.0   # a hole inside the crop
    s = _frame(depth)
    s["image"] = torch.zeros(3, 6, 8)
    s["image"][:, 1:4, 2:6] = 1.0   # white inside the crop, black outside
    z = lens.zoom_sample(s, 2.0)
    crop = depth[1:4, 2:6]
    assert np.array_equal(z["depth"][0].numpy(), np.repeat(np.repeat(crop, 2, 0), 2, 1))
    assert np.array_equal(z["valid"][0].numpy(), np.repeat(np.repeat(crop > 0, 2, 0), 2, 1))
    assert torch.all(z["image"] == 1.0)   # only the crop's pixels, however bicubic weighs them
    assert z["fx"] == pytest.approx(200.0) and z["name"] == "f"
    assert math.isnan(lens.zoom_sample({**s, "fx": math.nan}, 2.0)["fx"])   # unknown stays unknown
    one = lens.zoom_sample(s, 1.0)
    assert torch.equal(one["depth"], s["depth"]) and torch.equal(one["image"], s["image"]) and one["fx"] == 100.0


def test_zooms_must_include_one_and_never_widen():
    assert lens.check_zooms([1, 1.5, 2]) == (1.0, 1.5, 2.0)
    for bad in ([], [1.5, 2.0], [1.0, 0.5], [1.0, math.inf]):
        with pytest.raises(ConfigError, match="lens_zooms"):
            lens.check_zooms(bad)


def test_ratio_and_abs_rel_count_only_ground_truth_in_range():
    gt = np.array([[1.0, 2.0], [0.0, 12.0]])     # a hole and a depth past 10 m: not counted
    pred = np.array([[2.0, 3.0], [5.0, 5.0]])
    ratio, rel = lens.ratio_abs_rel(pred=pred, depth=gt)
    assert ratio == pytest.approx(1.75)           # median of 2 / 1 and 3 / 2
    assert rel == pytest.approx(0.75)             # mean of 1 and 0.5
    assert all(math.isnan(v) for v in lens.ratio_abs_rel(pred=pred, depth=np.zeros((2, 2))))


def test_a_model_blind_to_the_lens_drifts_by_ln_z_and_the_truth_not_at_all():
    frames = [_frame(np.full((12, 16), d), name=str(d)) for d in (1.0, 2.0, 4.0)]
    truth = lens.frame_scores(lambda s: s["depth"][0], frames)
    per_z = lens.lens_scores([f for _, f in truth])
    assert all(per_z[z] == {"ratio": 1.0, "abs_rel": 0.0} for z in lens.ZOOMS) and lens.worst_drift(per_z) == 0.0
    # a model reading apparent size alone: everything z times nearer
    blind = lens.lens_scores([f for _, f in lens.frame_scores(lambda s: s["depth"][0] * 100.0 / s["fx"], frames)])
    assert [blind[z]["ratio"] for z in lens.ZOOMS] == pytest.approx([1.0, 1 / 1.5, 0.5])
    assert [blind[z]["abs_rel"] for z in lens.ZOOMS] == pytest.approx([0.0, 1 / 3, 0.5])
    assert lens.worst_drift(blind) == pytest.approx(math.log(2))
    # a constant 2 m over rooms at 1, 2 and 4 m: ratios 2, 1, 0.5 (median 1), AbsRels 1, 0, 0.5 (mean 0.5)
    const = lens.lens_scores([f for _, f in lens.frame_scores(lambda s: torch.full((12, 16), 2.0), frames)])
    assert const[1.0] == {"ratio": pytest.approx(1.0), "abs_rel": pytest.approx(0.5)}


class _FakeModel(torch.nn.Module):
    """Stands in for a loaded model; lens.predict is replaced, so only its canonical_fx matters."""

    def __init__(self, canonical_fx: float | None = None) -> None:
        super().__init__()
        self.canonical_fx = canonical_fx


def test_measure_lens_predicts_each_zoom_with_its_focal_length(monkeypatch):
    calls = []

    def fake_predict(model, images, *, flip_average, fx):
        calls.append((tuple(images.shape), flip_average, fx))
        return torch.full((1, 1, *images.shape[-2:]), 3.0)

    monkeypatch.setattr(lens, "predict", fake_predict)
    frames = [_frame(np.full((12, 16), 2.0), fx=50.0)]
    res = lens.measure_lens(_FakeModel(), frames, [1.0, 2.0], flip_average=False)
    assert calls == [((1, 3, 12, 16), False, 50.0), ((1, 3, 12, 16), False, 100.0)]
    assert res.per_z == {1.0: {"ratio": 1.5, "abs_rel": 0.5}, 2.0: {"ratio": 1.5, "abs_rel": 0.5}} and res.drift == 0.0
    assert res.frames == [("f", {1.0: (1.5, 0.5), 2.0: (1.5, 0.5)})]
    views = lens.zoom_views(_FakeModel(), frames[0], [1.0, 2.0])
    assert [(v["z"], v["ratio"], v["pred"].shape) for v in views] == [(1.0, 1.5, (12, 16)), (2.0, 1.5, (12, 16))]
    # a model trained in the canonical camera space cannot be measured on frames of unknown focal length
    with pytest.raises(DataError, match="no focal length"):
        lens.measure_lens(_FakeModel(canonical_fx=200.0), [_frame(np.full((12, 16), 2.0), fx=math.nan)])


def test_the_figure_titles_each_zoom_with_its_ratio_on_one_colour_scale(tmp_path):
    from PIL import Image

    from depthlib.figures.lens import zoom_figure

    depth = np.linspace(1, 4, 48 * 64).reshape(48, 64).astype(np.float32)
    views = [{"z": z, "image": torch.rand(3, 48, 64), "depth": torch.from_numpy(depth), "valid": None,
              "pred": torch.from_numpy(depth / z), "ratio": 1 / z} for z in (1.0, 1.5, 2.0)]
    fig = zoom_figure(views, path=tmp_path / "sub" / "04_lens.png", suptitle="one frame")
    assert Image.open(tmp_path / "sub" / "04_lens.png").size[0] > 400
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert "z = 1.5" in titles[1] and "0.667" in titles[1] and "0.500" in titles[2], titles
    preds = [ax.images[0] for ax in fig.axes[3:6]]
    assert len({im.get_clim() for im in preds}) == 1   # one colour scale for the three predictions
    assert any(ax.get_ylabel() == "depth (m)" for ax in fig.axes[6:]), "the colour bar says metres"


_RESULTS = """# The lens table

Preamble.

## The sample's 5 held-out test frames (a bedroom)

| recipe | seed | ratio z=1 | AbsRel z=1 | ratio z=2 | AbsRel z=2 | worst drift |
|---|---|---|---|---|---|---|
| (a) today's recipe | 0 | 0.941 | 0.145 | 0.852 | 0.201 | 0.099 |
| **(a) today's recipe** | median | **0.895** | **0.151** | **0.837** | **0.201** | **0.070** |
| **(b) canonical** | median | **0.707** | **0.294** | **1.246** | **0.295** | **0.567** |

## Notes (by hand)

A median of nothing | not a row.
"""


def test_the_table_reader_keeps_the_median_rows_and_says_when_the_file_is_missing(tmp_path):
    path = tmp_path / "RESULTS_lens.md"
    path.write_text(_RESULTS)
    t = lens.read_lens_table(path)
    assert t.note == "" and t.header == lens.table_header([1.0, 2.0])
    assert [c for _, c in t.rows] == [["(a) today's recipe", "median", "0.895", "0.151", "0.837", "0.201", "0.070"],
                                      ["(b) canonical", "median", "0.707", "0.294", "1.246", "0.295", "0.567"]]
    live = lens.LensResult(per_z={1.0: {"ratio": 0.9, "abs_rel": 0.15}, 2.0: {"ratio": 0.8, "abs_rel": 0.2}},
                           frames=[("f", {})] * 5)
    md = lens.lens_markdown(t, live, label="current")
    table_lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table_lines) == 5   # one table: header, rule, two committed rows, the live row
    assert table_lines[-1] == "| current | live, 5 frames | 0.900 | 0.150 | 0.800 | 0.200 | 0.118 |"
    # other zooms than the file's: the live row in a table of its own
    other = lens.LensResult(per_z={1.0: {"ratio": 0.9, "abs_rel": 0.15}}, frames=[("f", {})])
    assert lens.lens_markdown(t, other).count("| recipe |") == 2

    gone = lens.read_lens_table(tmp_path / "nothing.md")
    assert gone.rows == [] and "nothing.md is missing" in gone.note and "bench_lens.py" in gone.note
    md = lens.lens_markdown(gone, live)
    assert md.startswith(gone.note) and "| current model | live, 5 frames |" in md
    (tmp_path / "other.md").write_text("# no table\n")
    assert "no median rows" in lens.read_lens_table(tmp_path / "other.md").note


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "notebooks" / "profiles").glob("*.toml")))
def test_every_profile_gets_a_lens_section_that_runs(profile):
    # the notebook's defaults, as each profile leaves or sets them
    params = {**notebook_parameters(ROOT / "notebooks" / "04_evaluate.ipynb"), **make_plan(profile).steps["04_evaluate"]}
    assert lens.check_zooms(params["lens_zooms"]) == (1.0, 1.5, 2.0)
    assert lens.read_lens_table(params["lens_table"]).rows, params["lens_table"]   # the committed table, read
