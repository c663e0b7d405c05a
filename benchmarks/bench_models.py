"""Speed ratios of the project against DenseDepth's PyTorch port, measured side by side in one process.

The reference is benchmarks/reference_port.py (the project's own stand-in for the port: its model, its
SSIM + 0.1 L1 loss, default Adam, flip-averaged prediction). Every contender runs once per round, the
rounds interleaved (the order rotates each round), and each claim is the median and the min-max of the
per-round ratios reference time / contender time: machines (and the load on a shared one) differ, ratios
measured in one run do not. The CPU's model and flags come from /proc/cpuinfo. Writes RESULTS_models.md with --write.

    nice -n 15 .venv/bin/python benchmarks/bench_models.py --write benchmarks/RESULTS_models.md  # ~5 min, 2 idle cores
    nice -n 15 .venv/bin/python benchmarks/bench_models.py --quick      # smoke run: 2 rounds, checks the script

Sections: machine and ceilings (a oneDNN convolution, and torch.mm for contrast); flip-averaged predict at
640x480 (reference, project plain model, project fast copy, project bf16 where the CPU has it natively);
training step at 320x240 batch 4 (reference with its loss; project defaults with the full DenseDepth loss;
project with the old defaults; project bf16 autocast); the loss terms' cost; Adam implementations; the light
EfficientNet-Lite0 model's FLOP split and inference rate. FLOPs: torch.utils.flop_counter, a multiply-add = 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from _common import (ROOT, command_line, cpu_facts, interleaved, parse_early, ratios, script_parser, utc_stamp,
                     write_json, write_results)


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, "benchmarks/RESULTS_models.md with --write benchmarks/RESULTS_models.md (without --write "
                               "it prints the same markdown); --json also writes every number")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a shorter run: 2 rounds, 320x240 predict, batch 2 at 160x128")
    p.add_argument("--smoke", action="store_true", help="checks the script only: tiny models and images, 2 rounds")
    p.add_argument("--compile", action="store_true",
                   help="also time the fast copy under torch.compile with freezing (adds its compile time, minutes)")
    p.add_argument("--checkpoint", default="checkpoints/sample/finetune/best.pt",
                   help="trained checkpoint for the bf16 error (relative to the project root)")
    p.add_argument("--write", default="", help="write the markdown results to this file")
    p.add_argument("--json", default="", help="also write every number (absolute times included) here")
    return p


parse_early(__name__, build_parser)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import reference_port as ref  # noqa: E402
from depthlib.core.config import TrainConfig  # noqa: E402
from depthlib.models import create_model  # noqa: E402
from depthlib.models.fastpath import FAST_ATTR, cpu_has_native_bf16, prepare_for_inference  # noqa: E402
from depthlib.models.heads import make_head  # noqa: E402
from depthlib.models.predict import predict  # noqa: E402
from depthlib.training.losses import _target_value_range, densedepth_loss, gradient_l1, l1, ssim  # noqa: E402
from depthlib.training.precision import to_channels_last  # noqa: E402
from depthlib.training.train_setup import make_optimizer  # noqa: E402
from depthlib.training.train_step import batch_to, forward_with_targets, targets_at  # noqa: E402

FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
FASTDEPTH_GMAC_224 = 0.37  # FastDepth (Wofk et al., ICRA 2019), MobileNet-NNConv5 with depthwise decoder, 224x224


# ------------------------------------------------------------------ machine

def conv_ceiling(dtype: torch.dtype = torch.float32, reps: int = 5) -> float:
    """GFLOP/s of a oneDNN 3x3 convolution 256->256 on 1x256x60x80 channels_last (2 FLOPs a multiply-add), best of reps."""
    x = torch.rand(1, 256, 60, 80).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    flops = 2 * 256 * 256 * 9 * 60 * 80
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        conv(x)
        for _ in range(reps):
            t = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def mm_rate(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n x n float32 torch.mm, best of reps (shown for contrast: not the ceiling of convolutions)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _nontrivial_bn(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics as a trained model has them (random weights keep 0 / 1), so folding does real work."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


# ------------------------------------------------------------------ sections

# The compared models: DenseDepth-169 on both sides; --smoke swaps in tiny ones to exercise the script quickly.
BIG: dict[str, Any] = {"project": {}, "port": {}}
SMOKE_BIG = {"project": {"encoder": "densenet121", "width": 0.125}, "port": {"densenet": "densenet121", "width": 0.125}}


def _project_model() -> torch.nn.Module:
    return create_model("densedepth", pretrained=False, **BIG["project"])


def project_gflop(h: int, w: int) -> float:
    """Forward GFLOP (multiply-add = 2) of the project's DenseDepth model at h x w."""
    return _meta_flops(_project_model, h, w)[0].get_total_flops() / 1e9


def _meta_flops(build: Callable[[], torch.nn.Module], h: int, w: int) -> tuple[FlopCounterMode, torch.nn.Module]:
    """(counter, model) after one forward of build() on a meta-device input of h x w: FLOPs without any compute."""
    with torch.device("meta"):
        m = build()
    with FlopCounterMode(display=False) as c:
        m(torch.empty(1, 3, h, w, device="meta"))
    return c, m


def bench_predict(rounds: int, h: int, w: int, bf16: bool, compiled: bool = False) -> dict[str, Any]:
    """Flip-averaged prediction of one frame: reference vs the project's plain and fast paths (and, when asked,
    the fast copy under torch.compile with inductor's freezing: its compile time is reported, not timed per round)."""
    torch.manual_seed(0)
    port = ref.PortModel(**BIG["port"]).eval()
    plain = _nontrivial_bn(_project_model()).eval()
    fast = prepare_for_inference(plain)
    x = torch.rand(1, 3, h, w)
    contenders = {"reference (port), flip-averaged": lambda: ref.port_predict_flip(port, x),
                  "project, plain model": lambda: predict(plain, x),
                  "project, fast copy (default)": lambda: predict(fast, x)}
    if bf16:
        fast16 = prepare_for_inference(plain, bf16=True)
        contenders["project, fast copy, bf16 decoder (opt-in, `predict --bf16`)"] = lambda: predict(fast16, x)
    compile_s = None
    if compiled:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        comp = torch.compile(fast, dynamic=False)
        setattr(comp, FAST_ATTR, getattr(fast, FAST_ATTR))
        t0 = time.perf_counter()
        predict(comp, x)  # compiles (both flips have one shape)
        compile_s = time.perf_counter() - t0
        contenders["project, fast copy + torch.compile (freezing)"] = lambda: predict(comp, x)
    times = interleaved(contenders, rounds)
    with torch.inference_mode():  # raw outputs: random weights put most depths at the clamp, hiding differences
        raw = plain(x)
        same = float((raw - fast(x.contiguous(memory_format=torch.channels_last))).abs().max() / raw.abs().max())
    return {"size": f"{w}x{h}", "ratios": ratios(times, "reference (port), flip-averaged"), "max_rel_diff_raw": same,
            "gflop": project_gflop(h, w), "compile_s": compile_s}


def bf16_error(checkpoint: Path, frames: int) -> dict[str, Any]:
    """Median |bf16 - fp32| in mm of the fast path on NYU frames with a trained checkpoint (none: not measured)."""
    if not checkpoint.is_file():
        return {"measured": False, "why": f"no trained checkpoint at {checkpoint}"}
    from depthlib.data import open_source
    from depthlib.data.frame import frame_to_sample
    from depthlib.inference import load_for_inference

    m32, m16 = load_for_inference(checkpoint), load_for_inference(checkpoint, bf16=True)
    src = open_source("densedepth", str(ROOT / "data/sample"), split="test")
    errs = []
    for i in range(min(frames, len(src))):
        x = frame_to_sample(src[i])["image"][None]
        errs.append((predict(m16, x) - predict(m32, x)).abs().flatten())
    e = torch.cat(errs) * 1000
    return {"measured": True, "checkpoint": str(checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT)
                                                 else checkpoint), "frames": len(errs),
            "median_mm": float(e.median()), "p95_mm": float(e.quantile(0.95)) if e.numel() < 2**24 else None}


def _train_batch(b: int, h: int, w: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    depth = 0.5 + 9 * torch.rand(b, 1, h // 8, w // 8, generator=g)
    depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
    valid = torch.rand(b, 1, h, w, generator=g) > 0.05  # Kinect-like holes
    return {"image": torch.rand(b, 3, h, w, generator=g), "depth": depth, "valid": valid}


def project_step(cfg: TrainConfig, batch: dict[str, torch.Tensor]) -> Callable[[], float]:
    """One fit step with cfg's speed settings: forward (autocast), full DenseDepth loss, backward, clip, Adam."""
    torch.manual_seed(0)
    model = _project_model().train()
    if cfg.channels_last:
        to_channels_last(model)
    opt = make_optimizer(model, cfg)
    dev = torch.device("cpu")

    def step() -> float:
        b = batch_to(batch, dev, non_blocking=False, channels_last=cfg.channels_last)
        raw, depth, valid = forward_with_targets(model, b, cfg.precision, dev)
        loss = densedepth_loss(pred=raw, target=depth, valid=valid, head=model.head)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()  # fit checks the norm: a sync
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def bench_train(rounds: int, b: int, h: int, w: int, bf16: bool) -> dict[str, Any]:
    """Training step: reference (its loss, default Adam, fp32) vs project settings (full loss)."""
    batch = _train_batch(b, h, w)
    torch.manual_seed(0)
    port = ref.PortModel(**BIG["port"]).train()
    port_opt = torch.optim.Adam(port.parameters(), 1e-4)
    half = F.avg_pool2d(batch["depth"], 2)
    contenders = {
        "reference (port), SSIM + 0.1 L1": lambda: ref.port_train_step(port, port_opt, batch["image"], half),
        "project defaults (channels_last, fused Adam), full loss": project_step(TrainConfig(), batch),
        "project, old defaults (contiguous, for-loop Adam)": project_step(
            TrainConfig(channels_last=False, adam_impl="for-loop"), batch),
    }
    if bf16:
        contenders["project defaults + bf16 autocast"] = project_step(TrainConfig(precision="bf16"), batch)
    times = interleaved(contenders, rounds)
    return {"size": f"{w}x{h}", "batch": b, "ratios": ratios(times, "reference (port), SSIM + 0.1 L1")}


def bench_loss(rounds: int, b: int, h: int, w: int, step_s: float) -> dict[str, Any]:
    """Forward + backward of the loss terms at the output size, as fractions of one project training step."""
    batch = _train_batch(b, h, w)
    depth, valid = targets_at(batch["depth"], batch["valid"].bool(), (h // 2, w // 2))  # as fit makes them
    model_head = make_head("inverse")  # DenseDepth's target
    pred = (model_head.to_target(depth) + torch.randn_like(depth)).requires_grad_()
    t = model_head.to_target(depth)
    vr = _target_value_range(model_head)  # the value range densedepth_loss gives its SSIM term

    def fb(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            pred.grad = None
            fn().backward()
        return run

    contenders = {
        "project DenseDepth loss (SSIM + gradient + 0.1 L1, masked)": fb(
            lambda: densedepth_loss(pred=pred, target=depth, valid=valid, head=model_head)),
        "  its SSIM term": fb(lambda: ssim(pred=pred, target=t, valid=valid, value_range=vr)),
        "  its gradient term": fb(lambda: gradient_l1(pred=pred, target=t, valid=valid)),
        "  its L1 term": fb(lambda: l1(pred=pred, target=t, valid=valid)),
        "reference loss (SSIM + 0.1 L1, unmasked)": fb(lambda: ref.port_loss(pred, depth)),
    }
    times = interleaved(contenders, rounds)
    return {"shape": list(depth.shape),
            "fraction_of_step": {k: statistics.median(v) / step_s for k, v in times.items()}}


def bench_adam(rounds: int) -> dict[str, Any]:
    """One Adam step over DenseDepth-169's parameters per implementation; ratios against torch's CPU default loop."""
    contenders = {}
    for impl in ("for-loop", "foreach", "fused"):
        torch.manual_seed(0)
        model = _project_model()
        for p in model.parameters():
            p.grad = 1e-3 * torch.randn_like(p)
        opt = make_optimizer(model, TrainConfig(adam_impl=impl))
        contenders[impl] = opt.step
    times = interleaved(contenders, rounds)
    return {"ratios": ratios(times, "for-loop"), "params_M": sum(p.numel() for p in model.parameters()) / 1e6}


def light_flops(h: int, w: int) -> dict[str, float]:
    """FLOPs (multiply-add = 2) of the sample profile's light model, split encoder / decoder, at h x w."""
    c, m = _meta_flops(lambda: create_model("densedepth", encoder="efficientnet_lite0", width=0.5, pretrained=False,
                                            head="log"), h, w)
    counts = c.get_flop_counts()
    enc = sum(counts.get("DepthModel.encoder", {}).values())
    dec = sum(counts.get("DepthModel.decoder", {}).values())
    return {"total_GFLOP": c.get_total_flops() / 1e9, "encoder_GFLOP": enc / 1e9, "decoder_GFLOP": dec / 1e9,
            "GMAC": c.get_total_flops() / 2e9, "params_M": sum(p.numel() for p in m.parameters()) / 1e6}


def bench_light(rounds: int, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Frames/s of the light model's fast path (no flip, flip) and its ratio to DenseDepth-169's, per size."""
    torch.manual_seed(0)
    lite = prepare_for_inference(create_model("densedepth", encoder="efficientnet_lite0", width=0.5,
                                              pretrained=False, head="log"))
    big = prepare_for_inference(_nontrivial_bn(_project_model()))
    out: dict[str, Any] = {"flops": {f"{w}x{h}": light_flops(h, w) for h, w in [*sizes, (224, 224)]}, "rate": {}}
    for h, w in sizes:
        x = torch.rand(1, 3, h, w)
        times = interleaved({"densedepth-169": lambda: predict(big, x, flip_average=False),
                             "lite0": lambda: predict(lite, x, flip_average=False),
                             "lite0, flip-averaged": lambda: predict(lite, x)}, rounds)
        r = ratios(times, "densedepth-169")
        out["rate"][f"{w}x{h}"] = {"fps": 1 / r["lite0"]["median_s"],
                                   "fps_flip": 1 / r["lite0, flip-averaged"]["median_s"],
                                   "x_densedepth169": r["lite0"]}
    return out


# ------------------------------------------------------------------ report

def _row(name: str, r: dict[str, float]) -> str:
    return f"| {name} | **{r['median']:.2f}x** | {r['min']:.2f}-{r['max']:.2f} |"


def markdown(res: dict[str, Any], command: str, minutes: float) -> str:
    """The whole RESULTS_models.md text from one run's results."""
    m = res["machine"]
    shown = " ".join(f for f in FLAGS_SHOWN if f in m["flags"]) or "none of the listed"
    absent = " ".join(f for f in FLAGS_SHOWN if f not in m["flags"]) or "none"
    L = [
        "# Speed, side by side with DenseDepth's PyTorch port (`benchmarks/bench_models.py`)",
        "",
        f"Run {res['date']} in one process with `{command}` ({minutes:.1f} min in all, {res['rounds']} interleaved "
        "rounds per comparison). Every figure is a ratio measured within this run: the median over rounds of "
        "(reference time / contender time), with the min-max of the per-round ratios; above 1 means faster "
        "than the reference. Absolute times depend on the machine and its load and are kept out of this file "
        "(the JSON written with `--json` has them).",
        "",
        f"- CPU: {m['model']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} with {m['torch_threads']} threads, "
        f"oneDNN {'available' if m['mkldnn'] else 'absent'}; load average before the run {m['load_avg_before']}.",
        f"- Flags present: `{shown}`; absent: `{absent}`. Native bf16: {'yes' if m['native_bf16'] else 'no'}.",
        f"- Ceiling: a oneDNN 3x3 convolution (256->256, 60x80, channels_last) reaches {res['ceiling']['conv_fp32']:.0f} "
        f"GFLOP/s fp32" + (f" and {res['ceiling']['conv_bf16']:.0f} GFLOP/s under bf16 autocast"
                           if res['ceiling'].get('conv_bf16') else "")
        + f"; torch.mm 2048^2 reaches {res['ceiling']['mm_fp32']:.0f} GFLOP/s, so a matmul is not the "
        "convolutions' ceiling (multiply-add = 2 FLOPs).",
        "",
        "The reference is `benchmarks/reference_port.py`: this project's own re-implementation of the port's "
        "structure (torchvision DenseNet-169 with its classifier, 44.32 M parameters, 245.35 GFLOP forward at "
        "640x480, one LeakyReLU per up-block as the port runs it; loss SSIM + 0.1 L1 without the gradient term; "
        "default Adam; float32, default memory format), checked by tests/test_reference_port.py. The port's own "
        "files are not run. The project's model is DenseDepth-169 with random weights and BatchNorm statistics "
        "set to non-trivial values (so folding does real work).",
        "",
    ]
    p = res["predict"]
    L += [f"## Flip-averaged predict, DenseDepth-169, {p['size']}, batch 1 (target: >= 1.5x)", "",
          "| contender | x reference | per-round min-max |", "|---|---|---|"]
    L += [_row(k, v) for k, v in p["ratios"].items()]
    L += ["", f"The fast copy's raw outputs equal the plain model's within {p['max_rel_diff_raw']:.1e} (relative) here "
          "(tests/test_fastpath.py checks depths within 1e-4 m). The fast copy (`depthlib.models.fastpath.prepare_for_inference`, what "
          "`load_for_inference` returns) folds each Conv2d -> BatchNorm2d pair, stores weights channels_last and runs "
          "under `torch.inference_mode`."]
    fast_s = p["ratios"]["project, fast copy (default)"]["median_s"]
    ref_s = p["ratios"]["reference (port), flip-averaged"]["median_s"]
    conv = res["ceiling"]["conv_fp32"]
    L += ["", f"Headroom: the model is {p['gflop']:.2f} GFLOP a forward pass, two per flip-averaged frame; the fast "
          f"copy's median time is {2 * p['gflop'] / fast_s:.0f} GFLOP/s ({100 * 2 * p['gflop'] / fast_s / conv:.0f} % of "
          f"the convolution ceiling above), the reference's {2 * p['gflop'] / ref_s:.0f} GFLOP/s; 1.5x the reference "
          f"would need {1.5 * 2 * p['gflop'] / ref_s:.0f} GFLOP/s ({100 * 1.5 * 2 * p['gflop'] / ref_s / conv:.0f} % of "
          "that ceiling) in float32, with the same network and its memory-bound BatchNorm, ReLU, concatenation and "
          "upsampling steps included."]
    if p.get("compile_s") is not None:
        L += ["", f"torch.compile with inductor's freezing on the fast copy (`--compile`): {p['compile_s']:.0f} s to compile "
              "before the first frame, then the row above; not the default (a `predict` of a few photos would wait "
              "for the compile longer than it gains)."]
    e = res.get("bf16_error", {})
    if e.get("measured"):
        L += ["", "bf16 (`predict --bf16`, `load_for_inference(..., bf16=True)`; native-bf16 CPUs only) runs the decoder's "
              "stages under bf16 autocast except the last (highest-resolution) one; the encoder, that stage and the "
              f"output conv stay float32. Its error against the fp32 fast path with the trained `{e['checkpoint']}` on "
              f"{e['frames']} NYU sample frames: median {e['median_mm']:.2f} mm, 95th percentile {e['p95_mm']:.1f} mm "
              f"({'under' if e['median_mm'] < 1 else 'NOT under'} the 1 mm median bar)."]
    elif e:
        L += ["", f"bf16 error: not measured ({e.get('why', 'this CPU has no native bf16')})."]
    t = res["train"]
    L += ["", f"## Training step, DenseDepth-169, {t['size']}, batch {t['batch']} (targets: >= 1.2x fp32; "
          ">= 1.6x bf16 where native)", "",
          "| contender | x reference | per-round min-max |", "|---|---|---|"]
    L += [_row(k, v) for k, v in t["ratios"].items()]
    L += ["", "The project's step is fit's: forward, targets at the output size, the masked DenseDepth loss "
          "(SSIM + gradient + 0.1 L1), backward, gradient-norm clipping, Adam. The reference's: forward, its loss, "
          "backward, Adam."]
    lo = res["loss"]
    L += ["", f"## Loss terms, forward + backward on {lo['shape']} (the 320x240 batch's output)", "",
          "| loss | share of one project training step |", "|---|---|"]
    L += [f"| {k} | {v * 100:.2f} % |" for k, v in lo["fraction_of_step"].items()]
    a = res["adam"]
    L += ["", f"## Adam step over DenseDepth-169's {a['params_M']:.2f} M parameters", "",
          "| implementation | x for-loop (torch's CPU default) | per-round min-max |", "|---|---|---|"]
    L += [_row(k, v) for k, v in a["ratios"].items()]
    li = res["light"]
    L += ["", "## Light model for CPU users: DenseDepth decoder (width 0.5) on EfficientNet-Lite0, log head", "",
          "| input | params | GFLOP | encoder | decoder | GMAC | x FastDepth's 0.37 GMAC (224x224) |",
          "|---|---|---|---|---|---|---|"]
    for size, f in li["flops"].items():
        L += [f"| {size} | {f['params_M']:.2f} M | {f['total_GFLOP']:.2f} | {f['encoder_GFLOP']:.2f} "
              f"({100 * f['encoder_GFLOP'] / f['total_GFLOP']:.0f} %) | {f['decoder_GFLOP']:.2f} "
              f"({100 * f['decoder_GFLOP'] / f['total_GFLOP']:.0f} %) | {f['GMAC']:.2f} | "
              f"{f['GMAC'] / FASTDEPTH_GMAC_224:.1f} |"]
    L += ["", "| input | frames/s, this machine (no flip / flip-averaged) | x DenseDepth-169 fast path (no flip) |",
          "|---|---|---|"]
    for size, r in li["rate"].items():
        x = r["x_densedepth169"]
        L += [f"| {size} | {r['fps']:.1f} / {r['fps_flip']:.1f} | {x['median']:.1f}x ({x['min']:.1f}-{x['max']:.1f}) |"]
    L += ["", "FastDepth (Wofk et al., ICRA 2019) needs 0.37 GMAC a 224x224 frame and is the anchor for \"real time "
          "on a CPU\"; frames/s are this machine's only."]
    L += ["", "## bf16 training loss against fp32", "", "`benchmarks/check_bf16_train.py` trains the same short run "
          "in both precisions and writes `RESULTS_bf16_train.md` (issue 13's 2 % bar on the final loss)."]
    L += ["", "## GPU", "", "Not measured here: see RESULTS_train.md."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    rounds = 2 if a.quick or a.smoke else a.rounds
    ph, pw = (64, 96) if a.smoke else (240, 320) if a.quick else (480, 640)
    tb, th, tw = (2, 64, 96) if a.smoke else (2, 128, 160) if a.quick else (4, 240, 320)
    BIG.update(SMOKE_BIG if a.smoke else {"project": {}, "port": {}})
    bf16 = cpu_has_native_bf16()
    say = lambda s: print(f"[{time.perf_counter() - t0:6.0f} s] {s}", file=sys.stderr, flush=True)  # noqa: E731
    res: dict[str, Any] = {"date": utc_stamp(), "rounds": rounds, "machine": cpu_facts()}
    res["ceiling"] = {"conv_fp32": conv_ceiling(), "mm_fp32": mm_rate(),
                      "conv_bf16": conv_ceiling(torch.bfloat16) if bf16 else None}
    say("predict")
    res["predict"] = bench_predict(rounds, ph, pw, bf16, compiled=a.compile)
    res["bf16_error"] = bf16_error(ROOT / a.checkpoint, 1 if a.smoke else 6) if bf16 else {"measured": False}
    say("train")
    res["train"] = bench_train(rounds, tb, th, tw, bf16)
    say("loss")
    step_s = res["train"]["ratios"]["project defaults (channels_last, fused Adam), full loss"]["median_s"]
    res["loss"] = bench_loss(rounds, tb, th, tw, step_s)
    say("adam")
    res["adam"] = bench_adam(rounds)
    say("light model")
    res["light"] = bench_light(rounds, [(64, 96)] if a.smoke else [(240, 320)] if a.quick else [(480, 640), (240, 320)])
    minutes = (time.perf_counter() - t0) / 60
    res["minutes"] = minutes
    text = markdown(res, command_line(__file__, argv, launcher="nice -n 15 .venv/bin/python"), minutes)
    print(text)
    if a.write:
        write_results(a.write, text, owns=(r"Flip-averaged predict", r"Training step", r"Loss terms", r"Adam step",
                                           r"Light model"))
    if a.json:
        write_json(a.json, res)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
