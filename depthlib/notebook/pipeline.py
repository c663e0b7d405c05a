"""Run the numbered notebooks in order with papermill: `python -m depthlib pipeline --profile sample`.

Parameters come from named profiles in notebooks/profiles/<name>.toml: a [common] table applied to
every notebook that declares the name, then one table per notebook. A name that no notebook's
`parameters` cell declares is refused (papermill alone only warns). A `[pipeline]` table may `skip`
notebooks the profile has no use for (e.g. `own` fine-tunes an existing model, so it never runs 02).
`--only` and `--set NB:name=value`
name a notebook by name or number (02_train or 02); both spellings of one notebook apply, in order,
and a notebook that does not exist (or, for --set, is not part of the run) is refused. Executed copies
go to runs/<run>/; the first failing notebook stops the run, keeps its executed copy and names the cell.
The lines a notebook prints show as it prints them (a text progress bar as its last state; notices of
depthlib.core.notices, "resumed ...", "nothing to train ...", as [pipeline] lines); `--quiet` shows only the notices,
after each notebook.
Training resumes what its out_dir holds; `--fresh` starts 02 and 03 over. Ctrl-C stops a run with one line
and exit status 130; the same command resumes it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import fits_default, parse_setting
from ..core.errors import ConfigError
from ..core.lock import LockError, hold_lock
from ..core.notices import NotebookLines, notices_in
from ..core.paths import display_path, project_root, resolve
from ..core.program import command_name

NOTEBOOKS = ("01_data_prep", "02_train", "03_finetune", "04_evaluate", "05_explore")


@dataclass
class Plan:
    """What one pipeline run executes: notebook -> parameters, and where the outputs go."""

    profile: str
    run_dir: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    skipped: str = ""   # why notebooks that --only names do not run (the profile's [pipeline] skip), if any do not
    skip: set[str] = field(default_factory=set)  # the profile's [pipeline] skip: notebooks it never runs


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged `parameters` in notebook `path` (literals only)."""
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path}: needs exactly one code cell tagged 'parameters', found {len(cells)}.")
    src = "".join(cells[0]["source"])
    out: dict[str, Any] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def notebook_named(name: str, what: str) -> str:
    """The notebook a user means by its name (02_train) or number (02); ConfigError naming `what` otherwise."""
    for nb in NOTEBOOKS:
        if name in (nb, nb[:2]):
            return nb
    raise ConfigError(f"{what}: there is no notebook {name!r}; use a name ({', '.join(NOTEBOOKS)}) "
                      f"or its number ({', '.join(nb[:2] for nb in NOTEBOOKS)}).")


def profile_path(name: str) -> Path:
    """notebooks/profiles/<name>.toml, or `name` itself when it is a path to a .toml file."""
    return Path(name) if name.endswith(".toml") else project_root() / "notebooks" / "profiles" / f"{name}.toml"


def load_profile(name: str) -> dict[str, Any]:
    """Read notebooks/profiles/<name>.toml (or a path to a .toml file)."""
    p = profile_path(name)
    if not p.is_file():
        known = sorted(x.stem for x in (project_root() / "notebooks" / "profiles").glob("*.toml"))
        raise ConfigError(f"profile {name!r} not found at {p}; known profiles: {known}.")
    with p.open("rb") as f:
        return tomllib.load(f)


def _check_type(nb: str, key: str, value: Any, default: Any) -> None:
    if not fits_default(value, default):
        raise ConfigError(f"{nb}: parameter {key!r} must be {type(default).__name__} like its default {default!r}, "
                          f"got {type(value).__name__} {value!r}.")


def _skipped(profile: str, table: dict[str, Any]) -> set[str]:
    """Notebooks a profile's [pipeline] table skips (never run, not even with --only)."""
    unknown = sorted(set(table) - {"skip"})
    if unknown:
        raise ConfigError(f"profile {profile!r}: [pipeline] has unknown key(s) {unknown}; it takes `skip`.")
    skip = table.get("skip", [])
    bad = sorted(set(skip) - set(NOTEBOOKS)) if isinstance(skip, list) else skip
    if bad:
        raise ConfigError(f"profile {profile!r}: [pipeline] skip must list notebooks of {list(NOTEBOOKS)}, got {bad!r}.")
    return set(skip)


def make_plan(profile: str, *, run_name: str | None = None, only: list[str] | None = None,
              overrides: list[str] | None = None, fresh: bool = False) -> Plan:
    """Resolve a profile into per-notebook parameters, refusing names no notebook declares.

    fresh=True sets resume=False in every notebook that declares it: training starts over.
    """
    prof = load_profile(profile)
    common = dict(prof.get("common", {}))
    unknown_tables = sorted(set(prof) - {"common", "outputs", "pipeline", *NOTEBOOKS})
    if unknown_tables:
        raise ConfigError(f"profile {profile!r}: unknown table(s) {unknown_tables}; use [common] or one of {list(NOTEBOOKS)}.")
    skip = _skipped(profile, prof.get("pipeline", {}))
    plan = Plan(profile=profile, run_dir=resolve(Path("runs") / (run_name or profile_path(profile).stem)))
    plan.outputs = dict(prof.get("outputs", {}))
    plan.skip = set(skip)
    if only is not None and not only:
        raise ConfigError(f"--only needs at least one notebook: a name ({', '.join(NOTEBOOKS)}) or its number (01-05).")
    wanted = None if only is None else {notebook_named(n, f"--only {n}") for n in only}
    names = [n for n in NOTEBOOKS if (wanted is None or n in wanted) and n not in skip]
    skips = (f"profile {profile!r} skips {{}} ([pipeline] skip = {json.dumps(sorted(skip))} in "
             f"{display_path(profile_path(profile))})")
    if wanted and wanted & skip:
        plan.skipped = skips.format(", ".join(sorted(wanted & skip)))
    declared: dict[str, dict[str, Any]] = {}
    for nb in NOTEBOOKS:
        path = project_root() / "notebooks" / f"{nb}.ipynb"
        if path.is_file():
            declared[nb] = notebook_parameters(path)
    extra: dict[str, dict[str, Any]] = {}
    for item in overrides or []:
        target, _, kv = item.partition(":")
        key, eq, raw = kv.partition("=")
        if not eq or not key:
            raise ConfigError(f"override {item!r} must look like NOTEBOOK:name=value (e.g. 02_train:epochs=3)")
        nb = notebook_named(target, f"--set {item}")
        if nb in skip:
            raise ConfigError(f"--set {item}: {skips.format(nb)}; drop the override, or use a profile that runs it.")
        if nb not in names:
            raise ConfigError(f"--set {item}: {nb} is not part of this run (--only {' '.join(only or [])}); "
                              f"add it to --only or drop the override.")
        extra.setdefault(nb, {})[key] = parse_setting(raw)  # "02:" and "02_train:" name one notebook: both apply, in order
    all_declared = set().union(*declared.values()) if declared else set()
    stray = sorted(set(common) - all_declared)
    if stray:
        raise ConfigError(f"profile {profile!r}: [common] sets {stray}, which no notebook declares.")
    for nb in names:
        if nb not in declared:
            if nb in prof:
                raise ConfigError(f"profile {profile!r} configures {nb}, but notebooks/{nb}.ipynb does not exist.")
            continue
        params = {k: v for k, v in common.items() if k in declared[nb]}
        params.update(prof.get(nb, {}))
        params.update(extra.get(nb, {}))
        if fresh and "resume" in declared[nb]:
            if params.get("resume") is True and "resume" in extra.get(nb, {}):
                raise ConfigError(f"--fresh starts {nb} over, but --set asks it to resume; drop one of them.")
            params["resume"] = False
        unknown = sorted(set(params) - set(declared[nb]))
        if unknown:
            raise ConfigError(f"{nb}: unknown parameter(s) {unknown}; the notebook declares {sorted(declared[nb])}.")
        for k, v in params.items():
            _check_type(nb, k, v, declared[nb][k])
        plan.steps[nb] = params
    return plan


LOCK_NAME = ".pipeline.lock"


def output_folders(plan: Plan) -> list[Path]:
    """The folders a run writes: its runs/ folder and those of the profile's [outputs] (a file's parent)."""
    folders = {plan.run_dir}
    for where in plan.outputs.values():
        p = resolve(where)
        folders.add(p.parent if p.suffix else p)
    return sorted(folders)


def run(plan: Plan, *, progress: bool = True, log_output: bool = False, stream: bool = True) -> Plan:
    """Execute the plan's notebooks in order; raise SystemExit naming the failing notebook and cell.

    stream: show each line a notebook prints as it prints it (depthlib.core.notices.NotebookLines: a text progress bar
    as one line, a notice as a [pipeline] line); otherwise only the notices, once the notebook has run.
    log_output: papermill's own log of every output instead (each progress redraw, displayed values).
    Holds a lock (LOCK_NAME, with this pid) in every output folder while it runs: a second run of the
    same profile is refused with depthlib.core.lock.LockError instead of training into the same out_dir.
    """
    with contextlib.ExitStack() as locks:
        for folder in output_folders(plan):
            before = locks.enter_context(hold_lock(folder / LOCK_NAME, f"the output folder of profile {plan.profile!r}"))
            if before:
                print(f"[pipeline] took over {folder / LOCK_NAME} from a run that ended without releasing it ({before})")
        return _run_locked(plan, progress=progress, log_output=log_output, stream=stream and not log_output)


def import_papermill() -> Any:
    """papermill, imported without jsonschema's optional IRI grammar.

    papermill imports nbformat, nbformat jsonschema, and jsonschema loads rfc3987_syntax when it is installed
    (JupyterLab's jupyter-events brings it): that module builds an Earley parser of RFC 3987 at import, 4.4 s of
    every `depthlib pipeline` start (2-core AMD EPYC, 2026-12-06, `python -X importtime`). It only serves the "iri"
    formats of a jsonschema FormatChecker, which nbformat's notebook validation does not use; the kernels never
    import it. Afterwards the name is importable again for anything else in the process.
    """
    blocked = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # `import` then raises ImportError
    try:
        import papermill
    finally:
        if blocked and sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
    return papermill


def _run_locked(plan: Plan, *, progress: bool, log_output: bool, stream: bool) -> Plan:
    pm = import_papermill()
    from papermill.exceptions import PapermillExecutionError

    from .pipeline_kernel import PipelineKernelManager

    plan.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for nb, params in plan.steps.items():
        src = project_root() / "notebooks" / f"{nb}.ipynb"
        dst = plan.run_dir / f"{nb}.ipynb"
        t0 = time.perf_counter()
        print(f"[pipeline] {nb}: running -> {dst.relative_to(project_root()) if dst.is_relative_to(project_root()) else dst}",
              flush=True)
        shown = (NotebookLines(nb, sys.stdout), NotebookLines(nb, sys.stdout)) if stream else (None, None)
        try:
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3", progress_bar=progress,
                                log_output=log_output, stdout_file=shown[0], stderr_file=shown[1],
                                cwd=str(project_root()), kernel_manager_class=PipelineKernelManager)
        except PapermillExecutionError as e:
            raise SystemExit(
                f"[pipeline] {nb} FAILED in cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: {e.evalue}\n"
                f"[pipeline] executed copy kept at {dst}; later notebooks were not run."
            ) from None
        finally:
            for lines in shown:
                if lines is not None:
                    lines.close()
        if not stream:  # streamed, they have been shown already
            for msg in notices_in(json.loads(dst.read_text())):
                print(f"[pipeline] {nb}: {msg}", flush=True)
        print(f"[pipeline] {nb}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    for line in outputs_report(plan, started):
        print(f"[pipeline] {line}")
    return plan


def _written_since(path: Path, since: float) -> bool:
    """Whether the file `path`, or a file anywhere under the folder `path`, was modified at or after `since`."""
    if path.is_file():
        return path.stat().st_mtime >= since
    return path.is_dir() and any(f.is_file() and f.stat().st_mtime >= since for f in path.rglob("*"))


def outputs_report(plan: Plan, since: float) -> list[str]:
    """Lines on the profile's [outputs] after a run that started at `since` (time.time()): each output this run wrote,
    and, when notebooks after those that ran were left out (--only), that they did not run and what they wrote
    before is older than this run's outputs."""
    ran = [nb for nb in NOTEBOOKS if nb in plan.steps]
    lines, old = [], []
    for what, where in plan.outputs.items():
        path = resolve(where)
        (lines if _written_since(path, since - 1.0) else old).append(f"{what}: {display_path(path)}")
    later = [nb for nb in NOTEBOOKS if ran and nb > ran[0] and nb not in plan.steps and nb not in plan.skip]
    if later:
        unwritten = f" (not written by this run: {'; '.join(old)})" if old else ""
        lines.append(f"note: {', '.join(later)} did not run, so what they wrote before{unwritten} is older than what "
                     f"{', '.join(ran)} wrote now; run them too (--only {' '.join(nb[:2] for nb in later)}, or no "
                     "--only) to bring it up to date.")
    return lines


def _show_papermill_log() -> None:
    """papermill streams cell output through its logger at INFO, which no handler shows by default."""
    import logging

    log = logging.getLogger("papermill")
    log.setLevel(logging.INFO)
    if not any(getattr(h, "_depthlib", False) for h in log.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._depthlib = True  # type: ignore[attr-defined]
        log.addHandler(h)


class CtrlC:
    """The pipeline's SIGINT handler: KeyboardInterrupt in the main thread, as Python's own, and a watchdog.

    Ctrl-C lands wherever papermill's event loop happens to be; once in a rare while (under load, a few runs in a
    hundred) the KeyboardInterrupt was lost there and the run went on waiting for its notebook's cell, the user's
    Ctrl-C ignored. If main() has not reached its handler `grace_s` after the signal, the watchdog raises it again
    in the main thread (`retries` times), then says the line main() would have said, kills the kernels this process
    started (pipeline_kernel.kill_kernels) and exits with 130 at once.
    """

    def __init__(self, message: str, *, grace_s: float = 5.0, retries: int = 2) -> None:
        self.message, self.grace_s, self.retries = message, grace_s, retries
        self.handled = threading.Event()     # main() set it in its except clause
        self._watching = False

    def __call__(self, signum: int, frame: Any) -> None:
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, name="ctrl-c watchdog", daemon=True).start()
        raise KeyboardInterrupt

    def _watch(self) -> None:
        import _thread

        for _ in range(self.retries):
            if self.handled.wait(self.grace_s):
                return
            _thread.interrupt_main(signal.SIGINT)      # calls this handler in the main thread: raise it again
        if self.handled.wait(self.grace_s):
            return
        from .pipeline_kernel import kill_kernels

        kill_kernels()
        print(self.message, file=sys.stderr, flush=True)
        os._exit(130)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: python -m depthlib pipeline [--profile sample] [--only 02 03] [--set 02_train:epochs=3]."""
    ap = argparse.ArgumentParser(prog=f"{command_name()} pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="sample", help="profile name in notebooks/profiles/ or a .toml path")
    ap.add_argument("--run-name", default=None, help="folder under runs/ for executed notebooks (default: the profile's name)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NB",
                    help="run only these notebooks, by name or number (e.g. 02 03)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="NB:NAME=VALUE",
                    help="override one parameter of a notebook named by name or number, e.g. --set 02:epochs=3 or "
                         "--set 03:freeze_encoder_bn=true (values as --dry-run prints them, or Python literals; "
                         "repeatable; later settings of the same name win)")
    ap.add_argument("--fresh", action="store_true",
                    help="start training over (resume=False in 02 and 03), replacing their earlier checkpoints")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved parameters and stop")
    ap.add_argument("--quiet", action="store_true",
                    help="do not show the lines the notebooks print as they run (notices still follow each notebook)")
    ap.add_argument("--log-output", action="store_true",
                    help="show papermill's log of every notebook output instead: each progress-bar redraw, displayed values")
    a = ap.parse_args(argv)
    try:
        plan = make_plan(a.profile, run_name=a.run_name, only=a.only, overrides=a.overrides, fresh=a.fresh)
    except ConfigError as e:
        print(f"[pipeline] error: {e}", file=sys.stderr)
        return 2
    if plan.skipped and not plan.steps:
        print(f"[pipeline] error: --only {' '.join(a.only)}: {plan.skipped}: nothing to run.", file=sys.stderr)
        return 2
    if plan.skipped:
        print(f"[pipeline] note: {plan.skipped}; running the rest of --only.", file=sys.stderr)
    if a.dry_run:
        print(json.dumps(plan.steps, indent=2))
        return 0
    if a.log_output:
        _show_papermill_log()
    again = ("re-run the same command to start over, or without --fresh to resume from the last checkpoint"
             if a.fresh else "re-run the same command to resume")
    ctrl_c = CtrlC(f"[pipeline] interrupted: {again}")
    previous = signal.signal(signal.SIGINT, ctrl_c) if threading.current_thread() is threading.main_thread() else None
    try:
        run(plan, log_output=a.log_output, stream=not a.quiet)
    except LockError as e:
        print(f"[pipeline] error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C lands in papermill's event loop; its traceback says nothing a user needs. The kernel (a session of
        # its own, so the terminal's SIGINT never reached it) is shut down at exit by nbclient's atexit hook: a second
        # Ctrl-C meanwhile would only add a traceback to it.
        ctrl_c.handled.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(ctrl_c.message, file=sys.stderr)
        return 130
    finally:
        if previous is not None and signal.getsignal(signal.SIGINT) is ctrl_c:
            signal.signal(signal.SIGINT, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
