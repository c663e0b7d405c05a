"""Fine-tuning the sample model on your own data: does the `own` profile leave held-out frames better or worse?

For each capture of real frames (written by tests/_own_data.py in a user's layout and unit) and each candidate
setting of 03, runs `python -m depthlib pipeline --profile own` (01 once per capture, then 03 and 04) from
checkpoints/sample/finetune/best.pt, in a scratch project root per capture under runs/bench_own_data/ (the
checkout's outputs are not touched), with only the 01 source lines and the setting's 03 values given by --set.
Each setting names every 03 value it depends on, so the results do not change when own.toml's defaults do.

Measured on the capture's held-out (test) frames, 04's `no_crop_valid` protocol with flip averaging: AbsRel and
δ1 of "previous" (the sample model), "current" (03's best.pt, picked by validation loss with the starting weights
as epoch 0), the last epoch's weights (last.pt, what the epochs did before selection) and the mean-depth baseline;
also which epoch best.pt holds, and for camera_space="canonical" the factor its targets were scaled by (canonical_fx
over the frames' focal length at the input, from the prepared file and best.pt). Writes
benchmarks/RESULTS_own_data.md (machine, CPU flags, date, commands) and one result.json per run beside its outputs
(`--report-only` rewrites the table from those).

    make pipeline                                              # the sample model, first
    .venv/bin/python benchmarks/bench_own_data.py              # both captures, every setting (1-2 hours on 2 cores)
    .venv/bin/python benchmarks/bench_own_data.py --captures sun3d --settings shipped bn_frozen
    .venv/bin/python benchmarks/bench_own_data.py --resume --prepare-again --settings bn_frozen_lr2e-5_margin5 \
        bn_frozen_lr2e-5_margin5_canonical --seeds 0 1 2          # after a capture's writer or the prepared format changed
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from _common import ROOT, command_line, cpu_summary, script_parser, utc_stamp, write_results
from depthlib.core.atomic import atomic_write_text

# the captures' writers (tests/_own_data.py, shared with the own profile's test) load numpy and depthlib.data:
# imported where a capture is written, so that --help answers at once
TESTS = ROOT / "tests"

SAMPLE_MODEL = "checkpoints/sample/finetune/best.pt"   # own.toml's init_from and 04's previous
CAPTURES = {
    "sun3d": "SUN3D study room (Asus Xtion, fx 570 px): fragment 1 trains (20 frames) and validates (its last 5), "
             "fragment 2 held out (25 frames); CSV list, uint16 mm, 320x240, the camera's own holes (about 12 %)",
    "nyu_tum": "NYU frames as a TUM capture (1/5000 m PNGs, 320x240, NYU's Kinect inside its white border declared as "
               "`intrinsics`): the sample's 27 training frames train, its bathroom (2) validates; held out (8): the "
               "sample's test bedroom (5, in-painted depth) and the raw-depth basement (3, raw Kinect depth, 25-33 % "
               "holes), neither ever trained on",
}
# 03 values each setting runs with; every one is named, whatever own.toml says today. select_margin, camera_space and
# canonical_fx came after 52797dd: its runs had no margin and trained on metres, the values given here.
SHIPPED = {"freeze_encoder": False, "freeze_encoder_bn": False, "lr": 5e-5, "epochs": 5, "batch_size": 4,
           "select": "val_loss", "select_margin": 0.0, "wise_alpha": 1.0, "subset": "all", "camera_space": "none",
           "canonical_fx": 0.0}
SETTINGS = {
    "shipped": {},                                                          # own.toml as of 52797dd
    "bn_frozen": {"freeze_encoder_bn": True},
    "bn_frozen_lr2e-5": {"freeze_encoder_bn": True, "lr": 2e-5},
    "bn_frozen_lr1e-5": {"freeze_encoder_bn": True, "lr": 1e-5},
    "bn_frozen_2ep": {"freeze_encoder_bn": True, "epochs": 2},
    "bn_frozen_10ep": {"freeze_encoder_bn": True, "epochs": 10},
    "bn_frozen_lr2e-5_10ep": {"freeze_encoder_bn": True, "lr": 2e-5, "epochs": 10},
    "encoder_frozen": {"freeze_encoder": True},
    "encoder_frozen_lr2e-4": {"freeze_encoder": True, "lr": 2e-4},
    "bn_frozen_lr2e-5_margin5": {"freeze_encoder_bn": True, "lr": 2e-5, "select_margin": 0.05},   # own.toml, ea61c03
    # canonical_fx 0: NYU's Kinect over 640 columns at image_size's width (207.543 px at 256), border_crop "none"
    "bn_frozen_lr2e-5_margin5_canonical": {"freeze_encoder_bn": True, "lr": 2e-5, "select_margin": 0.05,
                                           "camera_space": "canonical"},
    # the sample model's own input camera: the Kinect inside NYU's border (625 columns) at 256 wide, 212.5242 px
    "bn_frozen_lr2e-5_margin5_canonical_fx212": {"freeze_encoder_bn": True, "lr": 2e-5, "select_margin": 0.05,
                                                 "camera_space": "canonical", "canonical_fx": 212.5242},
}
# the results file's sections this script writes (its "## Reading" section is written by hand, and kept)
OWNS = (*(re.escape(c) + ": " for c in CAPTURES), r"Settings run with several seeds")


def own_data() -> ModuleType:
    """tests/_own_data.py: the captures' writers and SUN3D's folder."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import _own_data

    return _own_data


def setting_values(name: str) -> dict:
    """The full 03 values of a named setting."""
    return {**SHIPPED, **SETTINGS[name]}


def literal(value: object) -> str:
    """A --set value as the pipeline reads it (a Python literal)."""
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def make_project(work: Path, model: Path, *, keep_runs: bool = False) -> Path:
    """A scratch project root: the checkout's notebooks and code (symlinked), the sample model copied in.

    keep_runs: only the capture and its prepared file are removed; the runs measured there stay (same frames).
    """
    root = work / "project"
    if keep_runs and root.is_dir():
        for part in ("data/own", "data/prepared"):
            shutil.rmtree(root / part, ignore_errors=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
        (root / "data").mkdir(parents=True)
        for part in ("notebooks", "depthlib", "data/sample"):
            (root / part).symlink_to(ROOT / part, target_is_directory=True)
    (root / SAMPLE_MODEL).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, root / SAMPLE_MODEL)
    return root


def pipeline(root: Path, only: list[str], sets: list[str], log: Path, run_name: str = "own") -> tuple[list[str], float]:
    """Run the own profile's notebooks `only` in project `root` -> (the command, seconds); its output goes to `log`."""
    cmd = [sys.executable, "-m", "depthlib", "pipeline", "--profile", "own", "--run-name", run_name, "--only", *only]
    for item in sets:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=root, env={**os.environ, "DEPTH_WORKBOOK_ROOT": str(root)}, stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"pipeline failed (exit {done.returncode}); its output: {log}")
    return cmd, time.perf_counter() - t0


def last_epoch_metrics(root: Path, out_dir: Path) -> dict:
    """The last epoch's weights (last.pt) on the held-out frames, exactly as 04 evaluates "current"."""
    os.environ["DEPTH_WORKBOOK_ROOT"] = str(root)
    from depthlib.notebook import workbook

    test = workbook.eval_frames("data/prepared/own.h5", "test")
    model = workbook.inference_models({"last epoch": str(out_dir / "last.pt")}, frames=test)
    res = workbook.evaluate_all(model, test, protocol="no_crop_valid", flip_average=True, device="cpu")
    return res["last epoch"].metrics


def checkpoint_data(path: Path) -> dict:
    """The input settings a checkpoint recorded (image_size, border_crop; camera_space and canonical_fx if canonical)."""
    from depthlib.models.checkpoint import load_checkpoint

    return load_checkpoint(path)["extra"]["train_config"]["data"]


def prepared_focal(root: Path) -> dict:
    """The prepared file's focal lengths: {"width", "fx" (distinct values, px of its width), "known", "frames"}."""
    import h5py
    import numpy as np

    with h5py.File(root / "data" / "prepared" / "own.h5", "r") as f:
        fx = f["fx"][()] if "fx" in f else np.full(int(f.attrs["n_written"]), np.nan)
        width = int(f.attrs["width"])
    known = fx[np.isfinite(fx)]
    return {"width": width, "fx": sorted({round(float(v), 4) for v in known}), "known": int(known.size),
            "frames": int(fx.size)}


def run_tag(name: str, seed: int) -> str:
    """The folder of one setting's run with one seed (seed 0: the setting's name)."""
    return name if seed == 0 else f"{name}_seed{seed}"


def run_setting(root: Path, capture: str, name: str, seed: int = 0) -> dict:
    """03 + 04 of the own profile with one setting and 03's seed -> the run's result (also written as result.json)."""
    values, tag = {**setting_values(name), "seed": seed}, run_tag(name, seed)
    ft, figs = f"checkpoints/own/{tag}", f"figures/own/{tag}"
    shutil.rmtree(root / ft, ignore_errors=True)   # a fresh run, never a resumed one
    sets = [*(f"03:{k}={literal(v)}" for k, v in values.items()), f"03:out_dir={ft}", f"03:figure_dir={figs}",
            f"04:current={ft}/best.pt", f"04:metrics_dir={figs}", f"04:figure_dir={figs}",
            "04:require_beat_baseline=false"]
    (root / figs).mkdir(parents=True, exist_ok=True)
    cmd, seconds = pipeline(root, ["03", "04"], sets, root / figs / "pipeline.log", run_name=f"own/{tag}")
    metrics = json.loads((root / figs / "metrics.json").read_text())
    hist = json.loads((root / ft / "history.json").read_text())
    result = {"capture": capture, "setting": name, "seed": seed, "values": values, "seconds": seconds,
              "command": " ".join(cmd[1:]),
              "best_epoch": hist["best_epoch"], "epochs": [{k: r.get(k) for k in ("epoch", "val_loss", "val_abs_rel")}
                                                          for r in hist["epochs"]],
              "metrics": {m: {k: metrics[m]["metrics"][k] for k in ("abs_rel", "delta1", "n_images")}
                          for m in metrics}}
    last = last_epoch_metrics(root, root / ft)
    result["metrics"]["last epoch"] = {k: last[k] for k in ("abs_rel", "delta1", "n_images")}
    result["data"] = checkpoint_data(root / ft / "best.pt")
    atomic_write_text(root / figs / "result.json", json.dumps(result, indent=1))
    return result


def prepare_capture(work: Path, capture: str, model: Path, *, keep_runs: bool = False) -> Path:
    """Write the capture, make the project root (keep_runs: see make_project) and run 01 on it -> the root."""
    root = make_project(work, model, keep_runs=keep_runs)
    folder = root / "data" / "own"
    folder.mkdir(parents=True)
    od = own_data()
    src = od.write_sun3d_capture(folder) if capture == "sun3d" else od.write_nyu_tum_capture(folder, ROOT / "data" / "sample")
    sets = [f"01:{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in src.items()]
    cmd, seconds = pipeline(root, ["01"], sets, work / "01.log")
    atomic_write_text(work / "capture.json", json.dumps({"settings": src, "command": " ".join(cmd[1:]),
                                                         "seconds": seconds, "focal": prepared_focal(root)}, indent=1))
    return root


def fmt(m: dict) -> str:
    return f"{m['abs_rel']:.4f} / {m['delta1']:.3f}"


def verdict(r: dict) -> str:
    """Current against previous (AbsRel and δ1 both better, both worse, mixed, or equal) and against the baseline."""
    m = r["metrics"]
    cur, prev, base = (m[k] for k in ("current", "previous", "mean-depth baseline"))
    if cur["abs_rel"] == prev["abs_rel"] and cur["delta1"] == prev["delta1"]:
        word = "equal (best.pt = start)" if r["best_epoch"] == 0 else "equal"
    else:
        better = (cur["abs_rel"] < prev["abs_rel"], cur["delta1"] > prev["delta1"])
        word = "better" if all(better) else "**worse**" if not any(better) else "mixed"
        if r["best_epoch"] == 0:   # canonical: the starting weights, their depth times f / canonical_fx
            word += " (best.pt = start, rescaled)"
    beats = cur["abs_rel"] < base["abs_rel"] and cur["delta1"] > base["delta1"]
    return word + ("" if beats else "; **not better than the baseline**")


def report(results: list[dict], work: Path) -> str:
    """The results file: machine, date, commands, one table row per capture and setting."""
    import torch

    stamp = utc_stamp()
    model = work / "sample_model.json"
    model_note = json.loads(model.read_text()) if model.is_file() else {}
    runs = work / "invocations.json"
    commands = "; ".join(f"`{command_line(__file__, a)}`" for a in (json.loads(runs.read_text()) if runs.is_file() else []))
    lines = [
        "# Fine-tuning the sample model on your own data: held-out frames before and after",
        "",
        f"Generated by `benchmarks/bench_own_data.py` on {stamp}; machine: {cpu_summary()}; torch {torch.__version__}. "
        f"Commands, in order: {commands}.",
        "",
        f"Start: `{SAMPLE_MODEL}` as `make pipeline` writes it (sha256 {model_note.get('sha256', '?')[:16]}...). "
        "Each run is the `own` profile, `python -m depthlib pipeline --profile own` in a scratch project root: 01 "
        "once per capture with the capture's `source_path`, `source_options` and `split_file`, then 03 and 04 with "
        "the setting's 03 values (all of them, whatever own.toml says) by `--set`. Image size [192, 256] (own.toml's; "
        "the sample model's too, so previous and current see the same input), batch size 4, SILog loss, best.pt "
        "picked by validation loss with the starting weights as epoch 0 (fit, since 52797dd), no WiSE mix.",
        "",
        "Metrics: AbsRel / δ1 on the held-out (test) frames, 04's `no_crop_valid` protocol (whole frames, the "
        "capture's valid pixels), flip averaging. **previous** = the sample model; **current** = 03's best.pt; "
        "**last epoch** = 03's last.pt (what the epochs did, before selection kept or dropped it); **baseline** = "
        "the per-pixel mean depth of the capture's training frames. best = the epoch best.pt holds (0 = the starting "
        "weights: no epoch beat them on the validation frames, so current equals previous). s = wall seconds of 03 + 04 "
        "on a 2-core machine that other jobs shared: a rough cost, not a timing.",
        "",
    ]
    for capture in CAPTURES:
        rows = [r for r in results if r["capture"] == capture]
        if not rows:
            continue
        n = rows[0]["metrics"]["current"]["n_images"]
        lines += [f"## {capture}: {n} held-out frames", "", CAPTURES[capture] + ".", "",
                  "| setting | 03 values | best | val loss: epoch 0 / best epoch after it | previous | current | last epoch | baseline "
                  "| current vs previous | s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            v = r["values"]
            seed = f", seed {r['seed']}" if r.get("seed") else ""
            what = (f"{'encoder frozen' if v['freeze_encoder'] else 'BN kept' if v['freeze_encoder_bn'] else 'BN updates'}"
                    f", lr {v['lr']:g}, {v['epochs']} ep"
                    + (f", margin {v['select_margin']:g}" if v.get("select_margin") else "")
                    + (f", **{v['camera_space']}**" if v.get("camera_space", "none") != "none" else "")
                    + (f" fx {v['canonical_fx']:g}" if v.get("canonical_fx") else "") + seed)
            e = r["epochs"]
            later = min((x["val_loss"] for x in e[1:]), default=float("nan"))
            m = r["metrics"]
            lines.append(f"| {r['setting']} | {what} | {r['best_epoch']} | {e[0]['val_loss']:.4f} / {later:.4f} | "
                         f"{fmt(m['previous'])} | {fmt(m['current'])} | {fmt(m['last epoch'])} | "
                         f"{fmt(m['mean-depth baseline'])} | {verdict(r)} | {r['seconds']:.0f} |")
        lines.append("")
        prep = work / capture / "capture.json"
        prepared = json.loads(prep.read_text()) if prep.is_file() else {}
        prep_cmd = prepared.get("command", "?")
        lines += camera_lines(prepared.get("focal"), rows)
        lines.append(f"Commands (in `{work.name}/{capture}/project`, DEPTH_WORKBOOK_ROOT set to it): 01 once, "
                     f"`python {prep_cmd}`; then per setting, e.g. `python {rows[0]['command']}`.")
        lines.append("")
    lines += summary(results)
    return "\n".join(lines)


def camera_lines(focal: dict | None, rows: list[dict]) -> list[str]:
    """What the prepared file says of the capture's camera, and the factor canonical runs scaled its targets by."""
    if not focal:
        return []
    fx = ", ".join(f"{v:g}" for v in focal["fx"]) or "none"
    line = (f"Camera: the prepared file records fx {fx} px (of its {focal['width']}-pixel width) for {focal['known']} "
            f"of its {focal['frames']} frames.")
    canon = sorted({(r["data"]["canonical_fx"], r["data"]["image_size"][1]) for r in rows
                    if r.get("data", {}).get("camera_space") == "canonical"})
    if canon and len(focal["fx"]) == 1:
        for c, w in canon:
            f_in = focal["fx"][0] * w / focal["width"]
            line += (f" Canonical runs (best.pt: canonical_fx {c:.3f} px at {w} wide): fx at the input {f_in:.3f} px, "
                     f"so every target is depth x {c / f_in:.4f} and predict multiplies by {f_in / c:.4f}.")
    return [line, ""]


def summary(results: list[dict]) -> list[str]:
    """The settings run with several seeds: range of current and last-epoch AbsRel / δ1, runs worse than previous."""
    def span(rs: list[dict], model: str, key: str, digits: int) -> str:
        v = sorted(r["metrics"][model][key] for r in rs)
        mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
        return f"{v[0]:.{digits}f}-{v[-1]:.{digits}f} ({mid:.{digits}f})"

    lines = ["## Settings run with several seeds (03's seed; previous and baseline do not depend on it)", "",
             "Ranges over the seeds, the median in brackets.", "",
             "| setting | capture | seeds | current AbsRel | current δ1 | best.pt = start | current worse than "
             "previous | last epoch AbsRel | last epoch δ1 |", "|---|---|---|---|---|---|---|---|---|"]
    for name in SETTINGS:
        for capture in CAPTURES:
            rs = [r for r in results if r["setting"] == name and r["capture"] == capture]
            if len(rs) < 2:
                continue
            worse = sum(r["metrics"]["current"]["abs_rel"] > r["metrics"]["previous"]["abs_rel"] for r in rs)
            start = sum(r["best_epoch"] == 0 for r in rs)
            lines.append(f"| {name} | {capture} | {', '.join(str(r.get('seed', 0)) for r in rs)} | "
                         f"{span(rs, 'current', 'abs_rel', 4)} | {span(rs, 'current', 'delta1', 3)} | {start} of {len(rs)} | "
                         f"{worse} of {len(rs)} | {span(rs, 'last epoch', 'abs_rel', 4)} | {span(rs, 'last epoch', 'delta1', 3)} |")
    return [*lines, ""] if len(lines) > 4 else []


def main(argv: list[str] | None = None) -> int:
    ap = script_parser(__doc__, "benchmarks/RESULTS_own_data.md (--out); each run's result.json beside its outputs "
                                "under --work")
    ap.add_argument("--captures", nargs="+", default=list(CAPTURES), choices=list(CAPTURES), metavar="NAME",
                    help="; ".join(f"{k}: {v}" for k, v in CAPTURES.items()).replace("%", "%%") + " (default: both)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="NAME",
                    help=f"03 settings, each a change to own.toml's values before this benchmark ({SHIPPED}): "
                         + "; ".join(f"{k}: {v or 'own.toml before this benchmark'}" for k, v in SETTINGS.items()) + " (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="03's seed: each setting runs once per seed")
    ap.add_argument("--model", default=str(ROOT / SAMPLE_MODEL), help="the sample model (make pipeline's)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_own_data"), help="scratch folder (ignored by git)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_own_data.md"), help="the results file to write")
    ap.add_argument("--report-only", action="store_true", help="rewrite --out from the result.json files in --work")
    ap.add_argument("--resume", action="store_true",
                    help="keep the captures already prepared in --work and the settings already measured there")
    ap.add_argument("--prepare-again", action="store_true",
                    help="with --resume: write the captures and run 01 again in their project roots (a capture's writer "
                         "or the prepared format changed; the frames are the same), keeping the runs measured there")
    a = ap.parse_args(argv)
    if a.prepare_again and not a.resume:
        ap.error("--prepare-again keeps the runs of --resume; without --resume every capture is prepared anew anyway")
    work, model = Path(a.work), Path(a.model)
    if not a.report_only:
        if not model.is_file():
            raise SystemExit(f"{model} not found: run `make pipeline` first (it writes the sample model).")
        if "sun3d" in a.captures and not (sun3d := own_data().SUN3D).is_dir():
            raise SystemExit(f"{sun3d} not found: the shared real frames of another camera (see --captures).")
        work.mkdir(parents=True, exist_ok=True)
        runs = work / "invocations.json"
        before = json.loads(runs.read_text()) if runs.is_file() and a.resume else []
        atomic_write_text(runs, json.dumps([*before, argv if argv is not None else sys.argv[1:]]))
        atomic_write_text(work / "sample_model.json",
                          json.dumps({"path": str(model), "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
        for capture in a.captures:
            root = work / capture / "project"
            if a.prepare_again and a.resume:
                root = prepare_capture(work / capture, capture, model, keep_runs=True)
            elif not (a.resume and (work / capture / "capture.json").is_file()):
                root = prepare_capture(work / capture, capture, model)
            for name, seed in ((n, s) for n in a.settings for s in a.seeds):
                if a.resume and (root / "figures" / "own" / run_tag(name, seed) / "result.json").is_file():
                    continue
                r = run_setting(root, capture, name, seed)
                m = r["metrics"]
                print(f"{capture} {run_tag(name, seed)}: best epoch {r['best_epoch']}; previous {fmt(m['previous'])}, current "
                      f"{fmt(m['current'])}, last epoch {fmt(m['last epoch'])}, baseline "
                      f"{fmt(m['mean-depth baseline'])} ({r['seconds']:.0f} s)", flush=True)
    results = [json.loads(p.read_text()) for c in CAPTURES for p in (work / c / "project" / "figures" / "own").glob("*/result.json")]
    results.sort(key=lambda r: (list(CAPTURES).index(r["capture"]), list(SETTINGS).index(r["setting"]), r.get("seed", 0)))
    write_results(a.out, report(results, work), owns=OWNS)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
