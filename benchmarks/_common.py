"""What the benchmark scripts share: their command line, the machine's facts, interleaved timing, the results file.

Not a script. The scripts run as `python benchmarks/x.py` (Python puts benchmarks/ first on sys.path, so
`import _common` works from any directory); importing this module also puts the checkout's root on sys.path, so
that they import this checkout's depthlib. It imports nothing heavy: torch is loaded only by the functions that
report its version, after a script has parsed its arguments.

A results file is markdown: a preamble (the title and the run's header: machine, date, command), then `## `
sections. A script rewrites it with `write_results`, which keeps what people wrote into it by hand:

- the sections are the script's whose heading the new text writes, or whose heading matches one of the
  patterns the script declares for headings it writes on other runs (`owns`: headings carrying a number or a
  setting, sections written only sometimes); they are replaced by the new text's;
- every other `## ` section of the old file (a "Findings" or "Reading" section written by hand, another run's
  section of a file several runs share) is kept, in place: right after the nearest section before it that the new
  file still has; failing that, after as many of the new text's sections as it followed of the script's old ones;
- the preamble is the new text's, unless the script writes sections only (`keep_preamble`);
- the file is written atomically (depthlib.core.atomic), so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------- command line


def script_parser(doc: str, results: str) -> argparse.ArgumentParser:
    """The parser of a script: --help shows its docstring (what it measures, against what) and ends with the results
    file it writes by default, `results` ("benchmarks/RESULTS_x.md ..." or "none: ...")."""
    keeps = ("" if results.startswith("none") else
             " A rerun replaces the sections the script writes and keeps the file's other `## ` sections (the "
             "findings written by hand) in place; see benchmarks/_common.py.")
    epilog = textwrap.fill(f"Results file: {results}.{keeps}", 110, break_on_hyphens=False)
    return argparse.ArgumentParser(description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_early(module_name: str, build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """When the caller runs as a script, parse its command line now, before its heavy imports (torch takes 5-10 s to
    load): --help and a mistyped option then answer at once. main() parses the same line again for its values."""
    if module_name == "__main__":
        build_parser().parse_args()


def command_line(script: str, argv: list[str] | None = None, *, launcher: str = ".venv/bin/python") -> str:
    """How to run `script` (its __file__) with `argv` (default: this process's arguments) from the project root."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join([*launcher.split(), os.path.relpath(Path(script).resolve(), ROOT), *args])


# ----------------------------------------------------------------------------------------------- machine


def utc_stamp() -> str:
    """Now, as the results files date a run: '2026-12-06 14:05 UTC'."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_facts() -> dict[str, Any]:
    """The CPU's model and flags (/proc/cpuinfo, through depthlib.models.fastpath), logical CPUs, load, Python, and
    torch's version, threads and oneDNN. Loads torch."""
    import torch

    from depthlib.models.fastpath import cpu_flags, cpu_has_native_bf16, cpu_name

    return {"model": cpu_name(), "flags": sorted(cpu_flags()), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(), "native_bf16": cpu_has_native_bf16(),
            "load_avg_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "python": platform.python_version()}


def cpu_summary() -> str:
    """'<CPU model>, <n> cores; flags: <the SIMD flags that change kernels: AVX2 / FMA / AVX-512 / AMX>'."""
    from depthlib.models.fastpath import cpu_flags, cpu_name

    keep = sorted(f for f in cpu_flags() if f.startswith(("avx2", "avx512", "amx")) or f == "fma")
    return f"{cpu_name()}, {os.cpu_count()} cores; flags: {' '.join(keep)}"


def proc_status_kib(pid: int | str = "self", key: str = "VmRSS") -> int:
    """A memory field of /proc/<pid>/status in KiB (VmRSS: resident now, VmHWM: its peak); 0 when the process is
    gone or has no such field."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------------------------- timing


def each_round(contenders: dict[str, Callable[[int], T]], rounds: int, *, rotate: bool = True) -> dict[str, list[T]]:
    """What each contender returns in each round; a round calls every contender once with the round's index, in
    turn, so that all of them see the same load on the machine (rotate: the order turns by one each round)."""
    names = list(contenders)
    out: dict[str, list[T]] = {k: [] for k in names}
    for r in range(rounds):
        shift = r % len(names) if rotate else 0
        for k in names[shift:] + names[:shift]:
            out[k].append(contenders[k](r))
    return out


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each contender per round (each_round, the order rotating), after `warmup` untimed calls of each."""
    for _ in range(warmup):
        for f in contenders.values():
            f()

    def timed(f: Callable[[], Any]) -> Callable[[int], float]:
        def run(_: int) -> float:
            t = time.perf_counter()
            f()
            return time.perf_counter() - t
        return run

    return each_round({k: timed(f) for k, f in contenders.items()}, rounds)


def ratios(values: dict[str, list[float]], base: str, *, higher_is_better: bool = False) -> dict[str, dict[str, float]]:
    """Per contender: median / min / max over rounds of its per-round ratio to `base` (above 1: better than base;
    values are times, or rates with higher_is_better), and "median_s", the median of its own values."""
    out = {}
    for k, vs in values.items():
        r = [v / b if higher_is_better else b / v for b, v in zip(values[base], vs)]
        out[k] = {"median": statistics.median(r), "min": min(r), "max": max(r), "median_s": statistics.median(vs)}
    return out


# ----------------------------------------------------------------------------------------------- results file

_HEADING = re.compile(r"## (.*)")
_FENCE = re.compile(r"\s*(```|~~~)")


def sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(preamble, [(heading, section text)]): markdown cut before each `## ` line outside a fenced block; a
    section's text runs from its heading line to the next one."""
    pre, secs, fenced = [], [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            secs.append((m.group(1).strip(), [line]))
        elif secs:
            secs[-1][1].append(line)
        else:
            pre.append(line)
    return "".join(pre), [(h, "".join(body)) for h, body in secs]


def merge_results(old: str, new: str, *, owns: Iterable[str] = (), keep_preamble: bool = False) -> str:
    """The new results text with the old text's sections that the script does not write kept in place (the rule in
    this module's docstring). `owns`: regular expressions, matched at the start of a heading's text. Where the old
    text has no such section (or is empty) -> `new` unchanged."""
    old_pre, old_secs = sections(old)
    new_pre, new_secs = sections(new)
    written = {h for h, _ in new_secs}
    patterns = [re.compile(p) for p in owns]

    def mine(heading: str) -> bool:
        return heading in written or any(p.match(heading) for p in patterns)

    keep_pre = keep_preamble and bool(old)
    if all(mine(h) for h, _ in old_secs) and not keep_pre:
        return new
    out = [(h, s, False) for h, s in new_secs]  # (heading, text, from the old file)
    for i, (heading, body) in enumerate(old_secs):
        if mine(heading):
            continue
        present = {h for h, _, _ in out}
        before = [h for h, _ in old_secs[:i] if h in present]
        if before:  # right after the nearest section before it that is still there
            at = 1 + max(j for j, (h, _, _) in enumerate(out) if h == before[-1])
        else:  # after as many of the script's new sections as it had of its old ones before it
            n = min(sum(mine(h) for h, _ in old_secs[:i]), len(new_secs))
            at = [j for j, (_, _, o) in enumerate(out) if not o][n - 1] + 1 if n else 0
        out.insert(at, (heading, body, True))
    text, prev_old = (old_pre, True) if keep_pre else (new_pre, False)
    for _, body, from_old in out:
        if (from_old or prev_old) and text and not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"  # a blank line on each side of what comes from the old file
        text, prev_old = text + body, from_old
    return text if text.endswith("\n") else text + "\n"


def write_results(path: str | os.PathLike[str], text: str, *, owns: Iterable[str] = (),
                  keep_preamble: bool = False) -> Path:
    """Write a script's results `text` to `path` atomically, keeping the old file's sections the script does not
    write (merge_results) -> path."""
    from depthlib.core.atomic import atomic_write_text

    out = Path(path)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    return atomic_write_text(out, merge_results(old, text, owns=owns, keep_preamble=keep_preamble))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Every number of a run as JSON (indent 1; what JSON cannot hold, as text), written atomically -> path."""
    import json

    from depthlib.core.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(data, indent=1, default=str))
