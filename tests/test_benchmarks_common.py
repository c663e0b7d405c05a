"""benchmarks/_common.py: a rerun keeps a results file's hand-written sections, in place; every script's --help says
what it writes, and answers before torch loads; the shared timing helpers interleave as they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402

SCRIPTS = sorted(p for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())
MODULES = {"_common.py", "reference_port.py"}  # imported by the scripts, not run

OLD = """# Transfer learning

Generated on 2026-01-01 00:00 UTC; machine: old CPU.

## Metric depth

| model | abs_rel |
|---|---|
| current | 0.1534 |

## Notes between the tables

Written by hand: stays after "Metric depth".

## Relative depth (scale_shift aligned per image)

| current | 0.1125 |

## Wall time of 02-04 per seed

seed 0: 218 s

## Findings (moved from the README)

Written by hand from the tables above.

```
## not a heading: inside a fenced block
```
"""

NEW = """# Transfer learning

Generated on 2026-12-06 10:00 UTC; machine: new CPU.

## Metric depth

| model | abs_rel |
|---|---|
| current | 0.1500 |

## Relative depth (median aligned per image)

| current | 0.1100 |

## Wall time of 02-04 per seed

seed 0: 200 s
"""


def test_a_rerun_replaces_the_scripts_sections_and_keeps_the_hand_written_ones_in_place(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS_x.md"
    out.write_text(OLD)
    _common.write_results(out, NEW, owns=(r"Relative depth", r"Metric depth", r"Wall time"))
    text = out.read_text()
    assert text.startswith(NEW.split("## Metric")[0])  # the new preamble: date and machine
    assert "0.1500" in text and "0.1534" not in text and "200 s" in text and "218 s" not in text
    assert "scale_shift" not in text and "## Relative depth (median aligned per image)" in text  # renamed: replaced
    headings = [h for h, _ in _common.sections(text)[1]]
    assert headings == ["Metric depth", "Notes between the tables", "Relative depth (median aligned per image)",
                        "Wall time of 02-04 per seed", "Findings (moved from the README)"]
    findings = OLD[OLD.index("## Findings"):]
    assert text.endswith(findings)  # verbatim, its fenced "##" line included
    assert "Written by hand: stays after \"Metric depth\".\n\n## Relative" in text
    assert list(tmp_path.iterdir()) == [out]  # written atomically: no temporary file left beside it


def test_without_owns_a_renamed_section_of_the_script_is_kept_not_lost() -> None:
    merged = _common.merge_results(OLD, NEW)
    assert "scale_shift" in merged and "## Relative depth (median aligned per image)" in merged


def test_a_new_file_or_one_with_nothing_to_keep_is_the_new_text_exactly(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "RESULTS_y.md"
    _common.write_results(out, NEW)
    assert out.read_text() == NEW
    _common.write_results(out, NEW.replace("0.1500", "0.1400"))
    assert out.read_text() == NEW.replace("0.1500", "0.1400")
    assert _common.merge_results("", "# title only\n") == "# title only\n"


def test_a_hand_written_section_whose_neighbours_all_changed_names_stays_where_it_stood() -> None:
    old = "# t\n\n## sun3d: 25 held-out frames\n\nold\n\n## Reading (by hand)\n\nmine\n"
    new = "# t\n\n## sun3d: 26 held-out frames\n\nnew\n\n## nyu_tum: 8 held-out frames\n\nnew too\n"
    merged = _common.merge_results(old, new, owns=(r"sun3d: ", r"nyu_tum: "))
    assert re.findall(r"(?m)^## (.*)", merged) == ["sun3d: 26 held-out frames", "Reading (by hand)",
                                                   "nyu_tum: 8 held-out frames"]
    assert "old" not in merged and "mine\n" in merged


def test_keep_preamble_replaces_one_runs_section_and_adds_a_new_one_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS_scale.md"
    out.write_text("# Rehearsal\n\nWritten by hand: targets.\n\n## N=2,000\n\nold small\n\n## N=51,342\n\nold full\n")
    _common.write_results(out, "# default title\n\n## N=2,000\n\nnew small\n", keep_preamble=True)
    assert out.read_text() == "# Rehearsal\n\nWritten by hand: targets.\n\n## N=2,000\n\nnew small\n\n## N=51,342\n\nold full\n"
    _common.write_results(out, "# default title\n\n## test run\n\nnew\n", keep_preamble=True)
    assert re.findall(r"(?m)^## (.*)", out.read_text()) == ["N=2,000", "N=51,342", "test run"]
    assert out.read_text().startswith("# Rehearsal\n\nWritten by hand: targets.\n\n")


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.md")), ids=lambda p: p.name)
def test_every_results_file_on_record_survives_a_rerun_that_writes_its_tables_again(path: Path) -> None:
    # the files as committed, not ones made to suit the code: regenerate = the file without its hand-written sections
    text = path.read_text()
    _, secs = _common.sections(text)
    hand = [h for h, _ in secs if h.startswith(("Findings", "Reading"))]
    regenerated = text
    for h, body in secs:
        if h in hand:
            regenerated = regenerated.replace(body, "")
    assert _common.merge_results(text, regenerated) == text


def test_each_round_rotates_the_order_and_ratios_take_the_per_round_median() -> None:
    calls: list[tuple[int, str]] = []
    got = _common.each_round({k: (lambda r, k=k: calls.append((r, k)) or r) for k in "abc"}, 3)
    assert [k for _, k in calls] == list("abc" "bca" "cab") and got == {k: [0, 1, 2] for k in "abc"}
    calls.clear()
    _common.each_round({k: (lambda r, k=k: calls.append((r, k))) for k in "ab"}, 2, rotate=False)
    assert [k for _, k in calls] == list("abab")
    times = {"ref": [2.0, 4.0, 3.0], "fast": [1.0, 1.0, 3.0]}
    r = _common.ratios(times, "ref")
    assert r["fast"] == {"median": 2.0, "min": 1.0, "max": 4.0, "median_s": 1.0} and r["ref"]["median"] == 1.0
    rates = {"ref": [10.0, 20.0], "fast": [30.0, 20.0]}
    assert _common.ratios(rates, "ref", higher_is_better=True)["fast"]["median"] == pytest.approx(2.0)
    seconds = _common.interleaved({"a": lambda: None, "b": lambda: None}, 4, warmup=2)
    assert {k: len(v) for k, v in seconds.items()} == {"a": 4, "b": 4} and all(t >= 0 for v in seconds.values() for t in v)


def test_machine_facts_and_command_line() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", _common.utc_stamp())
    assert _common.proc_status_kib() > 0 and _common.proc_status_kib(2**22 + 7) == 0  # no such process: 0
    line = _common.command_line(str(BENCH / "bench_models.py"), ["--write", "a b.md"], launcher="nice -n 15 python")
    assert line == "nice -n 15 python benchmarks/bench_models.py --write 'a b.md'"


def test_the_scripts_are_every_benchmark_file_but_the_shared_modules() -> None:
    assert {p.name for p in BENCH.glob("*.py")} - {p.name for p in SCRIPTS} == MODULES
    for p in SCRIPTS:  # one copy of each helper: _common's
        src = p.read_text()
        for own in ('"/proc/cpuinfo"', "datetime.now(", "def interleaved(", "def cpu_info(", "strftime("):
            assert own not in src, f"{p.name} carries its own {own!r}: use benchmarks/_common.py"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_names_the_results_file_and_answers_before_torch_loads(script: Path, tmp_path: Path) -> None:
    # as README and docs run it (`python benchmarks/x.py --help`), from another directory
    r = subprocess.run([sys.executable, "-X", "importtime", str(script), "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"^Results file: (benchmarks/\S+\.md|none: )", r.stdout, re.M), r.stdout[-800:]
    heavy = re.findall(r"\|\s+(torch|numpy|PIL|h5py)$", r.stderr, re.M)
    assert not heavy, f"{script.name} --help imports {sorted(set(heavy))}: parse the command line first"
    assert len(r.stdout.split("Results file:")[0].strip().splitlines()) > 5  # the docstring: what it measures
