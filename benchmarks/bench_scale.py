"""Rehearse the full `nyu` run at its real scale on a stand-in nyu_data.zip: 01 prep, 02 training, 04 evaluation, kill -9.

Usage (the full-scale measurement; ~45 min on 2 idle cores, ~9 GB under --workdir):
    nice -n 15 .venv/bin/python benchmarks/bench_scale.py --frames 51342 --workdir /tmp/depth_scale
Smoke run:  ... --frames 2000 --label "N=2,000 smoke run"

Stages (--stages, default all, in this order), each in a fresh subprocess so that its peak RSS is its own;
each writes <workdir>/results/<stage>.json and is skipped when that file exists for the same --frames
(--force reruns). The section of --out (default benchmarks/RESULTS_scale.md) named by --label is then
rewritten from the JSON files.

- gen:   the stand-in archive (depthlib.data.standin): wall, CPU, bytes per frame.
- prep:  the calls notebook 01 makes with the `nyu` profile's parameters (read from notebooks/profiles/nyu.toml
         and the notebook's defaults; a new call in the notebook stops this script), source_path = the stand-in:
         wall, CPU, frames/s, per-frame cost and RSS at 5K / 20K / all frames, peak RSS, file size, split.
- train: depthlib.training.train.fit on the prepared file, --steps steps, num_workers=2, 224x320, --model: loader wait as
         a share of step time, RSS (main + workers) at steps 100 and 300, loader-only samples/s, and a resume
         (mid-epoch at full scale) for --resume-steps (20) more steps.
- eval:  04's calls: the mean-depth baseline over the training frames, then depthlib.evaluation.evaluate of the trained
         model and the baseline on the 654 test frames read from the zip (protocol densedepth): time, peak RSS.
- kill:  the prep again into <workdir>/kill, SIGKILL at --kill-at of the frames, re-run: resumes, and the file
         must equal the prep stage's frame for frame.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from _common import ROOT, cpu_facts, proc_status_kib, script_parser, utc_stamp, write_results

STAGES = ("gen", "prep", "train", "eval", "kill")
NB01_CALLS = {"open_source", "list_sources", "workbook.frame_rows", "workbook.spread", "viz.depth_grid",
              "workbook.split_labels", "workbook.select", "workbook.check_split", "workbook.hole_demo", "workbook.prepare",
              "workbook.with_holes_filled"}
FULL_TRAIN = 50688


# ----------------------------------------------------------------------------------------------- memory

def _status(pid: int | str, key: str) -> float:
    """A /proc/<pid>/status memory field in MB (0 when the process is gone)."""
    return proc_status_kib(pid, key) / 1024


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def rss(pid: int | None = None) -> dict[str, float]:
    """RSS in MB of a process ("main"), of its child processes ("workers"), and its peak so far ("main_peak")."""
    pid = pid or os.getpid()
    kids = _children(pid)
    return {"main": _status(pid, "VmRSS"), "workers": sum(_status(c, "VmRSS") for c in kids),
            "n_workers": len(kids), "main_peak": _status(pid, "VmHWM")}


class Sampler(threading.Thread):
    """Samples main + worker RSS every `every` s in the background; .peak and .series (t, MB)."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every, self.series, self.peak, self._stop_flag = every, [], 0.0, threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self._stop_flag.wait(self.every):
            r = rss()
            total = r["main"] + r["workers"]
            self.peak = max(self.peak, total)
            self.series.append((round(time.perf_counter() - self.t0, 1), round(total, 1)))

    def stop(self) -> "Sampler":
        self._stop_flag.set()
        self.join()
        return self


def trimmed_main_rss() -> float:
    """Main RSS in MB after glibc's malloc_trim(0): heap pages freed but kept cached by malloc go back to the OS,
    so what remains is memory in use (a leak shows here; the allocator's swings with autograd buffers do not)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: report the plain RSS
        pass
    return _status(os.getpid(), "VmRSS")


def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) so that the next step's peak is its own (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


# ----------------------------------------------------------------------------------------------- notebook 01

def nb01_params(a: argparse.Namespace, prepared: Path, figures: Path) -> dict[str, Any]:
    """Notebook 01's parameters as the `nyu` profile sets them, pointed at the stand-in and the work folder."""
    from depthlib.notebook.pipeline import make_plan, notebook_parameters

    nb = ROOT / "notebooks" / "01_data_prep.ipynb"
    code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    calls = set(re.findall(r"\b((?:workbook|viz)\.\w+|open_source|list_sources)\(", code))
    if calls != NB01_CALLS:
        raise SystemExit(f"notebooks/01_data_prep.ipynb now calls {sorted(calls ^ NB01_CALLS)} beyond what this benchmark "
                         "replays; update run_nb01 and NB01_CALLS in benchmarks/bench_scale.py.")
    p = {**notebook_parameters(nb), **make_plan("nyu", only=["01"]).steps["01_data_prep"]}
    if a.hole_demo is not None:
        p["hole_demo"] = a.hole_demo
    return {**p, "source_path": str(zip_path(a)), "prepared_path": str(prepared), "figure_dir": str(figures)}


def probe(src: Any, every: int, hook: Callable[[int], None]) -> Any:
    """Call hook(reads) every `every` frame reads of src; the class keeps its name, so the file's fingerprint does too."""
    cls, lock, count = type(src), threading.Lock(), [0]

    def getitem(self: Any, i: int) -> Any:
        with lock:
            count[0] += 1
            k = count[0]
        if k % every == 0:
            hook(k)
        return cls.__getitem__(self, i)

    src.__class__ = type(cls.__name__, (cls,), {"__getitem__": getitem, "__module__": cls.__module__})
    return src


def run_nb01(p: dict[str, Any], hook: Callable[[int], None] | None = None, every: int = 100) -> dict[str, Any]:
    """Notebook 01's cells, call for call (see notebooks/01_data_prep.ipynb) -> timings and counts."""
    from depthlib.data import list_sources, open_source
    from depthlib.figures import viz
    from depthlib.notebook import workbook

    t, out = time.perf_counter(), {}
    src = open_source(p["source"], p["source_path"], **p["source_options"])
    list_sources()
    out["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    shown = workbook.frame_rows(src, workbook.spread(len(src), p["n_show"]))
    viz.depth_grid(shown, ["image", "depth"], titles=["RGB", "depth (m)"], path=f"{p['figure_dir']}/01_frames.png")
    out["figure_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = workbook.split_labels(src, split_file=p["split_file"], val_frac=p["val_frac"], test_frac=p["test_frac"],
                                   seed=p["seed"])
    indices, selection = workbook.select(src, scenes=p["scenes"], scene_fraction=p["scene_fraction"], stride=p["stride"],
                                         seed=p["seed"])
    workbook.check_split(src, labels, indices, split_file=p["split_file"], allow_uneven=p["allow_uneven_split"])
    out["split_select_s"] = time.perf_counter() - t
    t = time.perf_counter()
    workbook.hole_demo(p["hole_demo"], method=p["hole_fill"], path=f"{p['figure_dir']}/01_holes.png")
    out["hole_demo_s"] = time.perf_counter() - t
    source = workbook.with_holes_filled(src, p["hole_fill"])
    if hook is not None:
        source = probe(source, every, hook)
    out["peak_rss_before_prepare_mb"] = rss()["main_peak"]  # the figure and the hole demo (a sparse solve)
    reset_peak()
    t = time.perf_counter()
    prepared = workbook.prepare(source, p["prepared_path"], labels=labels, indices=indices, selection=selection,
                                overwrite=p["overwrite"])
    out["prepare_s"] = time.perf_counter() - t
    out["peak_rss_prepare_mb"] = rss()["main_peak"]
    counts = Counter(prepared.splits)
    scenes = prepared.scenes
    splits = prepared.splits
    out.update(n_frames=len(indices), split_frames=dict(counts),
               val_scenes=len({s for s, x in zip(scenes, splits) if x == "val"}),
               train_scenes=len({s for s, x in zip(scenes, splits) if x == "train"}))
    assert counts["train"] > 0 and counts["val"] > 0, "need training and validation frames"  # notebook 01's check
    return out


# ----------------------------------------------------------------------------------------------- stages

def zip_path(a: argparse.Namespace) -> Path:
    return Path(a.workdir) / "nyu_data.zip"


def prepared_path(a: argparse.Namespace) -> Path:
    return Path(a.workdir) / "prepared" / "nyu_train.h5"


def stage_gen(a: argparse.Namespace) -> dict[str, Any]:
    """Write the stand-in; calibrate CPU per train / test frame to extrapolate to 51,342 frames on 2 cores."""
    import zipfile

    from depthlib.data.standin import FULL_TEST, StandinSettings, _Renderer, write_standin

    c0 = cpu_s()
    info = write_standin(zip_path(a), n_frames=a.frames, n_test=a.test_frames, n_scenes=a.scenes or None,
                         workers=a.gen_workers, progress=False)
    cpu = cpu_s() - c0
    z = zipfile.ZipFile(info.path)
    train = [i.file_size for i in z.infolist() if i.filename.startswith("data/nyu2_train/")]
    test = [i.file_size for i in z.infolist() if i.filename.startswith("data/nyu2_test/")]
    r = _Renderer(str(ROOT / "data" / "sample"), StandinSettings())
    c = time.process_time()
    for k in range(60):
        r.train(k // 20, k % 20 * 9, 180)  # three scenes: the per-scene zoom amortised as over ~180 frames
    t_train = (time.process_time() - c) / 60
    c = time.process_time()
    for k in range(12):
        r.test(k)
    t_test = (time.process_time() - c) / 12
    full_cpu = FULL_TRAIN * t_train + FULL_TEST * t_test
    return {"wall_s": info.seconds, "cpu_s": cpu, "frames_per_s": info.frames_per_s, "bytes": info.bytes,
            "n_train": info.n_train, "n_test": info.n_test, "n_scenes": info.n_scenes, "workers": a.gen_workers,
            "train_kb_per_frame": sum(train) / max(1, len(train) / 2) / 1e3, "test_kb_per_frame": sum(test) / max(1, len(test) / 2) / 1e3,
            "cpu_ms_train_frame": 1e3 * t_train, "cpu_ms_test_frame": 1e3 * t_test,
            "full_bytes_est": FULL_TRAIN * sum(train) / max(1, len(train) / 2) + FULL_TEST * sum(test) / max(1, len(test) / 2),
            "full_wall_s_est_2cores": full_cpu / 2}


def stage_prep(a: argparse.Namespace) -> dict[str, Any]:
    """Notebook 01 with the nyu profile on the stand-in, per-frame cost and RSS sampled along the way."""
    out = prepared_path(a)
    for f in (out, out.with_name(out.name + ".partial")):
        f.unlink(missing_ok=True)
    p = nb01_params(a, out, Path(a.workdir) / "figures")
    marks: list[dict[str, float]] = []
    t0, c0 = time.perf_counter(), time.process_time()

    def hook(k: int) -> None:
        marks.append({"frames": k, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, **rss()})

    sampler = Sampler()
    sampler.start()
    res = run_nb01(p, hook, every=100)
    sampler.stop()
    from depthlib.data.prepared import verify_prepared

    t = time.perf_counter()
    bad = verify_prepared(out)
    import h5py

    with h5py.File(out) as f:
        copied = int(f.attrs["rgb_jpeg_copied"])
    return {**res, "marks": marks, "peak_rss_mb": rss()["main_peak"], "bytes": out.stat().st_size,
            "kb_per_frame": out.stat().st_size / res["n_frames"] / 1e3, "jpeg_copied": copied,
            "verify_s": time.perf_counter() - t, "verify_bad": len(bad), "rss_series": sampler.series[::10]}


def _fit_args(a: argparse.Namespace, n_train: int) -> dict[str, Any]:
    steps_per_epoch = math.ceil(n_train / a.batch)
    return {"epochs": math.ceil((a.steps + a.resume_steps) / steps_per_epoch), "batch_size": a.batch, "num_workers": 2,
            "device": "cpu", "out_dir": str(Path(a.workdir) / "train"), "progress": False, "lr": 1e-4}


def stage_train(a: argparse.Namespace) -> dict[str, Any]:
    """fit for --steps steps with 2 loader workers; loader wait, RSS at steps 100 / 300; resume; loader-only rate."""
    import torch

    from depthlib.core.config import DataConfig, TrainConfig
    from depthlib.data.dataset import make_loader
    from depthlib.models import create_model
    from depthlib.models.checkpoint import load_checkpoint
    from depthlib.notebook import workbook
    from depthlib.training.callbacks import Callback, TrainState
    from depthlib.training.train import fit

    shutil.rmtree(Path(a.workdir) / "train", ignore_errors=True)
    data = DataConfig(image_size=tuple(a.image_size))
    sets = workbook.training_sets(str(prepared_path(a)), data)
    kwargs = json.loads(a.model_kwargs)
    marks: dict[int, dict[str, float]] = {}
    at = {1, 10, 100, 200, 300, a.steps}
    # RSS growth between step 100 and the last: the median of main (trimmed) + workers over the 21 steps around each
    # (runs shorter than 130 steps have no two separate windows: no growth figure)
    windows = {"100": range(90, 111), "last": range(a.steps - 20, a.steps + 1)} if a.steps >= 130 else {}
    window_rss: dict[str, list[float]] = {k: [] for k in windows}

    class Probe(Callback):
        def on_train_start(self, state: TrainState) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, state: TrainState) -> None:
            if state.step in at:
                marks[state.step] = {"wall_s": time.perf_counter() - self.t0, "wait_s": state.data_wait_s, **rss()}
            for k, steps in windows.items():
                if state.step in steps:
                    window_rss[k].append(trimmed_main_rss() + rss()["workers"])

    cfg = TrainConfig(**_fit_args(a, len(sets["train"])), max_steps=a.steps, data=workbook.data_settings(data))
    torch.manual_seed(0)
    t = time.perf_counter()
    hist = fit(create_model(a.model, **kwargs), sets["train"], sets["val"], cfg, callbacks=[Probe()])
    wall = time.perf_counter() - t
    first, last = marks[10], marks[a.steps]
    ckpt = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    res: dict[str, Any] = {
        "model": a.model, "model_kwargs": kwargs, "batch": a.batch, "image_size": list(a.image_size), "steps": a.steps, "epochs_cfg": cfg.epochs,
        "n_train": len(sets["train"]), "n_val": len(sets["val"]), "wall_s": wall, "torch_threads": torch.get_num_threads(),
        "marks": {str(k): v for k, v in sorted(marks.items())},
        "wait_pct": 100 * (last["wait_s"] - first["wait_s"]) / (last["wall_s"] - first["wall_s"]),
        "wait_pct_all": 100 * last["wait_s"] / last["wall_s"], "epochs_done": len(hist.epochs),
        "stopped_at_batch": int(ckpt["extra"]["batch_in_epoch"]), "steps_per_epoch": math.ceil(len(sets["train"]) / a.batch)}
    if 100 in marks:
        m1, m3 = marks[100], marks[a.steps]
        res["rss_growth_instant_pct"] = 100 * ((m3["main"] + m3["workers"]) / (m1["main"] + m1["workers"]) - 1)
    if window_rss and all(window_rss.values()):
        med = {k: statistics.median(v) for k, v in window_rss.items()}
        res["rss_window_mb"] = med
        res["rss_growth_pct"] = 100 * (med["last"] / med["100"] - 1)
    # Resume: the same command again with --resume-steps more picks up last.pt (mid-epoch unless it stopped at an epoch end).
    marks.clear()
    resumed: dict[str, float] = {}

    class First(Callback):
        def on_train_start(self, state: TrainState) -> None:
            resumed["start_step"] = state.step
            resumed["setup_s"] = time.perf_counter() - t

        def on_step_end(self, state: TrainState) -> None:
            resumed.setdefault("first_step_s", time.perf_counter() - t)
            resumed["end_step"] = state.step

    cfg2 = TrainConfig(**_fit_args(a, len(sets["train"])), max_steps=a.steps + a.resume_steps, data=workbook.data_settings(data))
    t = time.perf_counter()
    fit(create_model(a.model, **kwargs), sets["train"], sets["val"], cfg2, callbacks=[First()])
    res["resume"] = {**resumed, "wall_s": time.perf_counter() - t}
    # Loader alone, 2 workers: what it can feed a GPU, at this size and at the nyu profile's 480x640.
    rates = {}
    for size in (tuple(a.image_size), (480, 640)):
        ds = workbook.training_sets(str(prepared_path(a)), DataConfig(image_size=size), splits=("train",))["train"]
        loader = make_loader(ds, batch_size=a.batch, shuffle=True, num_workers=2, seed=0)
        it = iter(loader)
        for _ in range(3):
            next(it)
        t, n = time.perf_counter(), 0
        for _ in range(a.loader_batches):
            n += len(next(it)["image"])
        rates[f"{size[0]}x{size[1]}"] = n / (time.perf_counter() - t)
        del it, loader
    res["loader_samples_per_s_2workers"] = rates
    res["peak_rss_main_mb"] = rss()["main_peak"]
    return res


def stage_eval(a: argparse.Namespace) -> dict[str, Any]:
    """04's evaluation calls on the trained model: baseline over training frames, then the 654 test frames."""
    from depthlib.notebook import workbook

    prepared = str(prepared_path(a))
    sampler = Sampler()
    sampler.start()
    t = time.perf_counter()
    model = workbook.inference_model(str(Path(a.workdir) / "train" / "last.pt"))
    test = workbook.eval_frames(prepared, "test", source="densedepth", path=str(zip_path(a)), options={"split": "test"})
    train = workbook.frames(prepared, "train")
    rss_start = rss()["main"]
    t = time.perf_counter()
    baseline = workbook.mean_depth_baseline(train)
    base_s = time.perf_counter() - t
    rss_after_baseline = rss()["main"]
    times, metrics = {}, {}
    for name, m in (("current", model), ("mean-depth baseline", baseline)):
        t = time.perf_counter()
        r = workbook.evaluate_all({name: m}, test, protocol="densedepth", flip_average=True, device="cpu")[name]
        times[name] = time.perf_counter() - t
        metrics[name] = {k: r.metrics[k] for k in ("abs_rel", "delta1", "rmse")}
    sampler.stop()
    return {"n_test": len(test), "n_train_frames": len(train), "baseline_s": base_s, "eval_s": times, "metrics": metrics,
            "rss_start_mb": rss_start, "rss_after_baseline_mb": rss_after_baseline, "rss_end_mb": rss()["main"],
            "peak_rss_mb": rss()["main_peak"], "rss_series": sampler.series[::4]}


def stage_kill(a: argparse.Namespace) -> dict[str, Any]:
    """Prep into <workdir>/kill, SIGKILL at --kill-at, re-run; compare with the prep stage's file frame for frame."""
    import h5py
    import numpy as np

    from depthlib.core.errors import DataError
    from depthlib.data.prepared import PreparedDataset, verify_prepared

    kdir = Path(a.workdir) / "kill"
    shutil.rmtree(kdir, ignore_errors=True)
    out, ref = kdir / "nyu_train.h5", prepared_path(a)
    with h5py.File(ref) as f:
        n = int(f["depth"].shape[0])
    cmd = [sys.executable, __file__, "--worker", "kill-child", "--frames", str(a.frames), "--workdir", a.workdir]
    if a.hole_demo is not None:
        cmd += ["--hole-demo", a.hole_demo]
    t = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("reads ") and int(line.split()[1]) >= a.kill_at * n:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    killed_after = time.perf_counter() - t
    partial = out.with_name(out.name + ".partial")
    absent = not out.exists()
    if child.returncode != -signal.SIGKILL or not partial.exists():
        raise SystemExit(f"the prep finished (exit {child.returncode}) before the kill at {a.kill_at:.0%}; lower --kill-at.")
    with h5py.File(partial) as f:
        written = int(f.attrs["n_written"])
    try:
        PreparedDataset(str(partial))
        refused = False
    except DataError:
        refused = True
    t = time.perf_counter()
    subprocess.run(cmd + ["--no-kill-progress"], check=True, stdout=subprocess.DEVNULL)
    rerun = time.perf_counter() - t
    mismatched = []
    with h5py.File(out) as f, h5py.File(ref) as g:
        same_tables = all(np.array_equal(f[k][()], g[k][()]) for k in
                          ("rgb_jpeg", "rgb_offset", "source_index", "name", "scene_id", "split_id", "crc32", "scene_names"))
        for k in range(n):
            if not (np.array_equal(f["depth"][k], g["depth"][k]) and np.array_equal(f["valid"][k], g["valid"][k])):
                mismatched.append(k)
        same_fp = f.attrs["fingerprint"] == g.attrs["fingerprint"]
    return {"n_frames": n, "kill_at": a.kill_at, "returncode": child.returncode, "killed_after_s": killed_after,
            "n_written_at_kill": written, "partial_refused": refused, "final_absent_at_kill": absent,
            "rerun_s": rerun, "identical": same_tables and not mismatched and same_fp, "mismatched_frames": len(mismatched),
            "verify_bad": len(verify_prepared(out))}


def kill_child(a: argparse.Namespace) -> None:
    """The prep stage's calls into <workdir>/kill, printing progress for the parent to kill at."""
    out = Path(a.workdir) / "kill" / "nyu_train.h5"
    p = nb01_params(a, out, Path(a.workdir) / "kill" / "figures")

    def hook(k: int) -> None:
        if not a.no_kill_progress:
            sys.stdout.write(f"reads {k}\n")
            sys.stdout.flush()

    run_nb01(p, hook, every=50)


# ----------------------------------------------------------------------------------------------- report

def machine() -> dict[str, Any]:
    """CPU model and flags, cores, memory, versions."""
    import h5py
    import PIL

    cpu = cpu_facts()
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {"cpu": cpu["model"], "flags": " ".join(cpu["flags"]), "cores": cpu["logical_cpus"],
            "mem_gb": int(mem.group(1)) / 2**20 if mem else 0, "python": cpu["python"], "torch": cpu["torch"],
            "h5py": h5py.__version__, "pillow": PIL.__version__, "load": os.getloadavg()}


def _ms_per_frame(marks: list[dict[str, float]], at: int) -> tuple[float, float, dict[str, float]] | None:
    """(wall, cpu) ms per frame over the window ending at `at` reads (a fifth of it, at most 1000 frames), RSS there."""
    end = min(marks, key=lambda m: abs(m["frames"] - at))
    if abs(end["frames"] - at) > 100:
        return None
    window = min(1000, at // 5)
    start = min(marks, key=lambda m: abs(m["frames"] - (end["frames"] - window)))
    d = end["frames"] - start["frames"]
    if d <= 0:
        return None
    return 1e3 * (end["wall_s"] - start["wall_s"]) / d, 1e3 * (end["cpu_s"] - start["cpu_s"]) / d, end


def smaller_options(a: argparse.Namespace) -> str:
    """The size options this run set away from their defaults (a test's smaller run), as command-line text."""
    return "".join(f" --{k.replace('_', '-')} " + " ".join(shlex.quote(str(x)) for x in (v if isinstance(v, list) else [v]))
                   for k, v in a.changed_sizes.items())


def render(a: argparse.Namespace, r: dict[str, Any], m: dict[str, Any]) -> str:
    """The markdown section of this run."""
    L = [f"## {a.label}", "", f"<!-- bench_scale:{a.label} -->", "",
         f"Command: `nice -n 15 .venv/bin/python benchmarks/bench_scale.py --frames {a.frames} --workdir {a.workdir} "
         f"--steps {a.steps} --model {a.model} --model-kwargs '{a.model_kwargs}'{smaller_options(a)} --label \"{a.label}\"`", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']:.0f} GiB RAM; Python {m['python']}, torch {m['torch']}, "
         f"h5py {m['h5py']}, Pillow {m['pillow']}. Load average at the end {m['load'][0]:.1f} / {m['load'][1]:.1f} / "
         f"{m['load'][2]:.1f} (1/5/15 min). Date {m['date']}.", "",
         f"<details><summary>CPU flags</summary>\n\n`{m['flags']}`\n\n</details>", ""]
    if "gen" in r:
        g = r["gen"]
        L += ["### Stand-in archive (gen)", "",
              "| frames (train + test) | scenes | zip | train KB/frame | test KB/frame | wall | CPU | frames/s | "
              "CPU ms / train frame | CPU ms / test frame | 51,342 frames: size, 2 cores |", "|---|---|---|---|---|---|---|---|---|---|---|",
              f"| {g['n_train']:,} + {g['n_test']} | {g['n_scenes']} | {g['bytes'] / 1e9:.2f} GB | {g['train_kb_per_frame']:.1f} | "
              f"{g['test_kb_per_frame']:.0f} | {g['wall_s']:.0f} s | {g['cpu_s']:.0f} s | {g['frames_per_s']:.1f} | "
              f"{g['cpu_ms_train_frame']:.1f} | {g['cpu_ms_test_frame']:.0f} | {g['full_bytes_est'] / 1e9:.2f} GB, "
              f"~{g['full_wall_s_est_2cores'] / 60:.1f} min |", ""]
    if "prep" in r:
        p = r["prep"]
        marks = p["marks"]
        n = p["n_frames"]
        L += ["### 01 data prep, `nyu` profile (prep)", "",
              f"{n:,} train-half frames -> {p['bytes'] / 1e9:.3f} GB ({p['kb_per_frame']:.1f} KB/frame), "
              f"{p['jpeg_copied']:,} JPEGs copied as stored. Split: {p['split_frames']} "
              f"({p['train_scenes']} train scene(s), {p['val_scenes']} validation scene(s)). Whole notebook-01 replay: "
              f"open {p['open_s']:.1f} s, figure {p['figure_s']:.1f} s, split + select {p['split_select_s']:.1f} s, "
              f"hole demo {p['hole_demo_s']:.1f} s, **prepare {p['prepare_s']:.0f} s = {n / p['prepare_s']:.1f} frames/s**. "
              f"Peak RSS: **{p['peak_rss_prepare_mb']:.0f} MB during prepare**, {p['peak_rss_before_prepare_mb']:.0f} MB "
              "before it (the frames figure and the hole demo's colorization solve on one 640x480 frame, whatever N). "
              f"verify_prepared: {p['verify_bad']} bad rows in {p['verify_s']:.0f} s.", "",
              "| frames read | wall ms/frame (window before) | CPU ms/frame | RSS MB | peak RSS MB |", "|---|---|---|---|---|"]
        points = sorted({c for c in (5000, 20000) if c < n} | {n // 4 // 100 * 100, n // 2 // 100 * 100, n // 100 * 100})
        for c in points:
            v = _ms_per_frame(marks, c)
            if v:
                L.append(f"| {v[2]['frames']:,} | {v[0]:.1f} | {v[1]:.1f} | {v[2]['main']:.0f} | {v[2]['main_peak']:.0f} |")
        L.append("")
    if "train" in r:
        t = r["train"]
        ms = t["marks"]
        m1, m3 = ms.get("100"), ms[str(t["steps"])]
        L += ["### 02 training on the prepared file (train)", "",
              f"`{t['model']}` {t['model_kwargs']}, {t['image_size'][0]}x{t['image_size'][1]}, batch {t['batch']}, 2 loader workers, {t['torch_threads']} torch "
              f"threads; {t['n_train']:,} train / {t['n_val']:,} val frames ({t['steps_per_epoch']} steps an epoch, "
              f"{t['epochs_done']} epoch(s) completed). {t['steps']} steps in {t['wall_s']:.0f} s.", "",
              "| step | wall s | loader wait s | RSS main MB | RSS workers MB (n) |", "|---|---|---|---|---|"]
        for k, v in ms.items():
            L.append(f"| {k} | {v['wall_s']:.1f} | {v['wait_s']:.1f} | {v['main']:.0f} | {v['workers']:.0f} ({v['n_workers']}) |")
        L += ["", f"- Loader wait: **{t['wait_pct']:.1f} %** of step time between steps 10 and {t['steps']} "
              f"({t['wait_pct_all']:.1f} % including worker start-up)."]
        if m1:
            instant = t.get("rss_growth_instant_pct", t.get("rss_growth_pct"))
            L.append(f"- RSS at step 100 -> {t['steps']} as sampled once: main + workers {m1['main'] + m1['workers']:.0f} -> "
                     f"{m3['main'] + m3['workers']:.0f} MB ({instant:+.1f} %); the loader workers alone "
                     f"{m1['workers']:.0f} -> {m3['workers']:.0f} MB ({100 * (m3['workers'] / max(m1['workers'], 1e-9) - 1):+.1f} %); "
                     f"the main process's peak {m1['main_peak']:.0f} -> {m3['main_peak']:.0f} MB "
                     f"({100 * (m3['main_peak'] / m1['main_peak'] - 1):+.1f} %).")
        if "rss_window_mb" in t:
            w = t["rss_window_mb"]
            L.append(f"- **RSS growth, step 100 -> {t['steps']}: {t['rss_growth_pct']:+.1f} %** (target < 5 %): median over the 21 "
                     f"steps around each of main + workers, the main process measured after `malloc_trim(0)` so that "
                     f"heap pages glibc keeps cached after autograd frees them do not count (those 42 trims run inside the timed steps): {w['100']:.0f} -> {w['last']:.0f} MB.")
        rs = t["resume"]
        L += [f"- Resume: stopped at batch {t['stopped_at_batch']} of {t['steps_per_epoch']} of its epoch; the re-run started at "
              f"step {rs.get('start_step')}, first step after {rs.get('first_step_s', float('nan')):.1f} s, ran to step "
              f"{rs.get('end_step')}.",
              "- Loader alone (2 workers, batch 8, flip + swap + crop + resize): "
              + ", ".join(f"{k}: {v:.0f} samples/s" for k, v in t["loader_samples_per_s_2workers"].items()) + ".", ""]
    if "eval" in r:
        e = r["eval"]
        L += ["### 04 evaluation (eval)", "",
              f"Mean-depth baseline over {e['n_train_frames']:,} training frames: {e['baseline_s']:.0f} s. Evaluation of "
              f"{e['n_test']} test frames read from the zip (protocol densedepth, flip averaging): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in e["eval_s"].items())
              + f". RSS {e['rss_start_mb']:.0f} MB before the baseline, {e['rss_after_baseline_mb']:.0f} after it, "
              f"{e['rss_end_mb']:.0f} at the end; peak {e['peak_rss_mb']:.0f} MB.", ""]
    if "kill" in r:
        k = r["kill"]
        L += ["### SIGKILL during prep, then re-run (kill)", "",
              f"Killed at {k['n_written_at_kill']:,} of {k['n_frames']:,} frames written ({k['killed_after_s']:.0f} s in; "
              f"exit {k['returncode']}); the final name was absent and the .partial was refused as incomplete: "
              f"{k['partial_refused']}. The re-run took {k['rerun_s']:.0f} s and gave a file **identical frame for frame: "
              f"{k['identical']}** ({k['mismatched_frames']} mismatched frames; verify_prepared: {k['verify_bad']} bad rows).", ""]
    L += cost(r)
    return "\n".join(L) + "\n"


def cost(r: dict[str, Any]) -> list[str]:
    """What a full nyu run (50,688 frames, 20 epochs) would cost on one GPU, from this run's figures."""
    if "prep" not in r or "train" not in r:
        return []
    p, t = r["prep"], r["train"]
    prep_full = p["prepare_s"] / p["n_frames"] * FULL_TRAIN
    rate = t["loader_samples_per_s_2workers"]["480x640"] / 2
    L = ["### What a full `nyu` run on one GPU costs, from these figures", "",
         f"- Data prep (01): ~{prep_full / 60:.0f} min for 50,688 frames at this run's {p['n_frames'] / p['prepare_s']:.0f} "
         "frames/s (one process + 2 reader threads; more cores do not speed it up further).",
         f"- Loader at the profile's 480x640: {rate:.0f} samples/s per worker on this CPU. The GPU's training images/s "
         "(DenseDepth-169, 640x480, bf16) is not measured here (benchmarks/RESULTS_train.md); for a card doing R images/s "
         "the loader needs R / per-worker-rate workers and an epoch takes 50,688 / R s:", "",
         "| GPU images/s (R) | loader workers needed | epoch | 20 epochs |", "|---|---|---|---|"]
    for R in (25, 50, 100, 200):
        L.append(f"| {R} | {math.ceil(R / rate)} | {FULL_TRAIN / R / 60:.0f} min | {20 * FULL_TRAIN / R / 3600:.1f} h |")
    if "eval" in r:
        e = r["eval"]
        L += ["", f"- 04 on CPU-side work: the baseline pass costs ~{e['baseline_s'] / e['n_train_frames'] * FULL_TRAIN / 60:.0f} "
              "min over 50,688 training frames (it reads every frame at full resolution, whatever the GPU)."]
    return L + [""]


def write_report(a: argparse.Namespace, results: dict[str, Any]) -> Path:
    """Replace (or add) this run's section of --out; its other sections and its preamble stay."""
    section = render(a, results, {**machine(), "date": utc_stamp()})
    return write_results(a.out, "# Full-scale rehearsal of the `nyu` run (issue 14)\n\n" + section, keep_preamble=True)


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    """Run the selected stages (each in a subprocess), then rewrite this run's section of the results file."""
    ap = script_parser(__doc__, "benchmarks/RESULTS_scale.md (--out): the section named by --label is replaced or "
                                "added; the file's preamble and other sections stay")
    ap.add_argument("--frames", type=int, default=51342, help="stand-in frames, train + 654 test (51,342 = the real archive)")
    ap.add_argument("--workdir", default="/tmp/depth_scale", help="where the zip, prepared files and checkpoints go")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    ap.add_argument("--force", action="store_true", help="rerun stages whose results exist")
    ap.add_argument("--steps", type=int, default=300, help="training steps (at least 11: the loader wait is timed from step 10)")
    ap.add_argument("--resume-steps", type=int, default=20, help="steps the resumed run adds")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="unet", help="registered model (a light densedepth encoder where there is one)")
    ap.add_argument("--model-kwargs", default='{"width": 16}')
    ap.add_argument("--loader-batches", type=int, default=40)
    ap.add_argument("--image-size", type=int, nargs=2, default=[224, 320], metavar=("H", "W"),
                    help="training input; training_sets needs multiples of 32, so 224x320 stands in for 240x320")
    ap.add_argument("--gen-workers", type=int, default=2)
    ap.add_argument("--test-frames", type=int, default=654, help="test frames in the stand-in (654 as the real one)")
    ap.add_argument("--scenes", type=int, default=0,
                    help="train scenes in the stand-in (0: the real ~178 frames a scene; below ~450 frames that makes 2, "
                         "and 01 refuses a scene-hash split that sends one of 2 scenes to val)")
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--hole-demo", default=None, help="01's hole_demo parameter ('' skips the demo, a fixed ~5 s CPU "
                                                       "per 01 replay whatever N; default: the notebook's)")
    ap.add_argument("--label", default="", help="section title in --out (default: 'N=<frames>')")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_scale.md"))
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--no-kill-progress", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.label = a.label or f"N={a.frames:,}"
    a.changed_sizes = {k: v for k in ("test_frames", "scenes", "resume_steps", "batch", "loader_batches", "image_size",
                                      "gen_workers", "hole_demo") if (v := getattr(a, k)) != ap.get_default(k)}
    results_dir = Path(a.workdir) / "results"
    if a.worker == "kill-child":
        kill_child(a)
        return 0
    if a.worker:
        res = {"frames": a.frames, **globals()[f"stage_{a.worker}"](a)}
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / f"{a.worker}.json").write_text(json.dumps(res, indent=1))
        return 0
    chosen = [s for s in a.stages.split(",") if s]
    unknown = sorted(set(chosen) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; use {','.join(STAGES)}")
    for stage in STAGES:
        f = results_dir / f"{stage}.json"
        if stage not in chosen or (f.exists() and json.loads(f.read_text())["frames"] == a.frames and not a.force):
            continue
        print(f"[bench_scale] {stage} ...", flush=True)
        t = time.perf_counter()
        args = [sys.executable, __file__, "--worker", stage] + [x for x in (argv or sys.argv[1:]) if x != "--force"]
        if subprocess.run(args).returncode != 0:
            print(f"[bench_scale] {stage} FAILED; later stages need its output", file=sys.stderr)
            return 1
        print(f"[bench_scale] {stage} done in {time.perf_counter() - t:.0f} s", flush=True)
    results = {}
    for stage in STAGES:
        f = results_dir / f"{stage}.json"
        if f.exists() and json.loads(f.read_text())["frames"] == a.frames:
            results[stage] = json.loads(f.read_text())
    print(f"[bench_scale] wrote {write_report(a, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
