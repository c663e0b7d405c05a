"""The fast inference copy of a model: BatchNorm folded into convolutions, channels_last, optional bf16 decoder.

`prepare_for_inference(model)` returns a copy that only `depthlib.models.predict.predict` should run (the
copy is eval-only: its folded convolutions no longer hold the BatchNorm statistics, so it cannot
train). The original model is left untouched (unless inplace=True). depthlib.inference.load_for_inference applies it, and
so every caller of predict that loads a checkpoint (the CLI, evaluation, 04, the explorer) runs it.

What is folded: a Conv2d whose output goes straight into an nn.BatchNorm2d (exactly that class) that
is its next sibling module. Three confirmations guard the fold: the pair must be consecutive children of
one module, a probe forward pass must show the BatchNorm reading the very tensor the convolution
returned, and the folded copy must give the unfolded output on that probe (a convolution output that
something else also reads would change; such a fold is undone). Left alone, on purpose: BatchNorms
before their convolution (torchvision DenseNet's norm-relu-conv layers: a ReLU sits between) and timm's
BatchNormAct2d (a BatchNorm2d subclass that also applies an activation). torch.nn.utils.fusion.fuse_conv_bn_eval does the arithmetic.

benchmarks/bench_models.py measures this copy against the plain model and DenseDepth's port side by side.
torch.compile with inductor's freezing is not applied: `bench_models.py --compile` measures it
(benchmarks/RESULTS_models.md): a modest gain per frame after about a minute of compiling on 2 cores,
which a `predict` of a few photos never earns back.
"""

from __future__ import annotations

import copy
import platform
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.errors import ConfigError

# Marks a module returned by prepare_for_inference (predict reads it to pick the input memory format).
FAST_ATTR = "depthlib_inference_ready"


def _candidates(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name) for every Conv2d child directly followed by an nn.BatchNorm2d sibling."""
    found = []
    for parent in model.modules():
        kids = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(kids, kids[1:]):
            if type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d and b.track_running_stats:
                found.append((parent, name_a, name_b))
    return found


def _confirmed(model: nn.Module, pairs: list[tuple[nn.Module, str, str]], probe: Tensor) -> list[bool]:
    """Per pair: did the BatchNorm read exactly the tensor its convolution returned, on every call of a probe?"""
    outputs: dict[int, list[int]] = {}
    inputs: dict[int, list[int]] = {}
    hooks = []
    for k, (parent, ca, bb) in enumerate(pairs):
        conv, bn = getattr(parent, ca), getattr(parent, bb)
        hooks.append(conv.register_forward_hook(lambda m, i, o, k=k: outputs.setdefault(k, []).append(id(o))))
        hooks.append(bn.register_forward_pre_hook(lambda m, i, k=k: inputs.setdefault(k, []).append(id(i[0]))))
    try:
        with torch.no_grad():
            # Keep every output alive until the ids are compared, so no id is reused by a later tensor.
            keep: list[Any] = []
            hooks.append(nn.modules.module.register_module_forward_hook(lambda m, i, o: keep.append(o)))
            model(probe)
    finally:
        for h in hooks:
            h.remove()
    return [bool(outputs.get(k)) and outputs.get(k) == inputs.get(k) for k in range(len(pairs))]


def fold_batchnorm(model: nn.Module, probe: Tensor, *, rtol: float = 1e-4, inplace: bool = False) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` with each Conv2d -> BatchNorm2d pair folded into one Conv2d -> (copy, pairs folded).

    `probe` float[1,3,H,W] is one input the model accepts; it is run to confirm the data flow. A pair is folded only
    when the BatchNorm reads exactly its convolution's output, and the folded copy must give the unfolded output on
    the probe (within `rtol` of its largest value): a convolution output that something else also reads (a skip
    that wants it before normalisation) would change, so such a fold is undone, pair by pair. inplace=True folds
    `model` itself (no second copy of the weights in memory; for a model nothing else will train).
    """
    folded = (model if inplace else copy.deepcopy(model)).eval()
    probe = probe.to(next(folded.parameters()).device)
    found = _candidates(folded)
    pairs = [p for p, good in zip(found, _confirmed(folded, found, probe)) if good]
    if not pairs:
        return folded, 0
    with torch.no_grad():
        want = folded(probe)
    tol = rtol * float(want.abs().max().clamp_min(1e-12))

    def same() -> bool:
        with torch.no_grad():
            return float((folded(probe) - want).abs().max()) <= tol

    def fold(pair: tuple[nn.Module, str, str]) -> tuple[nn.Module, nn.Module]:
        parent, ca, bb = pair
        conv, bn = getattr(parent, ca), getattr(parent, bb)
        setattr(parent, ca, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bb, nn.Identity())
        return conv, bn

    originals = [fold(p) for p in pairs]
    if same():
        return folded, len(pairs)
    for (parent, ca, bb), (conv, bn) in zip(pairs, originals):  # some fold changed the output: one at a time
        setattr(parent, ca, conv)
        setattr(parent, bb, bn)
    n = 0
    for pair in pairs:
        conv, bn = fold(pair)
        if same():
            n += 1
        else:
            setattr(pair[0], pair[1], conv)
            setattr(pair[0], pair[2], bn)
    return folded, n


def _cpuinfo_field(key: str) -> str | None:
    """The first value of `key` in /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def cpu_flags() -> set[str]:
    """This CPU's feature flags (avx2, avx512f, amx_bf16, ...) from /proc/cpuinfo; empty where there is none."""
    return set((_cpuinfo_field("flags") or "").split())


def cpu_name() -> str:
    """This CPU's model name from /proc/cpuinfo, else the platform's machine string."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (Linux /proc/cpuinfo flags avx512_bf16 or amx_bf16) and
    torch has oneDNN."""
    return torch.backends.mkldnn.is_available() and bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


class Bf16Autocast(nn.Module):
    """Runs `module` under CPU bfloat16 autocast and returns float32 (a tensor or a list of them); attributes pass
    through. prepare_for_inference wraps decoder stages in it (see there)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.model = module
        # canonical_fx and focal_scale: an InputAdapter's camera space (predict rescales through them)
        for name in ("head", "arch", "config", "output_stride", "input_multiple", "canonical_fx", "focal_scale"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))

    def forward(self, *args: Any) -> Any:
        """The wrapped module's forward under bf16 autocast; float32 out."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(*args)
        return [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()


def _bf16_decoders(model: nn.Module) -> int:
    """In every depth model inside `model`, wrap the decoder's stages but its last (highest-resolution) one in
    Bf16Autocast -> how many decoders were changed. The encoder, the last stage and the output conv stay float32."""
    n = 0
    for host in list(model.modules()):
        dec = getattr(host, "decoder", None)
        ups = getattr(dec, "ups", None)
        if not hasattr(host, "encoder") or not isinstance(ups, nn.ModuleList) or len(ups) < 2:
            continue
        if isinstance(getattr(dec, "conv_in", None), nn.Module):
            dec.conv_in = Bf16Autocast(dec.conv_in)
        for i in range(len(ups) - 1):
            ups[i] = Bf16Autocast(ups[i])
        n += 1
    return n


def prepare_for_inference(model: nn.Module, *, bf16: bool = False, channels_last: bool = True,
                          probe_size: tuple[int, int] = (64, 64), inplace: bool = False) -> nn.Module:
    """Eval-only copy of `model` for predict: BatchNorm folded, weights channels_last, bf16 decoder if asked.

    bf16=True runs the decoder's stages under bfloat16 autocast, all but the last (highest-resolution) one; the
    encoder, that last stage and the output convolution stay float32. Measured with the sample checkpoint on NYU
    frames (median |bf16 - fp32|): everything in bf16 ~10 mm, the whole decoder 0.8-1.4 mm, this split 0.2-0.4 mm,
    under issue 13's 1 mm (benchmarks/RESULTS_models.md re-measures it with its speed). A model without such a
    decoder (`ups` stages) runs wholly under autocast. It needs a CPU with native bfloat16 (avx512_bf16 / amx_bf16); elsewhere it is refused, as
    emulated bf16 is slower than float32. The model itself is not changed,
    unless inplace=True (a freshly loaded model that only this copy will use: the weights are not held twice).
    """
    param = next(model.parameters())
    if bf16:
        if param.device.type != "cpu":
            raise ConfigError("--bf16 (bf16=True) is a CPU option: it runs the decoder under the CPU's native "
                              "bfloat16. Fix: drop --bf16 on a GPU, or add --device cpu (device='cpu').")
        if not cpu_has_native_bf16():
            raise ConfigError(f"this CPU ({cpu_name()}) has no native bfloat16 (no avx512_bf16 / amx_bf16 flag), so "
                              "bf16 would be slower than float32. Fix: drop --bf16 / bf16=True.")
    # its own generator: loading a model for inference must not move the caller's seeded random stream
    probe = torch.rand(1, 3, *probe_size, dtype=param.dtype, generator=torch.Generator().manual_seed(0))
    fast, _ = fold_batchnorm(model, probe, inplace=inplace)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if bf16 and not _bf16_decoders(fast):
        fast = Bf16Autocast(fast).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    setattr(fast, FAST_ATTR, {"channels_last": channels_last, "bf16": bf16})
    return fast


def as_fast(model: nn.Module) -> nn.Module:
    """A prepare_for_inference copy of `model` (callers make it once and keep it); `model` itself when it is one
    already, or when it has no Conv2d (nothing to fold or lay out: e.g. a baseline or a test stand-in)."""
    if getattr(model, FAST_ATTR, None) or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model
    return prepare_for_inference(model)
