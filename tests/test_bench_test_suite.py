"""benchmarks/bench_test_suite.py: what it reads off each command's output and how it judges the targets."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_test_suite as B  # noqa: E402

MACHINE = {"date": "2026-12-06 16:00 UTC", "commit": "abc1234", "cpu": "AMD EPYC, 2 cores; flags: avx2",
           "python": "3.11.7", "shared": True, "command": ".venv/bin/python benchmarks/bench_test_suite.py"}


def test_a_run_records_exit_wall_cpu_and_every_pytest_summary(tmp_path: Path) -> None:
    script = tmp_path / "fake_make.py"
    script.write_text("import sys\nprint('..F.')\nprint('765 passed, 1 skipped in 374.50s (0:06:14)')\n"
                      "print('noise')\nprint('==== 2 failed, 1444 passed, 2 skipped in 381.54s ====')\nsys.exit(3)\n")
    r = B.run_timed(f"{sys.executable} {script}", tmp_path, tmp_path / "log.txt")
    assert r["rc"] == 3 and r["wall_s"] > 0 and r["busy_cpu_s"] >= 0 and r["idle_cpu_s"] >= 0
    assert r["summaries"] == [{"counts": "765 passed, 1 skipped", "pytest_s": 374.5},
                              {"counts": "2 failed, 1444 passed, 2 skipped", "pytest_s": 381.54}]
    assert "noise" in (tmp_path / "log.txt").read_text()


def test_the_verdicts_follow_the_targets_and_the_install_is_not_counted() -> None:
    def row(cmd: str, wall: float, rc: int = 0) -> dict:
        return {"command": cmd, "rc": rc, "wall_s": wall, "busy_cpu_s": 1.0, "idle_cpu_s": 0.0, "summaries": []}

    text = B.render([row("make venv", 500.0), row("make test-fast", 61.0), row("make test", 419.0)], MACHINE, "x")
    lines = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| `")}
    assert lines["`make venv`"].endswith("| - | not counted |")
    assert lines["`make test-fast`"].endswith("| <= 60 s | over |")
    assert lines["`make test`"].endswith("| <= 420 s | PASS |")
    failed = B.render([row("make test", 100.0, rc=2)], MACHINE, "x")
    assert "| FAILED (exit 2) |" in failed and text.startswith("## x\n") and "commit abc1234" in text
