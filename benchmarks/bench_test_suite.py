"""The test suite's time as a new user meets it: a fresh clone's `make venv`, `make test-fast` and `make test`.

Usage: .venv/bin/python benchmarks/bench_test_suite.py [--label "fresh clone"] [--no-shared] [--keep]

Issue 21's targets, on 2 cores: `make test` (the full pass, with the fast suite under the AVX2-only and the
portable kernels beside it) within 7 minutes, and `make test-fast` within 1 minute. The clone's first `make`
installs .venv (torch 2.14.1 with its CUDA wheels, ~6 GB written): timed apart as `make venv`, and counted in
neither target (the issue's baseline, 634 s, was pytest's own time, the install before it not included).

It clones this checkout's HEAD into a new folder (with ../shared beside it when this checkout has one, so the tests
of the shared frames run; --no-shared: they skip), runs the three commands there one after the other, and records
each one's wall time, pytest's summaries and the machine's busy and idle CPU-seconds (/proc/stat; idle near zero:
the run was bound by the CPU, not by waiting). Nothing else should run meanwhile: the numbers are this machine's on
this day, so the results file names the CPU, its flags and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, command_line, cpu_summary, parse_early, script_parser, utc_stamp, write_json, write_results

DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS_test_suite.md"
TARGETS = {"make test-fast": 60.0, "make test": 420.0}        # seconds, issue 21
COMMANDS = ("make venv", "make test-fast", "make test")
PREAMBLE = ("# The test suite's time on a fresh clone\n\nWritten by `benchmarks/bench_test_suite.py` (its --help says what it "
            "measures); one section per --label, each replaced by its next run.\n\n")
# pytest's last line: "765 passed, 1 skipped in 374.50s (0:06:14)" (with "=" around it when not -q)
SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in ([\d.]+)s\b", re.M)


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, f"{DEFAULT_OUT.relative_to(ROOT)} (--out), one `## ` section per --label")
    ap.add_argument("--label", default="fresh clone", help="the results section's name (default: fresh clone)")
    ap.add_argument("--no-shared", action="store_true", help="no ../shared beside the clone: its 30 tests skip")
    ap.add_argument("--workdir", default="", help="where to clone (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the clone and its .venv (~6 GB) afterwards")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--json", default="", help="also write every number as JSON here")
    return ap


parse_early(__name__, build_parser)


def cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU-seconds of the whole machine since boot (/proc/stat's first line; iowait counts as idle)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / hz, idle / hz


def run_timed(cmd: str, cwd: Path, log: Path) -> dict:
    """Run `cmd` in `cwd`, its output to `log` -> wall s, busy and idle CPU-s, exit status, pytest's summaries."""
    busy0, idle0 = cpu_seconds()
    t0 = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run(cmd.split(), cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    busy1, idle1 = cpu_seconds()
    text = log.read_text(errors="replace")
    summaries = [{"counts": m[1].rstrip(", "), "pytest_s": float(m[2])} for m in SUMMARY.finditer(text)]
    return {"command": cmd, "rc": rc, "wall_s": wall, "busy_cpu_s": busy1 - busy0, "idle_cpu_s": idle1 - idle0,
            "summaries": summaries, "log": str(log)}


def render(rows: list[dict], machine: dict, label: str) -> str:
    """The `## label` section: machine, one row per command, the targets' verdicts."""
    lines = [f"## {label}", "",
             f"{machine['date']}, commit {machine['commit']}, {machine['cpu']}; Python {machine['python']}, "
             f"{'with' if machine['shared'] else 'without'} ../shared beside the clone. Command: `{machine['command']}`",
             "", "| command | wall | busy CPU-s | idle CPU-s | pytest | target | verdict |",
             "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        target = TARGETS.get(r["command"])
        said = "; ".join(f"{s['counts']} in {s['pytest_s']:.1f} s" for s in r["summaries"]) or "-"
        verdict = ("FAILED (exit %d)" % r["rc"] if r["rc"] else
                   "not counted" if target is None else "PASS" if r["wall_s"] <= target else "over")
        lines.append(f"| `{r['command']}` | {r['wall_s']:.0f} s ({r['wall_s'] / 60:.1f} min) | {r['busy_cpu_s']:.0f} | "
                     f"{r['idle_cpu_s']:.0f} | {said} | {'-' if target is None else f'<= {target:.0f} s'} | {verdict} |")
    lines += ["", "`make test`'s two pytest lines: the full pass, then the fast suite under the AVX2-only and the "
                  "portable kernels (both sets' tests counted together), which runs beside it at nice 19.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_test_suite_")).resolve()
    clone, shared = work / "main", ROOT.parent / "shared"
    if clone.exists():
        sys.exit(f"bench_test_suite: {clone} exists; give an empty --workdir")
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    if dirty:
        print("bench_test_suite: note: the checkout has uncommitted changes; the clone measures HEAD without them")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    use_shared = shared.is_dir() and not a.no_shared
    if use_shared:
        (work / "shared").symlink_to(shared, target_is_directory=True)
    (work / "logs").mkdir(exist_ok=True)
    rows = []
    try:
        for cmd in COMMANDS:
            print(f"[bench_test_suite] {cmd} in {clone} ...", flush=True)
            r = run_timed(cmd, clone, work / "logs" / (cmd.replace(" ", "_") + ".log"))
            print(f"[bench_test_suite] {cmd}: exit {r['rc']}, {r['wall_s']:.0f} s", flush=True)
            rows.append(r)
            if r["rc"] and cmd == "make venv":
                break
    finally:
        if not a.keep:
            shutil.rmtree(clone, ignore_errors=True)
    machine = {"date": utc_stamp(), "commit": commit, "cpu": cpu_summary(), "python": platform.python_version(),
               "shared": use_shared, "command": command_line("benchmarks/bench_test_suite.py", argv)}
    text = render(rows, machine, a.label)
    print(text)
    write_results(a.out, PREAMBLE + text, owns=[re.escape(a.label)], keep_preamble=True)
    if a.json:
        write_json(a.json, {"machine": machine, "rows": rows})
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
