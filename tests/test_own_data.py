"""The `own` profile: notebooks 01-04 fine-tune the sample model on a folder of your own RGB-D frames."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from _own_data import CAPTURE_SIZE, TUM_SCALE, write_nyu_tum_capture
from conftest import fresh_project, project_at
from depthlib.core.errors import ConfigError
from depthlib.models.checkpoint import load_checkpoint
from depthlib.notebook.pipeline import main, make_plan

SAMPLE_MODEL = "checkpoints/sample/finetune/best.pt"   # what `make pipeline` writes; own.toml's init_from
# How much worse "current" may read than "previous" on the held-out frames and still count as no worse. Both run
# through 04's one evaluation path (float32 predictions, float64 metric sums); when best.pt holds the starting
# weights (epoch 0) the two are bit-identical. The bound is the float32 error a prediction can carry (a conv output
# sums up to 3*3*192 ~ 1.7e3 products: 1.7e3 * 2**-24 ~ 1e-4 relative), which moves AbsRel = mean(|p - g| / g) by
# at most ~1e-4. It softens no real change: when an epoch beat the start, the difference is the fine-tuning's own
# (own.toml's old defaults, BatchNorm statistics updating: 0.186 -> 0.264 here; benchmarks/RESULTS_own_data.md).
NO_WORSE_TOL = 1e-4


def test_own_profile_resolves_to_a_fine_tuning_run() -> None:
    plan = make_plan("own")
    assert list(plan.steps) == ["01_data_prep", "03_finetune", "04_evaluate", "05_explore"]   # no training from scratch
    prep, ft, ev = plan.steps["01_data_prep"], plan.steps["03_finetune"], plan.steps["04_evaluate"]
    assert prep["source"] == "pairs" and "depth_scale" in prep["source_options"]
    assert ft["init_from"] == "checkpoints/sample/finetune/best.pt" == ev["previous"]   # what `make pipeline` writes
    assert ft["border_crop"] == "none" and ev["protocol"] == "no_crop_valid"
    assert all(str(v).find("sample.h5") < 0 for step in plan.steps.values() for v in step.values())
    assert make_plan("own", only=["02"]).steps == {}                 # a skipped notebook never runs


def test_pipeline_skip_table_is_checked(tmp_path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('[pipeline]\nskip = ["02_trian"]\n')
    with pytest.raises(ConfigError, match="skip must list notebooks"):
        make_plan(str(p))
    p.write_text('[pipeline]\nonly = ["02_train"]\n')
    with pytest.raises(ConfigError, match=r"\[pipeline\] has unknown key"):
        make_plan(str(p))


@pytest.mark.slow
@pytest.mark.timeout(2400)   # the shared sample pipeline may run in this test's setup
def test_own_profile_fine_tunes_the_sample_model_on_a_tum_style_folder(tmp_path, sample_project, sample_dir,
                                                                       capsys) -> None:
    """The README's own-data run from the model `make pipeline` makes: held-out frames are no worse afterwards.

    The capture is real NYU frames as a TUM dump (1/5000 m PNGs, 320x240); its held-out frames (a bedroom and a
    basement with raw Kinect holes) were never trained on by the sample model. Only what the README has a user edit
    in own.toml is set: the folder, its layout and unit, and a split file.
    """
    root = fresh_project(tmp_path / "project")
    (root / SAMPLE_MODEL).parent.mkdir(parents=True)
    shutil.copy2(sample_project / SAMPLE_MODEL, root / SAMPLE_MODEL)
    capture = write_nyu_tum_capture(root / "data" / "own", sample_dir)
    sets = [f"01:{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in capture.items()]
    with project_at(root):
        assert main(["--profile", "own", "--only", "01", "03", "04", *(a for s in sets for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    plan = make_plan("own")
    prep, ft, ev = plan.steps["01_data_prep"], plan.steps["03_finetune"], plan.steps["04_evaluate"]

    assert sorted(p.name for p in (root / "runs/own").iterdir()) == ["01_data_prep.ipynb", "03_finetune.ipynb",
                                                                     "04_evaluate.ipynb"]
    with h5py.File(root / prep["prepared_path"], "r") as f:
        assert (f.attrs["height"], f.attrs["width"]) == CAPTURE_SIZE[::-1] and f.attrs["depth_unit_m"] == TUM_SCALE
        splits = json.loads(f.attrs["split_names"])
        test_rows = np.nonzero(f["split_id"][()] == splits.index("test"))[0]
        test_valid = int(sum(f["valid"][int(r)].sum() for r in test_rows))
        scenes = [s.decode() for s in f["scene_names"][()]]
        assert sorted({scenes[i] for i in f["scene_id"][()][test_rows]}) == ["basement", "run00058"]

    # 03 validated the starting weights as epoch 0; best.pt is them unless an epoch beat them, and then says so
    start, best = load_checkpoint(root / SAMPLE_MODEL), load_checkpoint(root / ft["out_dir"] / "best.pt")
    assert best["arch"] == start["arch"] and best["model_config"] == start["model_config"]
    assert best["extra"]["train_config"]["data"] == {"image_size": [192, 256], "border_crop": "none"}
    history = json.loads((root / ft["out_dir"] / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == list(range(ft["epochs"] + 1))
    unchanged = all(torch.equal(best["model"][k], start["model"][k]) for k in start["model"])
    assert unchanged == (history["best_epoch"] == 0) == ("never beat the weights it started from" in out)
    last = load_checkpoint(root / ft["out_dir"] / "last.pt")["model"]           # the epochs did move the weights
    assert not all(torch.equal(last[k], start["model"][k]) for k in start["model"])

    metrics = json.loads((root / ev["metrics_dir"] / "metrics.json").read_text())
    assert set(metrics) == {"previous", "current", "mean-depth baseline"}
    for m in metrics.values():
        assert m["protocol"] == "no_crop_valid" and m["metrics"]["n_images"] == len(test_rows) == 8
        assert m["metrics"]["n_pixels"] == test_valid < 8 * CAPTURE_SIZE[0] * CAPTURE_SIZE[1]   # holes out, no crop
    before, after = metrics["previous"]["metrics"], metrics["current"]["metrics"]
    assert after["abs_rel"] <= before["abs_rel"] + NO_WORSE_TOL, (
        f"fine-tuning made the held-out frames worse: AbsRel {before['abs_rel']:.4f} -> {after['abs_rel']:.4f}, "
        f"δ1 {before['delta1']:.3f} -> {after['delta1']:.3f} (best.pt from epoch {history['best_epoch']})")
    # 04's headline, streamed by the pipeline as it ran, gives the verdict the numbers give
    assert f"previous: AbsRel {after['abs_rel']:.3f} vs {before['abs_rel']:.3f}" in out
    assert f"current beats mean-depth baseline: AbsRel {after['abs_rel']:.3f}" in out
    for name in ("01_frames.png", "03_finetune_curves.png", "04_predictions_test.png", "milestone.png", "metrics.md"):
        assert (root / ev["metrics_dir"] / name).is_file(), name

    from depthlib.cli import predict_images

    rgb = sorted((root / "data/own").glob("*/rgb/*.png"))[0]
    pred = predict_images([str(rgb)], checkpoint=str(root / ft["out_dir"] / "best.pt"), out=str(tmp_path / "pred"),
                          device="cpu", progress=False)
    depth = np.asarray(Image.open(pred[0]))
    assert depth.shape == CAPTURE_SIZE[::-1] and 100 < np.median(depth) < 10000     # millimetres, the image's own size
