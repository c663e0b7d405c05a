"""The notebook pipeline runner: profiles are checked against the notebooks, failures name the cell."""

from __future__ import annotations

import json
import math
import re
import tomllib

import pytest
from PIL import Image

from conftest import ROOT, SAMPLE_RUN_OVERRIDES, project_at
from depthlib.core.errors import ConfigError
from depthlib.evaluation.metrics import METRIC_NAMES
from depthlib.notebook.pipeline import NOTEBOOKS, make_plan, notebook_parameters, run


def _profile(tmp_path, text: str) -> str:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("name", ["sample", "ci", "nyu"])
def test_every_shipped_profile_resolves(name):
    plan = make_plan(name)
    assert list(plan.steps)[:4] == list(NOTEBOOKS[:4])
    assert plan.steps["02_train"]["out_dir"].startswith(f"checkpoints/{name}")
    # No notebook falls back to another profile's files through its own defaults (the nyu profile's explorer once
    # opened the sample's prepared file, because [05_explore] named only the checkpoints).
    for nb, params in plan.steps.items():
        for key, value in {**notebook_parameters(ROOT / "notebooks" / f"{nb}.ipynb"), **params}.items():
            if isinstance(value, str) and value.startswith(("checkpoints/", "data/prepared/", "figures/")):
                owner = value.removeprefix("data/").split("/")[1]       # sample.h5, nyu_train.h5, sample, ...
                assert owner.split(".")[0].split("_")[0] == name, (nb, key, value)


def test_the_notebooks_defaults_are_the_sample_recipe():
    # Opened in JupyterLab after `make pipeline`, a notebook run with its own defaults resumes the very runs the
    # pipeline made (02 once defaulted to a from-scratch U-Net, and its resume check refused the finished run).
    plan = make_plan("sample")
    allowed = {"04_evaluate": {"control", "update_readme", "require_beat_control"}}  # opt-in from a notebook
    for nb, params in plan.steps.items():
        defaults = notebook_parameters(ROOT / "notebooks" / f"{nb}.ipynb")
        differ = {k: (defaults[k], v) for k, v in params.items() if defaults[k] != v}
        assert set(differ) <= allowed.get(nb, set()), (nb, differ)


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"02_train: unknown parameter\(s\) \['epoch'\]"):
        make_plan(_profile(tmp_path, "[02_train]\nepoch = 3\n"))
    with pytest.raises(ConfigError, match="no notebook declares"):
        make_plan(_profile(tmp_path, "[common]\nlearning_rate = 0.1\n"))
    with pytest.raises(ConfigError, match="unknown table"):
        make_plan(_profile(tmp_path, "[02_trian]\nepochs = 3\n"))
    with pytest.raises(ConfigError, match="NOTEBOOK:name=value"):
        make_plan("ci", overrides=["02_train:epochs"])


def test_parameter_types_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        make_plan(_profile(tmp_path, '[02_train]\nepochs = "3"\n'))
    plan = make_plan(_profile(tmp_path, "[02_train]\nlr = 1\n"))  # an int where a float is declared is fine
    assert plan.steps["02_train"]["lr"] == 1


def test_overrides_and_only():
    plan = make_plan("ci", only=["02"], overrides=["02_train:epochs=7"])
    assert list(plan.steps) == ["02_train"] and plan.steps["02_train"]["epochs"] == 7
    # a number and a name of the same notebook both apply, in the order given
    plan = make_plan("ci", only=["02_train", "03"], overrides=["02:epochs=7", "02_train:lr=0.5", "03:epochs=2",
                                                                  "02:lr=0.25"])
    assert plan.steps["02_train"]["epochs"] == 7 and plan.steps["02_train"]["lr"] == 0.25
    assert plan.steps["03_finetune"]["epochs"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--set", "02_trian:epochs=99"], r"--set 02_trian:epochs=99: there is no notebook '02_trian'; use a name"),
    (["--set", "9:epochs=99"], r"no notebook '9'"),
    (["--only", "09"], r"--only 09: there is no notebook '09'"),
    (["--only", "02", "--set", "03:epochs=2"], r"03_finetune is not part of this run \(--only 02\)"),
    (["--set", "02:=3"], r"NOTEBOOK:name=value"),
])
def test_unknown_notebooks_are_refused_with_a_message_and_exit_2(argv, message, capsys):
    from depthlib.notebook.pipeline import main

    assert main(["--profile", "ci", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[pipeline] error: ") and re.search(message, err), err
    with pytest.raises(SystemExit) as e:  # argparse: --only with nothing after it
        main(["--profile", "ci", "--only"])
    assert e.value.code == 2
    with pytest.raises(ConfigError, match="--only needs at least one notebook"):
        make_plan("ci", only=[])


def test_parameters_cells_hold_typed_literals():
    for nb in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{nb}.ipynb"
        params = notebook_parameters(path)
        assert params, nb
        src = "".join(next(c for c in json.loads(path.read_text())["cells"]
                           if "parameters" in c["metadata"].get("tags", []))["source"])
        assert src.count(":") >= len(params), f"{nb}: every parameter should carry a type annotation"


@pytest.mark.slow
def test_failing_notebook_stops_the_run_and_names_the_cell(tmp_path):
    plan = make_plan("ci", run_name="test_failure", only=["03"],
                     overrides=["03_finetune:init_from='checkpoints/does-not-exist.pt'"])
    plan.run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"03_finetune FAILED in cell \d+ .*DataError.*does-not-exist"):
        run(plan, progress=False)
    assert (tmp_path / "run" / "03_finetune.ipynb").is_file()  # the executed copy is kept


def _metrics_are_plausible(name: str, m: dict) -> None:
    assert m["n_images"] == 5 and m["n_pixels"] == 5 * 440 * 592, name  # the densedepth crop of 5 frames
    assert all(math.isfinite(m[k]) for k in METRIC_NAMES), (name, m)
    assert 0 <= m["delta1"] <= m["delta2"] <= m["delta3"] <= 1, (name, m)
    assert 0 < m["abs_rel"] < 3 and 0 < m["rmse"] < 10 and 0 < m["log10"] < 1 and 0 < m["sq_rel"] < 30, (name, m)


@pytest.mark.slow
def test_sample_profile_runs_every_notebook_in_a_fresh_root(sample_project, capsys):
    """`make pipeline` in a root with no earlier outputs (nothing to resume), and what it writes holds up."""
    from depthlib.evaluation.evaluate import EvalResult
    from depthlib.evaluation.report import comparison_table
    from depthlib.notebook.workbook import README_END, README_START

    root = sample_project
    out = (root / "pipeline.log").read_text()
    assert "already finished" not in out and "resumed" not in out  # trained from scratch
    outputs = tomllib.loads((ROOT / "notebooks/profiles/sample.toml").read_text())["outputs"]
    assert all((root / outputs[k]).exists() for k in outputs)
    assert sorted(p.name for p in (root / "runs/sample").glob("*.ipynb")) == sorted(f"{nb}.ipynb" for nb in NOTEBOOKS)
    figs = root / outputs["figures"]
    for f in ("01_frames.png", "01_holes.png", "02_train_samples.png", "02_train_curves.png", "03_finetune_curves.png",
              "04_predictions_test.png", "04_predictions_train.png", "04_compare_test.png", "milestone.png",
              "05_explore.png"):
        with Image.open(figs / f) as im:
            assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 200, f
    assert not (ROOT / "notebooks" / "figures").exists()  # figures resolve from the root, not the notebook's folder

    # training: the requested epochs, finite losses, each stage from its own start
    steps = make_plan("sample", overrides=list(SAMPLE_RUN_OVERRIDES)).steps
    h2 = json.loads((root / "checkpoints/sample/train/history.json").read_text())
    h3 = json.loads((root / "checkpoints/sample/finetune/history.json").read_text())
    assert [r["epoch"] for r in h2["epochs"]] == list(range(1, steps["02_train"]["epochs"] + 1))
    assert [r["epoch"] for r in h3["epochs"]][-1] == steps["03_finetune"]["epochs"]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and r["loss_name"] == "silog_grad"
               for r in h2["epochs"] + h3["epochs"] if "train_loss" in r)

    # evaluation: plausible numbers for each model, and every table regenerated from them by the code
    metrics = json.loads((root / outputs["metrics"]).read_text())
    assert set(metrics) == {"previous", "current", "scratch control", "mean-depth baseline"}
    for name, r in metrics.items():
        assert r["protocol"] == "densedepth" and r["source"] == "data/prepared/sample.h5", name
        _metrics_are_plausible(name, r["metrics"])
    assert metrics["previous"]["metrics"] != metrics["current"]["metrics"]  # 03 changed the weights
    table = comparison_table({n: EvalResult.from_dict(r) for n, r in metrics.items()})
    assert f"{metrics['current']['metrics']['abs_rel']:.4f}" in table
    assert (root / outputs["metrics_table"]).read_text().startswith(f"### Metric depth, 5 held-out frames\n\n{table}\n")
    readme, before = (root / "README.md").read_text(), (ROOT / "README.md").read_text()
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    assert table.strip() in block and "![milestone](figures/sample/milestone.png)" in block
    assert readme.split(README_START)[0] == before.split(README_START)[0]  # nothing else of the README changed
    assert readme.split(README_END)[1] == before.split(README_END)[1]
    shown = json.loads((root / "runs/sample/04_evaluate.ipynb").read_text())
    markdown = ["".join(o["data"]["text/markdown"]) for c in shown["cells"] for o in c.get("outputs", [])
                if "text/markdown" in o.get("data", {})]
    # rendered in Lab, each table under its heading
    assert any(t.startswith("### Metric depth\n\n**Protocol: densedepth**") and "| metric |" in t for t in markdown)
    assert any(t.startswith("### Relative depth (scale_shift aligned)") and "| metric |" in t for t in markdown)

    # running 02 again: the finished run stands and the pipeline says so
    with project_at(root):
        run(make_plan("sample", only=["02"], overrides=list(SAMPLE_RUN_OVERRIDES)), progress=False)
    again = capsys.readouterr().out
    assert "[pipeline] 02_train: " in again and f"already finished its {steps['02_train']['epochs']} epochs" in again
    assert "--fresh" in again


def test_readme_results_are_what_the_code_makes_of_the_committed_metrics(tmp_path):
    """metrics.json -> comparison table -> metrics.md and the README block, regenerated here and compared."""
    from depthlib.evaluation.evaluate import EvalResult
    from depthlib.evaluation.report import comparison_table
    from depthlib.notebook.workbook import update_readme

    outputs = tomllib.loads((ROOT / "notebooks/profiles/sample.toml").read_text())["outputs"]
    metrics = json.loads((ROOT / outputs["metrics"]).read_text())
    table = comparison_table({n: EvalResult.from_dict(r) for n, r in metrics.items()})
    md = (ROOT / outputs["metrics_table"]).read_text()
    assert md.endswith(f"\n\n{table}\n") and md.startswith("### "), "metrics.md is not the table of metrics.json"
    rel = json.loads((ROOT / outputs["figures"] / "metrics_relative_scale_shift.json").read_text())
    rel_table = comparison_table({n: EvalResult.from_dict(r) for n, r in rel.items()})
    copy = tmp_path / "README.md"
    copy.write_text((ROOT / "README.md").read_text())
    update_readme(table, f"{outputs['figures']}/milestone.png", relative_md=rel_table, readme=str(copy))
    assert copy.read_text() == (ROOT / "README.md").read_text(), "README results differ from what 04 writes: run make pipeline"
    assert (ROOT / outputs["figures"] / "milestone.png").is_file()
    readme = copy.read_text()
    for key in ("figures", "checkpoints", "executed_notebooks"):
        assert f"`{outputs[key]}/" in readme, f"the README does not say where {key} go ({outputs[key]})"
    cur, base = metrics["current"]["metrics"], metrics["mean-depth baseline"]["metrics"]
    for name, r in metrics.items():
        _metrics_are_plausible(name, r["metrics"])
    assert cur["abs_rel"] < base["abs_rel"] and cur["delta1"] > base["delta1"]


def test_papermill_parses_every_parameter_line():
    """papermill's own parser skips lines it cannot read (an '=' in a comment), losing their type."""
    import papermill

    for nb in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{nb}.ipynb"
        assert set(papermill.inspect_notebook(str(path))) == set(notebook_parameters(path)), nb


def test_fresh_starts_training_over():
    plan = make_plan("sample", only=["02", "03"], overrides=["02:epochs=5"], fresh=True)
    assert plan.steps["02_train"]["epochs"] == 5
    assert plan.steps["02_train"]["resume"] is False and plan.steps["03_finetune"]["resume"] is False
    assert "resume" not in make_plan("sample", only=["01"], fresh=True).steps["01_data_prep"]
    with pytest.raises(ConfigError, match="--fresh starts 02_train over, but --set asks it to resume"):
        make_plan("sample", only=["02"], overrides=["02:resume=True"], fresh=True)


def test_every_pipeline_command_of_the_readme_resolves(capsys):
    """Each `python -m depthlib pipeline ...` line of the README runs as written (here with --dry-run)."""
    import shlex

    from depthlib.cli import main  # `python -m depthlib ARGS` runs depthlib.cli.main(ARGS)

    lines = [ln.split("#")[0] for ln in (ROOT / "README.md").read_text().splitlines()
             if ln.startswith(".venv/bin/python -m depthlib pipeline")]
    assert len(lines) >= 4
    for ln in lines:
        argv = shlex.split(ln)[3:]  # "pipeline", then its arguments
        assert main([*argv, "--dry-run"] if "--dry-run" not in argv else argv) == 0, ln
        steps = json.loads(capsys.readouterr().out)
        if "--set" in argv and "02:epochs=5" in argv:  # "retrain 02 for 5 epochs, fine-tune that"
            assert steps["02_train"]["epochs"] == 5 and steps["02_train"]["resume"] is False
            assert steps["03_finetune"]["resume"] is False and list(steps) == ["02_train", "03_finetune"]


def test_notices_printed_by_a_notebook_are_found():
    from depthlib.core.notices import PREFIX, notices_in

    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["epoch 1\n", f"{PREFIX}nothing to train\n"]},
        {"output_type": "display_data", "data": {"text/plain": f"{PREFIX}not a stream"}}]},
        {"cell_type": "markdown", "source": "x"}]}
    assert notices_in(nb) == ["nothing to train"]


CHILD = ("import os, pathlib, signal, sys, time\nf = pathlib.Path(sys.argv[1])\n"
         "signal.signal(signal.SIGINT, lambda *a: f.write_text('SIGINT'))\nf.with_suffix('.pid').write_text(str(os.getpid()))\n"
         "f.write_text('ready')\ntime.sleep(60)")


@pytest.mark.slow
def test_pipeline_kernels_are_encrypted_and_shut_down_without_sigint(tmp_path):
    """No "running over TCP without encryption" warning, no SIGINT (whose race logs "KeyboardInterrupt caught")."""
    import asyncio
    import os
    import signal

    from depthlib.notebook.pipeline_kernel import PipelineKernelManager

    flag, err_path = tmp_path / "child.txt", tmp_path / "kernel.err"
    # a process the kernel starts shares its process group, which is what jupyter_client interrupts
    code = (f"import subprocess, sys, time, pathlib\nsubprocess.Popen([sys.executable, '-c', {CHILD!r}, {str(flag)!r}])\n"
            f"while not pathlib.Path({str(flag)!r}).is_file(): time.sleep(0.05)\nprint('ok')")

    async def session() -> None:
        km = PipelineKernelManager(kernel_name="python3")
        with err_path.open("w") as err:
            await km.start_kernel(stderr=err, cwd=str(tmp_path))
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=120)
                reply = await kc.execute_interactive(code, timeout=120)
                assert reply["content"]["status"] == "ok"
            finally:
                kc.stop_channels()
                await km.shutdown_kernel()
        assert not await km.is_alive()

    try:
        asyncio.run(session())
        assert flag.read_text() == "ready", "the kernel's process group was sent SIGINT at shutdown"
    finally:
        os.kill(int(flag.with_suffix(".pid").read_text()), signal.SIGKILL)
    log = err_path.read_text()
    assert "without encryption" not in log and "KeyboardInterrupt" not in log and "ERROR" not in log, log


def test_explore_defaults_are_what_the_sample_pipeline_runs():
    """Run All in JupyterLab shows (and saves) what `make pipeline` does: the held-out frames of the prepared file."""
    defaults = notebook_parameters(ROOT / "notebooks" / "05_explore.ipynb")
    planned = make_plan("sample", only=["05"]).steps["05_explore"]
    assert {k: defaults[k] for k in planned} == planned
    assert (defaults["data_source"], defaults["data_split"]) == ("prepared", "test")


def test_log_output_shows_what_the_notebooks_print(monkeypatch, capsys):
    # --log-output promised the notebooks' output in the terminal, but papermill logs it at INFO with no handler.
    import logging

    from depthlib.notebook import pipeline

    def fake_run(plan, log_output, stream):
        logging.getLogger("papermill").info("a line a notebook printed")

    monkeypatch.setattr(pipeline, "run", fake_run)
    log = logging.getLogger("papermill")
    level, handlers = log.level, list(log.handlers)
    try:
        assert pipeline.main(["--profile", "ci", "--only", "01", "--log-output"]) == 0
        assert "a line a notebook printed" in capsys.readouterr().out
    finally:  # the handler writes to this test's captured stdout: leave the logger as it was
        log.setLevel(level)
        log.handlers[:] = handlers


def test_only_02_lists_what_it_wrote_and_says_the_later_outputs_are_older(tmp_path):
    # `--only 02` listed "metrics: figures/sample/metrics.json", which 04 had written in an earlier run, as an output.
    import os
    import time

    from depthlib.notebook.pipeline import outputs_report

    plan, whole = make_plan("sample", only=["02"]), make_plan("sample")
    root = tmp_path / "root"
    with project_at(root):
        old = time.time() - 3600
        for rel in (plan.outputs["metrics"], plan.outputs["metrics_table"], "figures/sample/milestone.png",
                    "runs/sample/04_evaluate.ipynb", "checkpoints/sample/finetune/best.pt"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("earlier run")
            os.utime(root / rel, (old, old))
        since = time.time()
        (root / "checkpoints/sample/train").mkdir(parents=True)
        (root / "checkpoints/sample/train/best.pt").write_text("this run")
        (root / "figures/sample/02_train_curves.png").write_text("this run")
        (root / "runs/sample/02_train.ipynb").write_text("this run")
        lines = outputs_report(plan, since)
    listed = [ln.split(":")[0] for ln in lines if not ln.startswith("note:")]
    assert listed == ["figures", "checkpoints", "executed_notebooks"], lines
    assert lines[0] == "figures: figures/sample"
    note = lines[-1]
    assert note.startswith("note: 03_finetune, 04_evaluate, 05_explore did not run, so what they wrote before (not "
                           "written by this run: metrics: figures/sample/metrics.json; metrics_table: "
                           "figures/sample/metrics.md) is older than what 02_train wrote now; run them too "
                           "(--only 03 04 05, or no --only)"), note
    with project_at(root):  # a whole run: no note
        assert not any(ln.startswith("note:") for ln in outputs_report(whole, since))


def test_papermill_loads_without_the_iri_grammar_and_still_validates_notebooks():
    # depthlib.notebook.pipeline.import_papermill keeps jsonschema from building rfc3987_syntax's parser (4.4 s a
    # pipeline start); notebooks must still validate, and the name must be importable again afterwards. In the same
    # process (one interpreter start less): the workbook and the CLI load without torchvision, whose import loads
    # torch._dynamo (1.4 s of every kernel and command; only DenseNet, MobileNet, timm and the fast JPEG loader use it).
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from depthlib.notebook.pipeline import import_papermill\n"
        "pm = import_papermill()\n"
        "assert 'rfc3987_syntax' not in sys.modules, 'the IRI grammar was built, or its name left blocked'\n"
        "import nbformat\n"
        "nb = nbformat.read('notebooks/04_evaluate.ipynb', as_version=4)\n"
        "nbformat.validate(nb)\n"
        "bad = nbformat.v4.new_notebook(); bad.cells.append({'cell_type': 'code'})\n"
        "try:\n"
        "    nbformat.validate(bad)\n"
        "except nbformat.ValidationError:\n"
        "    print('invalid refused')\n"
        "import importlib.util\n"
        "print('importable again', importlib.util.find_spec('rfc3987_syntax') is not None)\n"
        "import depthlib.notebook.workbook, depthlib.cli\n"
        "print('torchvision loaded', 'torchvision' in sys.modules, 'torch._dynamo' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "invalid refused" in res.stdout and "importable again True" in res.stdout
    assert "torchvision loaded False False" in res.stdout, res.stdout
