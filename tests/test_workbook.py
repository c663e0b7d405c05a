"""The notebook steps in depthlib.notebook.workbook, on real raw-depth frames and hand-made data."""

from __future__ import annotations

import pytest
import torch

from depthlib.core.config import DataConfig
from depthlib.core.errors import ConfigError, DataError
from depthlib.data import open_source
from depthlib.models.predict import predict
from depthlib.notebook import workbook


@pytest.fixture(scope="module")
def raw(sample_dir):
    return open_source("bts", sample_dir / "raw_depth")


def test_prepared_raw_frames_keep_their_holes_masked(raw, tmp_path):
    labels = ["train", "val", "train"]
    prep = workbook.prepare(raw, str(tmp_path / "raw.h5"), labels=labels)
    sets = workbook.training_sets(prep.path, DataConfig(image_size=(96, 128), border_crop="none"))
    assert len(sets["train"]) == 2 and len(sets["val"]) == 1
    s = sets["val"][0]
    assert s["image"].shape == (3, 96, 128) and not s["valid"].all() and (s["depth"][~s["valid"]] == 0).all()
    with pytest.raises(DataError, match="no hole-free frames"):
        workbook.subset(sets["train"], "hole_free")
    with pytest.raises(DataError, match="unknown subset"):
        workbook.subset(sets["train"], "some")


def test_filled_source_is_dense_and_keeps_measured_depth(raw):
    filled = workbook.with_holes_filled(raw, "nearest")
    f0, g0 = raw[0], filled[0]
    assert g0.valid.all() and not f0.valid.all()
    assert torch.equal(torch.from_numpy(g0.depth[f0.valid]), torch.from_numpy(f0.depth[f0.valid]))
    assert workbook.with_holes_filled(raw, "none") is raw
    with pytest.raises(DataError, match="unknown hole_fill"):
        workbook.with_holes_filled(raw, "magic")


def test_mean_depth_baseline_predicts_the_per_pixel_mean():
    a = {"image": torch.rand(3, 8, 8), "depth": torch.full((1, 8, 8), 2.0), "valid": torch.ones(1, 8, 8, dtype=torch.bool)}
    b = {"image": torch.rand(3, 8, 8), "depth": torch.full((1, 8, 8), 4.0), "valid": torch.ones(1, 8, 8, dtype=torch.bool)}
    b["valid"][0, :4] = False  # only frame a counts in the top half
    m = workbook.mean_depth_baseline([a, b])
    d = predict(m, torch.rand(1, 3, 8, 8), flip_average=False)[0, 0]
    # the map travels at half resolution like every model's output: only the row at the seam is blended
    assert torch.allclose(d[:3], torch.full((3, 8), 2.0)) and torch.allclose(d[5:], torch.full((3, 8), 3.0))


def test_update_readme_rewrites_only_the_generated_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{workbook.README_START}\nold\n{workbook.README_END}\noutro\n")
    workbook.update_readme("| a | b |", "figures/x/milestone.png", readme=str(readme))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old" not in text
    assert "| a | b |" in text and "![milestone](figures/x/milestone.png)" in text and "Relative depth" not in text
    workbook.update_readme("| a | b |", "f.png", relative_md="| r | s |", relative="median", readme=str(readme))
    text = readme.read_text()
    assert text.index("| a | b |") < text.index("**Relative depth** (median aligned per image)") < text.index("| r | s |")
    assert workbook.update_readme("x", "y.png", readme=str(readme), enabled=False) is None and "| a | b |" in readme.read_text()
    readme.write_text("no markers")
    with pytest.raises(DataError, match="marker"):
        workbook.update_readme("t", "f.png", readme=str(readme))


def test_spread_and_selection_record(sample_dir):
    assert workbook.spread(3, 5) == [0, 1, 2] and workbook.spread(10, 3) == [0, 4, 9]
    assert len(workbook.samples([1, 2], 3)) == 2 and workbook.all_finite([1.0, 2.0]) and not workbook.all_finite([1.0, float("nan")])
    src = open_source("densedepth", sample_dir)
    idx, rec = workbook.select(src, scenes=["run00058"], stride=2)
    assert [src.names[i] for i in idx] == ["00058", "00060", "00062"] and rec["stride"] == 2 and rec["n_selected"] == 3


def test_each_evaluation_progress_bar_names_its_model(capsys):
    from depthlib.evaluation.protocols import get_protocol
    from test_evaluate import SMALL, FakeModel, ListDataset

    ds, proto = ListDataset(2, holes=False), get_protocol("eigen").rescaled(*SMALL)
    out = workbook.evaluate_all({"previous": FakeModel(), "current": FakeModel()}, ds, protocol=proto, device="cpu")
    assert set(out) == {"previous", "current"}
    err = capsys.readouterr().err
    assert f"evaluate previous [{proto.name}]" in err and f"evaluate current [{proto.name}]" in err
    workbook.evaluate_all({"current": FakeModel()}, ds, protocol=proto, device="cpu", alignment="median")
    assert f"evaluate current, median aligned [{proto.name}]" in capsys.readouterr().err


def test_the_metric_and_relative_tables_come_from_one_prediction_per_frame(capsys):
    # 04 asks for its metric and relative tables together: the numbers are those of two evaluate_all calls, from
    # half the network runs (once four: each table predicted every frame again, flip averaging doubling each).
    from depthlib.evaluation.protocols import get_protocol
    from test_evaluate import SMALL, FakeModel, ListDataset

    ds, proto = ListDataset(3, holes=True), get_protocol("eigen").rescaled(*SMALL)
    a, b = FakeModel(), FakeModel()
    both = workbook.evaluate_tables({"current": a}, ds, ("none", "scale_shift"), protocol=proto, flip_average=True,
                                    device="cpu", batch_size=2)
    once = sum(a.batch_sizes)
    apart = {al: workbook.evaluate_all({"current": b}, ds, protocol=proto, flip_average=True, device="cpu",
                                       batch_size=2, alignment=al)["current"] for al in ("none", "scale_shift")}
    assert once == 2 * len(ds) and sum(b.batch_sizes) == 2 * once  # flip averaging: 2 runs a frame, per pass
    for al in ("none", "scale_shift"):
        got = both[al]["current"]
        assert got.alignment == al and got.metrics == apart[al].metrics and got.per_image == apart[al].per_image
    assert both["none"]["current"].metrics != both["scale_shift"]["current"].metrics
    assert f"evaluate current, scale_shift aligned [{proto.name}]" in capsys.readouterr().err


def test_settings_a_run_could_not_use_are_refused_before_training():
    # A border crop predict cannot replay was once found out only when 04 loaded the finished checkpoint; a
    # control with 0 epochs trained nothing and 04 failed on its missing best.pt.
    assert workbook.data_settings(DataConfig(image_size=(64, 96), border_crop="none")) == {
        "image_size": [64, 96], "border_crop": "none"}
    with pytest.raises(ConfigError, match=r"border_crop='detect' cannot be replayed at inference.*Fix: border_crop='nyu'"):
        workbook.data_settings(DataConfig(border_crop="detect"))
    with pytest.raises(ConfigError, match=r"control_epochs=0\. Fix: control_epochs >= 1"):
        workbook.train_scratch_control("unet", {}, None, None, None, out_dir="checkpoints/x/scratch", epochs=0, lr=1e-3)


def test_the_scratch_control_says_it_starts(tmp_path, capsys):
    # `--set 02:epochs=1 --fresh` went from "epoch 1/1" straight to "epoch 1/20" of the control without a word.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _train_helpers import SynthDepth, cfg

    h = workbook.train_scratch_control("unet", {"width": 4, "depth": 2}, SynthDepth(4, hw=32), None,
                                       cfg(tmp_path / "train", epochs=1), out_dir=str(tmp_path / "scratch"), epochs=2,
                                       lr=1e-3)
    out = capsys.readouterr().out
    assert len(h) == 2
    assert out.startswith(f"scratch control: the same architecture from random weights, 2 epochs at lr 0.001, into "
                          f"{tmp_path / 'scratch'}\n")
