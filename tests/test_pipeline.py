"""The notebook pipeline runner: profiles are checked against the notebooks, failures name the cell."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from conftest import ROOT
from depthlib.errors import ConfigError
from depthlib.pipeline import NOTEBOOKS, make_plan, notebook_parameters, run


def _profile(tmp_path, text: str) -> str:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("name", ["sample", "ci", "nyu"])
def test_every_shipped_profile_resolves(name):
    plan = make_plan(name)
    assert list(plan.steps)[:4] == list(NOTEBOOKS[:4])
    assert plan.steps["02_train"]["out_dir"].startswith(f"checkpoints/{name}")


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
    from depthlib.pipeline import main

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


@pytest.mark.slow
def test_ci_profile_runs_every_notebook_and_writes_its_outputs():
    plan = run(make_plan("ci"), progress=False)
    outputs = tomllib.loads((ROOT / "notebooks/profiles/ci.toml").read_text())["outputs"]
    for key in ("figures", "metrics", "metrics_table", "checkpoints", "executed_notebooks"):
        assert (ROOT / outputs[key]).exists(), f"{key} not written at {outputs[key]}"
    for nb in plan.steps:
        assert (ROOT / "runs" / "ci" / f"{nb}.ipynb").is_file()
    figs = ROOT / outputs["figures"]
    for f in ("01_frames.png", "01_holes.png", "02_train_curves.png", "03_finetune_curves.png", "04_predictions_test.png",
              "04_compare_test.png", "milestone.png", "metrics.md", "05_explore.png"):
        assert (figs / f).is_file(), f
    metrics = json.loads((ROOT / outputs["metrics"]).read_text())
    assert set(metrics) == {"previous", "current", "mean-depth baseline"}
    assert all(m["protocol"] == "densedepth" and m["metrics"]["n_images"] == 5 for m in metrics.values())
    assert "Protocol: densedepth" in (ROOT / outputs["metrics_table"]).read_text()
    assert (ROOT / "checkpoints/ci/finetune/best.pt").is_file()


def test_readme_shows_the_regenerated_sample_results():
    from depthlib.workbook import README_END, README_START

    readme = (ROOT / "README.md").read_text()
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    table = (ROOT / "figures/sample/metrics.md").read_text()
    body = [ln for ln in table.splitlines() if ln.startswith("|") or ln.startswith("**Protocol")]
    assert body and all(ln in block for ln in body), "README results differ from figures/sample/metrics.md: run make pipeline"
    assert "![milestone](figures/sample/milestone.png)" in block and (ROOT / "figures/sample/milestone.png").is_file()
    outputs = tomllib.loads((ROOT / "notebooks/profiles/sample.toml").read_text())["outputs"]
    for key in ("figures", "checkpoints", "executed_notebooks"):
        assert f"`{outputs[key]}/" in readme, f"the README does not say where {key} go ({outputs[key]})"
    metrics = json.loads((ROOT / "figures/sample/metrics.json").read_text())
    cur, base = metrics["current"]["metrics"], metrics["mean-depth baseline"]["metrics"]
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
    """Each `python -m depthlib.pipeline ...` line of the README runs as written (here with --dry-run)."""
    import shlex

    from depthlib.pipeline import main

    lines = [ln.split("#")[0] for ln in (ROOT / "README.md").read_text().splitlines()
             if ln.startswith(".venv/bin/python -m depthlib.pipeline")]
    assert len(lines) >= 4
    for ln in lines:
        argv = shlex.split(ln)[3:]
        assert main([*argv, "--dry-run"] if "--dry-run" not in argv else argv) == 0, ln
        steps = json.loads(capsys.readouterr().out)
        if "--set" in argv and "02:epochs=5" in argv:  # "retrain 02 for 5 epochs, fine-tune that"
            assert steps["02_train"]["epochs"] == 5 and steps["02_train"]["resume"] is False
            assert steps["03_finetune"]["resume"] is False and list(steps) == ["02_train", "03_finetune"]


def test_notices_printed_by_a_notebook_are_found():
    from depthlib.notices import PREFIX, notices_in

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

    from depthlib.pipeline_kernel import PipelineKernelManager

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
