"""The full-scale rehearsal's whole path (benchmarks/bench_scale.py) at N = 200: gen, 01 prep, 02, 04, kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_scale_runs_end_to_end_at_200_frames(tmp_path: Path) -> None:
    # Every stage at the smallest size that still shows its property: 194 full-size train frames in 3 scenes (the real
    # ~178 a scene would make 2, and 01 refuses a split sending one of 2 scenes to val), 6 test frames, 12 + 4 steps at
    # 64x96 (mid-epoch pause and resume: 37 steps an epoch), no hole demo (a fixed cost per 01 replay, whatever N).
    out = tmp_path / "RESULTS_scale.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--frames", "200", "--test-frames", "6", "--scenes", "3",
           "--gen-workers", "0", "--workdir", str(tmp_path / "w"), "--steps", "12", "--resume-steps", "4", "--batch", "4",
           "--image-size", "64", "96", "--loader-batches", "2", "--hole-demo", "", "--out", str(out), "--label", "test run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # its stages, loader workers and kill child share 2 cores
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = {s: json.loads((tmp_path / "w" / "results" / f"{s}.json").read_text()) for s in ("gen", "prep", "train", "eval", "kill")}
    assert r["gen"]["n_train"] == 194 and r["gen"]["n_test"] == 6 and r["gen"]["n_scenes"] == 3
    assert 60 < r["gen"]["train_kb_per_frame"] < 100  # the real archive's ~74 KB a train frame
    prep = r["prep"]
    assert prep["n_frames"] == 194 and prep["jpeg_copied"] == 194 and prep["verify_bad"] == 0
    assert prep["val_scenes"] == 1 and prep["split_frames"]["val"] > 0  # val_frac 0.02 of 3 scenes rounds to none
    train = r["train"]
    assert train["resume"]["start_step"] == 12 and train["resume"]["end_step"] == 16
    assert train["stopped_at_batch"] == 12 < train["steps_per_epoch"]  # paused mid-epoch, resumed there
    assert 0 <= train["wait_pct"] <= 100 and train["marks"]["12"]["n_workers"] == 2
    assert r["eval"]["n_test"] == 6 and r["eval"]["metrics"]["current"]["abs_rel"] > 0
    kill = r["kill"]
    assert kill["returncode"] == -9 and 0 < kill["n_written_at_kill"] < 194
    assert kill["final_absent_at_kill"] and kill["partial_refused"]  # never under the final name; the .partial refused
    assert kill["identical"] and kill["mismatched_frames"] == 0 and kill["verify_bad"] == 0
    text = out.read_text()
    assert "## test run" in text and "identical frame for frame: True" in text and "CPU flags" in text
    assert "--test-frames 6 --scenes 3 --resume-steps 4 --batch 4 --loader-batches 2 --image-size 64 96" in text
