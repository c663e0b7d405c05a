"""The `own` profile: notebooks 01-04 fine-tune the sample model on a folder of your own RGB-D frames."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from _own_data import TUM_SCALE, resized, write_tum_folder
from conftest import ROOT
from depthlib import workbook
from depthlib.checkpoint import load_checkpoint
from depthlib.config import DataConfig, TrainConfig
from depthlib.data import open_source
from depthlib.data.dataset import scene_hash, scene_split
from depthlib.errors import ConfigError
from depthlib.models import create_model
from depthlib.pipeline import make_plan, notebook_parameters, run
from depthlib.train import fit

OWN_SIZE = (320, 200)   # (W, H): 16:10, neither 640x480 nor 4:3
OWN_INPUT = [96, 160]   # (H, W) the model sees, multiples of 32 near 16:10


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


def _sample_model(tmp_path: Path) -> Path:
    """A small trained checkpoint made as the ci profile makes its model (CI has no checkpoints/sample)."""
    prep = {**notebook_parameters(ROOT / "notebooks/01_data_prep.ipynb"), **make_plan("ci", only=["01"]).steps["01_data_prep"]}
    train = {**notebook_parameters(ROOT / "notebooks/02_train.ipynb"), **make_plan("ci", only=["02"]).steps["02_train"]}
    src = open_source(prep["source"], prep["source_path"], **prep["source_options"])
    labels = workbook.split_labels(src, split_file=prep["split_file"])
    workbook.prepare(src, str(tmp_path / "ci.h5"), labels=labels)
    data_cfg = DataConfig(image_size=tuple(train["image_size"]), border_crop=train["border_crop"], seed=0)
    sets = workbook.training_sets(str(tmp_path / "ci.h5"), data_cfg)
    cfg = TrainConfig(epochs=1, batch_size=train["batch_size"], lr=train["lr"], loss=train["loss"], device="cpu", seed=0,
                      out_dir=str(tmp_path / "sample_model"), data=workbook.data_settings(data_cfg), progress=False)
    fit(create_model(train["model"], **train["model_kwargs"]), sets["train"], sets["val"], cfg)
    return tmp_path / "sample_model" / "best.pt"


def _own_folder(root: Path, sample_dir: Path, *, val_frac: float, test_frac: float, seed: int) -> dict[str, str]:
    """The sample frames as a TUM-style capture (1/5000 m PNGs, 320x200, one folder per scene) -> {scene: split}.

    Scene folders are named so that the profile's seeded scene hash sends each to the split the sample uses.
    """
    with (sample_dir / "splits.csv").open() as f:
        rows = list(csv.DictReader(f))
    wanted = {r["scene"]: r["split"] for r in rows}
    # scene_split sends the lowest-hashed scenes to test, the next ones to val: hand out names in that order
    pool = sorted((f"room{k:03d}" for k in range(1000)), key=lambda c: (scene_hash(c, seed), c))
    ranked = sorted(wanted, key=lambda s: (["test", "val", "train"].index(wanted[s]), s))
    names = dict(zip(ranked, pool))
    got = scene_split(list(names.values()), val_frac=val_frac, test_frac=test_frac, seed=seed)
    assert got == [wanted[s] for s in names], "the fractions do not give the sample's scene counts"
    dd = open_source("densedepth", str(sample_dir), split="test")
    index = {n: i for i, n in enumerate(dd.names)}
    frames = [(names[r["scene"]], *resized(dd[index[r["name"]]], OWN_SIZE, crop_rows=(40, 440))) for r in rows]
    write_tum_folder(root, frames)
    return {names[s]: split for s, split in wanted.items()}


@pytest.mark.slow
def test_own_profile_fine_tunes_the_sample_model_on_a_tum_style_folder(tmp_path, sample_dir) -> None:
    base = make_plan("own")
    prep = base.steps["01_data_prep"]
    fracs = {"val_frac": 0.125, "test_frac": 0.125}     # 1 of the sample's 8 scenes each, as in its split file
    split_of = _own_folder(tmp_path / "capture", sample_dir, seed=prep["seed"], **fracs)
    init = _sample_model(tmp_path)
    h5, figs, ft = tmp_path / "own.h5", tmp_path / "figures", tmp_path / "finetune"
    options = {"depth_scale": TUM_SCALE, "files": "*/associations.txt"}
    sets = {"01_data_prep": {"source_path": tmp_path / "capture", "source_options": options, **fracs},
            "03_finetune": {"init_from": init, "image_size": OWN_INPUT, "out_dir": ft, "epochs": 1},
            "04_evaluate": {"previous": init, "current": ft / "best.pt", "metrics_dir": figs}}
    overrides = [f"{nb}:{k}={str(v) if isinstance(v, Path) else v!r}"
                 for nb, kv in sets.items() for k, v in {**kv, "prepared_path": h5, "figure_dir": figs}.items()]
    plan = make_plan("own", only=["01", "03", "04"], overrides=overrides)
    assert plan.steps["01_data_prep"]["source"] == "pairs" and plan.steps["03_finetune"]["init_from"] == str(init)
    plan.run_dir = tmp_path / "run"
    run(plan, progress=False)

    assert sorted(p.name for p in plan.run_dir.iterdir()) == ["01_data_prep.ipynb", "03_finetune.ipynb", "04_evaluate.ipynb"]
    with h5py.File(h5, "r") as f:
        assert (f.attrs["height"], f.attrs["width"]) == OWN_SIZE[::-1] and f.attrs["depth_unit_m"] == TUM_SCALE
        splits = json.loads(f.attrs["split_names"])
        test_rows = np.nonzero(f["split_id"][()] == splits.index("test"))[0]
        test_valid = int(sum(f["valid"][int(r)].sum() for r in test_rows))
        scenes = [s.decode() for s in f["scene_names"][()]]
        assert sorted({split_of[scenes[i]] for i in f["scene_id"][()][test_rows]}) == ["test"]
    before, after = load_checkpoint(init), load_checkpoint(ft / "best.pt")
    assert after["arch"] == before["arch"] and after["model_config"] == before["model_config"]
    assert after["extra"]["train_config"]["data"] == {"image_size": OWN_INPUT, "border_crop": "none"}
    trained = load_checkpoint(ft / "last.pt")                 # fine-tuning moved the weights ...
    assert any(not np.array_equal(trained["model"][k].numpy(), before["model"][k].numpy()) for k in before["model"])
    history = json.loads((ft / "history.json").read_text())  # ... and best.pt is the start unless an epoch beat it
    assert history["epochs"][0]["epoch"] == 0
    kept = all(np.array_equal(after["model"][k].numpy(), before["model"][k].numpy()) for k in before["model"])
    assert kept == (history["best_epoch"] == 0), history["best_epoch"]
    metrics = json.loads((figs / "metrics.json").read_text())
    assert set(metrics) == {"previous", "current", "mean-depth baseline"}
    for m in metrics.values():
        assert m["protocol"] == "no_crop_valid" and m["metrics"]["n_images"] == len(test_rows) == 5
        assert m["metrics"]["n_pixels"] == test_valid < 5 * OWN_SIZE[0] * OWN_SIZE[1]   # holes excluded, nothing cropped
        assert np.isfinite(m["metrics"]["abs_rel"])
    for name in ("01_frames.png", "03_finetune_curves.png", "04_predictions_test.png", "milestone.png", "metrics.md"):
        assert (figs / name).is_file(), name

    from depthlib.cli import predict_images

    rgb = sorted((tmp_path / "capture").glob("*/rgb/*.png"))[0]
    out = predict_images([str(rgb)], checkpoint=str(ft / "best.pt"), out=str(tmp_path / "pred"), device="cpu", progress=False)
    depth = np.asarray(Image.open(out[0]))
    assert depth.shape == OWN_SIZE[::-1] and 100 < np.median(depth) < 10000     # millimetres, the image's own size
