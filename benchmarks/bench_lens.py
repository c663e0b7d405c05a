"""The lens table (issue #22 step 5): how the sample recipe's metric depth follows a longer lens, three ways.

For each seed, the `sample` profile's 02 + 03 run as `make pipeline` runs them (bench_transfer.py's way: the same
notebooks and profile, only the seed, the output folders and the settings named here changed; no scratch control,
one torch thread), on a prepared file of the sample written by this depthlib (format 2: each frame's focal length):

- (a) today's recipe (camera_space "none");
- (b) canonical camera targets with the lens zoom in 02 and 03 (camera_space "canonical", lens_zoom_max = --lens);
- (c) (a)'s model, its input resized at inference so the image's focal length at the network is the training
  camera's (no retraining): a z-times longer lens is shrunk z times and padded, and the depth upsampled back.

Measured on the sample's 5 held-out test frames (a bedroom never trained on) and, when the shared folder is there,
3 real NYU basement frames, each centre-cropped by 1/z and resized back to 640x480 (the same Kinect, a z-times
longer lens), z = 1, 1.5, 2, with their focal length passed (518.86 z px). Per z: the median over frames of each
frame's median ratio predicted / true depth, and the mean over frames of AbsRel, over valid pixels (1e-3..10 m),
flip-averaged. Drift: |ln(ratio at z / ratio at 1)|, its worst z. Against: (a) on the same frames and seeds.
Adoption rule: (b) or (c) replaces (a) in the sample profile only if its worst drift is below (a)'s and its AbsRel
at z = 1 within 0.01 of (a)'s (medians over seeds).

    .venv/bin/python benchmarks/bench_lens.py                      # seeds 0 1 2, lens_zoom_max 2
    .venv/bin/python benchmarks/bench_lens.py --reuse              # finished runs kept
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, command_line, cpu_summary, parse_early, script_parser, utc_stamp, write_json, write_results

RUNS = ROOT / "runs" / "lens"
PREPARED = RUNS / "sample.h5"
KINECT_FX = 518.8579011745019   # NYU's Kinect RGB fx at 640x480 (depthlib.core.camera.NYU_KINECT)
RECIPES = {"a": "(a) today's recipe", "b": "(b) canonical targets + lens zoom", "c": "(c) (a), input resized to the "
           "canonical focal length"}


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, "benchmarks/RESULTS_lens.md (--out); every number also in runs/lens/results.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    ap.add_argument("--lens", type=float, default=2.0, help="(b)'s lens_zoom_max in 02 and 03 (default 2)")
    ap.add_argument("--jobs", type=int, default=1, choices=[1],
                    help="trainings at a time: 1 (the pipeline locks the sample profile's output folders, which every "
                         "training of this script shares, so a second one at once is refused)")
    ap.add_argument("--reuse", action="store_true", help="keep a finished run under runs/lens/ instead of training again")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_lens.md"))
    return ap


parse_early(__name__, build_parser)

# the zoom, the scores and the table's columns, shared with notebook 04's live row
from depthlib.evaluation.lens import ZOOMS, lens_scores, table_header, worst_drift  # noqa: E402


def prepare() -> None:
    """01 of the sample profile into runs/lens/sample.h5 (format 2, with each frame's focal length)."""
    if PREPARED.is_file():
        return
    subprocess.run([sys.executable, "-m", "depthlib", "pipeline", "--profile", "sample", "--run-name", "lens/prep",
                    "--only", "01", "--set", f"01:prepared_path={PREPARED.as_posix()}",
                    "--set", f"01:figure_dir={(RUNS / 'prep').as_posix()}"], cwd=ROOT, check=True)


def train(recipe: str, seed: int, lens: float, reuse: bool) -> Path:
    """02 + 03 of the sample profile for one recipe ("a" or "b") and seed -> 03's best.pt."""
    work = RUNS / f"{recipe}{'' if recipe == 'a' else f'-lens{lens:g}'}_seed{seed}"
    best = work / "finetune" / "best.pt"
    if reuse and best.is_file():
        return best
    w, p = work.as_posix(), PREPARED.as_posix()
    sets = [*(f"{nb}:{k}={v}" for nb in ("02", "03") for k, v in (("seed", seed), ("prepared_path", p),
                                                                  ("figure_dir", f"{w}/figures"))),
            f"02:out_dir={w}/train", "02:control_out_dir=", f"03:init_from={w}/train/best.pt", f"03:out_dir={w}/finetune"]
    if recipe == "b":
        sets += [f"{nb}:{k}={v}" for nb in ("02", "03") for k, v in (("camera_space", "canonical"), ("lens_zoom_max", lens))]
    cmd = [sys.executable, "-m", "depthlib", "pipeline", "--profile", "sample", "--run-name", f"lens/{work.name}",
           "--only", "02", "03", "--quiet"]
    for item in sets:
        cmd += ["--set", item]
    shutil.rmtree(work, ignore_errors=True)   # a fresh run, never a resumed one
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    write_json(work / "seconds.json", {"seconds": time.perf_counter() - t0})   # atomic: a killed run leaves none
    return best


def predictions(checkpoint: Path, recipe: str, frames: list) -> list[tuple[str, dict[float, tuple[float, float]]]]:
    """[(frame, {z: (median ratio predicted / true, AbsRel)})] of one model, as `recipe` runs it: depthlib.evaluation.lens
    zooms and scores, and for (a) and (b) predicts as every caller does, each zoomed frame's focal length passed."""
    import torch
    import torch.nn.functional as F

    from depthlib.evaluation.lens import frame_scores, predict_frame
    from depthlib.inference.load import load_for_inference
    from depthlib.models.predict import predict

    torch.set_num_threads(1)
    model = load_for_inference(checkpoint)
    # what the training camera's focal length is at the network: NYU's Kinect through the border crop and the resize
    trained_fx = KINECT_FX * model.input_size[1] / (640 - model.border[2] - model.border[3])

    def resized_input(s: dict) -> torch.Tensor:
        """(c): the whole image, resized so that its focal length is the training camera's at the network."""
        x = s["image"][None]
        w = max(32, round(640 * trained_fx / s["fx"]))
        small = F.interpolate(x, size=(round(w * 480 / 640), w), mode="bilinear", antialias=True, align_corners=False)
        return predict(model.model, small, flip_average=True, out_size=tuple(x.shape[-2:]))[0, 0]

    samples = [{"image": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, "depth": torch.from_numpy(gt)[None],
                "name": name, "fx": KINECT_FX} for name, rgb, gt in frames]
    run = resized_input if recipe == "c" else (lambda s: predict_frame(model, s, flip_average=True))
    return frame_scores(run, samples, ZOOMS)


def scores(preds: list[tuple[str, dict]], names: list[str]) -> dict[float, dict[str, float]]:
    """{z: {"ratio": median over frames of each one's median pred / true, "abs_rel": mean over frames}} of `names`."""
    return lens_scores([f for n, f in preds if n in names], ZOOMS)


def table(results: dict[str, dict[int, dict]], label: str) -> str:
    """Markdown: per recipe and seed, ratio and AbsRel per z and the worst drift; then the median over seeds."""
    cols = table_header(ZOOMS)
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    rows = []
    for r, per_seed in results.items():
        cells = {s: per_seed[s][label] for s in per_seed}
        for s, sc in cells.items():
            rows.append(f"| {RECIPES[r]} | {s} | " + " | ".join(f"{sc[z]['ratio']:.3f} | {sc[z]['abs_rel']:.3f}"
                                                                for z in ZOOMS) + f" | {worst_drift(sc):.3f} |")
        med = median_scores(cells)
        rows.append(f"| **{RECIPES[r]}** | median | " + " | ".join(
            f"**{med[z]['ratio']:.3f}** | **{med[z]['abs_rel']:.3f}**" for z in ZOOMS)
            + f" | **{statistics.median(worst_drift(sc) for sc in cells.values()):.3f}** |")
    return head + "\n".join(rows) + "\n"


def median_scores(cells: dict[int, dict[float, dict[str, float]]]) -> dict[float, dict[str, float]]:
    """Per z, the median over seeds of ratio and AbsRel."""
    return {z: {k: statistics.median(sc[z][k] for sc in cells.values()) for k in ("ratio", "abs_rel")} for z in ZOOMS}


def verdict(results: dict[str, dict[int, dict]], label: str) -> tuple[str, str]:
    """(the recipe the rule adopts, the sentence with its numbers), on the medians over seeds."""
    stats = {}
    for r, per_seed in results.items():
        cells = {s: per_seed[s][label] for s in per_seed}
        stats[r] = (statistics.median(worst_drift(sc) for sc in cells.values()), median_scores(cells)[1.0]["abs_rel"])
    (da, aa) = stats["a"]
    passes = [r for r in ("b", "c") if stats[r][0] < da and abs(stats[r][1] - aa) <= 0.01]
    pick = min(passes, key=lambda r: stats[r][0]) if passes else "a"
    text = "; ".join(f"{RECIPES[r]}: worst drift {d:.3f}, AbsRel at z = 1 {a:.3f}" for r, (d, a) in stats.items())
    return pick, text


def main() -> int:
    a = build_parser().parse_args()
    import torch

    from bench_known_points import frames as all_frames

    RUNS.mkdir(parents=True, exist_ok=True)
    prepare()
    jobs = [(r, s) for s in a.seeds for r in ("a", "b")]
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        best = dict(zip(jobs, pool.map(lambda rs: train(*rs, a.lens, a.reuse), jobs)))
    frames = all_frames()
    groups = {"bedroom": [n for n, *_ in frames if n.startswith("bedroom")],
              "basement": [n for n, *_ in frames if n.startswith("basement")]}
    groups = {k: v for k, v in groups.items() if v}
    results: dict[str, dict[int, dict]] = {r: {} for r in RECIPES}
    for s in a.seeds:
        for r, ckpt in (("a", best[("a", s)]), ("b", best[("b", s)]), ("c", best[("a", s)])):
            preds = predictions(ckpt, r, frames)
            results[r][s] = {g: scores(preds, names) for g, names in groups.items()}
    write_json(RUNS / "results.json", {"lens_zoom_max": a.lens, "seeds": a.seeds, "results": results})
    pick, numbers = verdict(results, "bedroom")
    seconds = [json.loads(p.read_text())["seconds"] for p in RUNS.glob("*_seed*/seconds.json")]
    doc = ["# The lens table: metric depth through a longer lens (issue #22 step 5)", "",
           f"Generated by `{command_line(__file__)}` on {utc_stamp()} ({cpu_summary()}; torch {torch.__version__}; one "
           f"torch thread per training). Seeds {', '.join(map(str, a.seeds))}; (b) trains with lens_zoom_max = "
           f"{a.lens:g} in 02 and 03. Frames centre-cropped by 1/z and resized back to 640x480, their focal length "
           "(518.86 z px) passed. ratio: median over frames of the median predicted / true depth (1 = right scale; "
           "a model that follows the lens keeps it, one that ignores it goes as 1/z); AbsRel: mean over frames; "
           "worst drift: the largest |ln(ratio at z / ratio at z = 1)|.", "",
           "## Decision (the sample's test frames, medians over seeds)", "",
           f"{numbers}. The rule (worst drift below (a)'s and AbsRel at z = 1 within 0.01 of (a)'s) adopts "
           f"**{RECIPES[pick]}**" + (": the sample profile keeps camera_space \"none\"." if pick == "a" else "."), "",
           "## The sample's 5 held-out test frames (a bedroom)", "", table(results, "bedroom")]
    if "basement" in groups:
        doc += ["## 3 NYU basement frames (../shared, raw Kinect depth with holes)", "", table(results, "basement")]
    doc += ["## Wall time", "", f"{len(seconds)} trainings (02 + 03), {min(seconds):.0f}-{max(seconds):.0f} s each "
            "(a shared 2-core VM; not a benchmark)." if seconds else "all runs reused", ""]
    write_results(a.out, "\n".join(doc), owns=(r"Decision", r"\d+ NYU basement frames"))
    print(Path(a.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
