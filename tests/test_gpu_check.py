"""benchmarks/gpu_check.py rehearsed on the CPU at toy sizes: every section filled with numbers, the SIGKILL resumed."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_derived_profile_moves_every_project_path_and_plans(tmp_path: Path) -> None:
    from depthlib.notebook.pipeline import make_plan

    prof = gpu_check.derived_profile(tmp_path)
    plan = {"sizes": {"pipeline_sets": gpu_check.TOY.pipeline_sets}, "device": "cpu", "toy": True, "pretrained": False,
            "model_kwargs": {}, "profile": str(prof), "workdir": str(tmp_path)}
    cmd = gpu_check.pipeline_command(plan)
    i = cmd.index("--only")
    steps = make_plan(str(prof), only=cmd[i + 1:i + 5], overrides=cmd[i + 6::2]).steps
    assert list(steps) == ["01_data_prep", "02_train", "03_finetune", "04_evaluate"]
    paths = [v for p in steps.values() for k, v in p.items() if isinstance(v, str) and "/" in v and k != "hole_demo"]
    assert paths and all(v.startswith(str(tmp_path)) for v in paths), paths  # nothing lands in the checkout
    assert steps["02_train"]["model_kwargs"] == {"encoder": "efficientnet_lite0", "width": 0.25, "pretrained": True}
    assert steps["02_train"]["epochs"] == 2 and steps["02_train"]["device"] == "cpu"
    assert steps["01_data_prep"]["overwrite"] is False  # the re-run reuses the prepared file


def test_help_names_what_it_measures_and_a_rehearsal_keeps_off_the_committed_file(capsys) -> None:
    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    text = capsys.readouterr().out
    assert "benchmarks/RESULTS_gpu.md" in text and "bf16" in text and "SIGKILL" in text and "--device cpu --toy" in text
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--device", "cpu", "--toy"])
    assert e.value.code == 2 and "give --out" in capsys.readouterr().err


def test_a_section_that_raises_is_written_as_failed_and_the_others_stay(tmp_path: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("the kernel died")

    monkeypatch.setattr(gpu_check, "section_pipeline", boom)
    plan = {"device": "cpu", "toy": True, "sizes": gpu_check.asdict(gpu_check.TOY), "budget_s": 60.0, "weights": "random init",
            "model_kwargs": dict(gpu_check.TOY.model_kwargs), "workdir": str(tmp_path), "prepared": str(tmp_path / "none.h5"),
            "ddp_procs": 0, "cards": 0}
    budget = gpu_check.Budget(60.0, gpu_check.TOY.estimates)
    row = {"row": "fp32", "status": "ok", "images_per_s": 10.0, "step_ms": 200.0, "peak_gib": 1.0, "wait_pct": 1.0,
           "workers": 0, "setup_s": 2.0}
    results = {"gen": {"status": "ok", "n_train": 74, "n_test": 6, "n_scenes": 2, "gb": 0.01, "wall_s": 3.0},
               "train": {"status": "ok", "rows": [row, {**row, "row": "bf16", "images_per_s": 30.0}]}}
    for name in ("pipeline", "loader", "ddp"):
        results[name] = gpu_check.run_section(name, plan, tmp_path / "plan.json", budget, {}, results)
    assert results["pipeline"]["status"] == "failed" and "RuntimeError: the kernel died" in results["pipeline"]["error"]
    assert results["loader"]["status"] == "failed" and "prepared file" in results["loader"]["error"]
    machine = {"command": "python benchmarks/gpu_check.py", "card": "-", "driver": "-", "driver_cuda": "-", "torch": "-",
               "torch_cuda": "-", "cudnn": "-", "python": "-", "cpu": "-", "cores": 2, "date": "-", "used_s": 1.0}
    text = gpu_check.render(results, plan, machine)
    assert "**FAILED**: RuntimeError: the kernel died" in text and "**FAILED**: needs the prepared file" in text
    assert "| fp32 | 10.0 | 1.00 |" in text and "| bf16 | 30.0 | 3.00 |" in text  # the sections that ran keep their numbers
    assert "| training: bf16 >= 2.5x fp32 on the same card | bf16 3.00x | PASS |" in text
    assert "nyu profile 01 -> 04 finishes, and resumes after SIGKILL | not measured | not measured |" in text


@pytest.mark.slow
def test_cpu_rehearsal_fills_every_section_and_resumes_after_sigkill(tmp_path: Path) -> None:
    out, raw = tmp_path / "RESULTS_gpu.md", tmp_path / "gpu_check.json"
    # the optional torch.compile row compiles for minutes on a CPU (benchmarks/gpu_check.py --device cpu --toy runs it)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--toy", "--out", str(out),
           "--json", str(raw), "--skip", "compile"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads(raw.read_text())["results"]
    for name in ("gen", "train", "pipeline", "loader", "predict"):
        assert r[name]["status"] == "ok", (name, r[name].get("error"))
    assert r["ddp"]["status"] == "not run" and "not DistributedDataParallel" in r["ddp"]["error"]
    assert r["compile"] == {"status": "skipped", "error": "--skip"}
    rows = {x["row"]: x for x in r["train"]["rows"] + r["loader"]["rows"]}
    assert set(rows) == {"fp32", "bf16", "bf16+cl", "loader"} and rows["loader"]["workers"] == 1
    for row in rows.values():
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("images_per_s", "step_ms", "peak_gib")), row
        assert 0 <= row["wait_pct"] <= 100
    p = r["pipeline"]
    assert p["kill_epoch"] == 1 and p["resumed_step"] == p["kill_step"] > 0  # killed in epoch 2, resumed at epoch 1's end
    assert p["epoch1_kept"] and p["final_step"] == p["expected_step"] == 2 * p["kill_step"] and p["resumed"]
    assert p["killed_processes"] >= 2 and p["run2_rc"] == 0 and p["prepared_reused"]
    assert p["peak_gib"] > 0 and len(p["rates"]) == 3 and all(v > 0 for v in p["rates"].values())
    models = r["predict"]["models"]
    assert len(models) == 2 and all(m["dev_fps"] > 0 and m["cpu_fps"] > 0 for m in models)
    assert all(m["max_diff_m"] <= 1e-6 for m in models)  # the CPU against itself: the same numbers
    text = out.read_text()
    assert "FAILED" not in text and "Rehearsal on `cpu` at toy sizes" in text
    for heading in ("## Goals", "## Training throughput", "## nyu profile 01 -> 04", "## predict on the card", "## Several GPUs"):
        assert heading in text
    assert re.search(r"^\| fp32 \| [\d.]+ \| 1\.00 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", text, re.M)
    assert "**Resumed rather than restarted: True**" in text
    assert re.search(r"\| predict on the card >= 20x the CPU \| .*\d.*x \| (PASS|FAIL) \|", text)
