"""The full-scale rehearsal's whole path (benchmarks/bench_scale.py) at N = 2,000: gen, 01 prep, 02, 04, kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_scale_runs_end_to_end_at_2000_frames(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS_scale.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--frames", "2000", "--workdir", str(tmp_path / "w"),
           "--steps", "30", "--loader-batches", "4", "--out", str(out), "--label", "test run"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = {s: json.loads((tmp_path / "w" / "results" / f"{s}.json").read_text()) for s in ("gen", "prep", "train", "eval", "kill")}
    assert r["gen"]["n_train"] == 1346 and r["gen"]["n_test"] == 654 and r["gen"]["n_scenes"] == 8
    assert 60 < r["gen"]["train_kb_per_frame"] < 100  # the real archive's ~74 KB a train frame
    prep = r["prep"]
    assert prep["n_frames"] == 1346 and prep["jpeg_copied"] == 1346 and prep["verify_bad"] == 0
    assert prep["val_scenes"] == 1 and prep["split_frames"]["val"] > 0  # val_frac 0.02 of 8 scenes rounds to none
    assert r["train"]["resume"]["start_step"] == 30 and r["train"]["resume"]["end_step"] == 50
    assert 0 <= r["train"]["wait_pct"] <= 100 and r["train"]["marks"]["30"]["n_workers"] == 2
    assert r["eval"]["n_test"] == 654 and r["eval"]["metrics"]["current"]["abs_rel"] > 0
    kill = r["kill"]
    assert kill["returncode"] == -9 and 0 < kill["n_written_at_kill"] < 1346 and kill["partial_refused"]
    assert kill["identical"] and kill["mismatched_frames"] == 0 and kill["verify_bad"] == 0
    text = out.read_text()
    assert "## test run" in text and "identical frame for frame: True" in text and "CPU flags" in text
