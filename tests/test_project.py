"""Project hygiene: dependency lists agree, notebooks are stripped, sample data is intact."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
import torch
import yaml

from conftest import ROOT, SAMPLE


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip_list = [p for p in pip_list if not p.startswith("-e")]
    assert sorted(pip_list) == sorted(deps), "environment.yml's pip list must equal pyproject's dependencies + dev extra"
    py = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert py == ["python=3.11"]
    assert {_name(d) for d in deps} >= {"torch", "torchvision", "numpy", "h5py", "matplotlib", "ipywidgets", "papermill", "jupyterlab"}


def test_notebooks_are_stripped_and_keep_kernelspec():
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for nb in nbs:
        doc = json.loads(nb.read_text())
        assert doc["metadata"]["kernelspec"]["name"] == "python3", nb.name
        for cell in doc["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{nb.name} has outputs"
        tagged = [c for c in doc["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name} needs exactly one cell tagged 'parameters'"
        code = "\n".join("".join(c["source"]) for c in doc["cells"] if c["cell_type"] == "code")
        assert not re.search(r"^\s*(def|class) ", code, re.M), f"{nb.name} defines functions/classes: move them to depthlib"


def test_sample_checksums():
    lines = (SAMPLE / "SHA256SUMS").read_text().split("\n")
    entries = [ln.split(None, 1) for ln in lines if ln.strip()]
    assert len(entries) == 75  # 34 RGB + 34 depth + the CSV, and 3 raw-depth RGB-D pairs
    for digest, rel in entries:
        rel = rel.strip().lstrip("*").removeprefix("./")
        assert hashlib.sha256((SAMPLE / rel).read_bytes()).hexdigest() == digest, rel


def test_lint_clean():
    import subprocess
    import sys

    ruff = [sys.executable, "-m", "ruff", "check", "--quiet", "depthlib", "tests", "benchmarks"]
    r = subprocess.run(ruff, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


_ONEDNN_PROBE = ("import torch\n"
                 "torch.nn.functional.conv2d(torch.rand(2, 64, 64, 64), torch.rand(64, 64, 3, 3))\n")


def test_the_cpu_kernels_asked_for_are_the_ones_in_use():
    """`make test` reruns the fast suite as an AVX2-only CPU and with torch's portable kernels: the settings take effect."""
    asked = os.environ.get("ATEN_CPU_CAPABILITY", "")
    if asked:
        assert torch.backends.cpu.get_cpu_capability() == asked.upper(), asked
    # oneDNN (convolutions) names the instruction set it dispatches to when ONEDNN_VERBOSE is on
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    out = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], env=env, capture_output=True, text=True, timeout=120).stdout
    isa = re.search(r"cpu,isa:([^,\n]+)", out)
    assert isa, out[-2000:]
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2":
        assert "AVX2" in isa.group(1) and "512" not in isa.group(1) and "AMX" not in isa.group(1), isa.group(1)


@pytest.mark.slow
def test_a_run_without_the_sample_models_tests_does_not_start_their_pipeline(tmp_path):
    # `make test-fast` and both kernel passes (-m "not slow") started the shared sample pipeline in the background,
    # which then took a core from the fast tests until pytest stopped it: conftest picked the sample model's tests
    # before -m deselected them (make test-kernels 132 s -> 73 s, make test-fast 86 s -> 39 s once it looked after).
    from conftest import STARTED

    base = tmp_path / "base"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}   # not as an xdist worker of this run
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-m", "not slow",
           "--basetemp", str(base), "tests/test_transfer.py"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 5 and "deselected" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]  # 5: none left
    assert not (base / STARTED).exists() and not (base.parent / STARTED).exists()


def test_pyproject_metadata_uses_no_deprecated_form():
    # `license = { text = "MIT" }` made setuptools warn on every install that the table form is deprecated.
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert dist.metadata.license_expression == "MIT"
