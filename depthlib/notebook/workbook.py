"""The steps the numbered notebooks take, one function each, so a notebook cell is a single call.

Data flows one way: source -> prepared HDF5 (01) -> datasets -> fit (02, 03) -> checkpoints ->
evaluate / figures (04, 05). Notebooks hand work to each other only through the paths they are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError, DataError
from ..core.paths import resolve
from ..data import open_source
from ..data.dataset import SPLITS, DepthDataset, MappedDataset, split_assignment
from ..data.frame import FrameSource
from ..data.holes import with_holes_filled  # noqa: F401  (a notebook step)
from ..data.prepared import PreparedDataset
from ..data.prepared_loader import PreparedTorchDataset
from ..data.prepared_write import write_prepared
from ..data.select import check_split  # noqa: F401  (a notebook step)
from ..inference import load_for_inference
from ..models.baseline import MeanDepthBaseline
from ..models.predict import predict
from ..training.train_setup import data_settings, training_sets  # noqa: F401  (notebook steps)


def split_labels(source: FrameSource, *, split_file: str = "", val_frac: float = 0.1, test_frac: float = 0.0,
                 seed: int = 0) -> list[str]:
    """train/val/test label per frame: from `split_file` when given, else by hashing scenes; prints the counts."""
    labels = split_assignment(source, split_file=resolve(split_file) if split_file else None, val_frac=val_frac,
                              test_frac=test_frac, seed=seed)
    scenes = source.scenes
    parts = []
    for split in SPLITS:
        rows = [i for i, s in enumerate(labels) if s == split]
        n_scenes = len({scenes[i] for i in rows})
        parts.append(f"{split} {len(rows)} frames / {n_scenes} scene{'s' * (n_scenes != 1)}")
    how = f"split file {split_file}" if split_file else f"scene hash (val_frac {val_frac}, test_frac {test_frac}, seed {seed})"
    print(f"split by {how}: " + ", ".join(parts))
    return labels


def prepare(source: FrameSource, out_path: str, *, labels: Sequence[str], indices: Sequence[int] | None = None,
            selection: Mapping[str, Any] | None = None, overwrite: bool = False) -> PreparedDataset:
    """Write source[indices] with their split labels to the prepared HDF5 file -> the file opened as a source."""
    idx = list(range(len(source))) if indices is None else list(indices)
    out = resolve(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Store depth in the source's own quantum when it has one (DenseDepth train: 10/255 m), else millimetres.
    write_prepared(source, out, indices=idx, split=[labels[i] for i in idx], selection=dict(selection or {}),
                   depth_unit_m=getattr(source, "depth_unit_m", 0.001), overwrite=overwrite)
    return PreparedDataset(str(out))


def hole_free(dataset: MappedDataset) -> MappedDataset:
    """The frames of a prepared-file dataset whose ground truth has no holes (same transform)."""
    base: PreparedTorchDataset = dataset.dataset  # type: ignore[assignment]
    f, rows = base.src.file(), base.src.rows
    keep = [i for i in range(len(base.src)) if bool(np.all(f["valid"][int(rows[i])]))]
    if not keep:
        raise DataError(base.src.path, "no hole-free frames in this split.", "use subset='all' or another split.")
    sub = PreparedTorchDataset(base.src, indices=keep)
    return MappedDataset(sub, dataset.transform, dataset.device_augment)


def frames(prepared_path: str, split: str) -> PreparedTorchDataset:
    """Full-resolution, un-augmented frames of one split (what evaluation protocols expect)."""
    return PreparedTorchDataset(str(resolve(prepared_path)), split=split)


def eval_frames(prepared_path: str, split: str, *, source: str = "", path: str = "",
                options: Mapping[str, Any] | None = None) -> Any:
    """Evaluation frames: a split of the prepared file, or (when `source` is given) a whole reader opened with `options`."""
    if source:
        return DepthDataset(open_source(source, path, **dict(options or {})))
    return frames(prepared_path, split)


def inference_model(checkpoint: str, *, device: str = "cpu", frames: Any = None) -> nn.Module:
    """Load a checkpoint for whole frames: cropped and resized exactly as in training (see depthlib.inference); given
    the `frames` it will see (a reader, prepared file or dataset), without NYU's border crop when their source has no
    such border (pairs: a 640x480 camera of your own keeps its edge columns)."""
    from ..inference.load import border_crop_for

    crop = "auto" if frames is None else border_crop_for(frames)
    return load_for_inference(resolve(checkpoint), device=device, border_crop=crop)


def inference_models(checkpoints: Mapping[str, str], *, device: str = "cpu", frames: Any = None) -> dict[str, nn.Module]:
    """{name: checkpoint path} -> {name: inference model} for `frames` (see inference_model); names whose path is ""
    are left out."""
    return {name: inference_model(path, device=device, frames=frames) for name, path in checkpoints.items() if path}


def train_scratch_control(model: str, model_kwargs: Mapping[str, Any], train: Any, val: Any, cfg: Any, *,
                          out_dir: str, epochs: int, lr: float) -> Any:
    """The same architecture from random weights, every layer trained for `epochs` at `lr` -> History ("" out_dir skips).

    The control of DenseDepth's central claim: what the ImageNet weights buy, everything else equal (data,
    augmentation, loss, schedule shape, seed). BatchNorm statistics train too: random ones mean nothing.
    """
    import dataclasses

    from ..core.reproducibility import seed_everything
    from ..models import create_model
    from ..training.train import fit

    if not out_dir:
        print("scratch control skipped (control_out_dir is empty)")
        return None
    if epochs < 1:
        raise ConfigError(f"control_out_dir={out_dir!r} asks for a scratch control but control_epochs={epochs}. "
                          "Fix: control_epochs >= 1 (as many steps as 02 + 03 give the pretrained model), "
                          "or control_out_dir='' to skip it.")
    # one line between 02's epochs and the control's, which count again from 1 (to `epochs`, not 02's)
    print(f"scratch control: the same architecture from random weights, {epochs} epoch{'s' * (epochs != 1)} at lr "
          f"{lr:g}, into {out_dir}", flush=True)
    seed_everything(cfg.seed)
    kwargs = {**dict(model_kwargs), **({"pretrained": False} if "pretrained" in model_kwargs else {})}
    net = create_model(model, **kwargs)
    ccfg = dataclasses.replace(cfg, out_dir=out_dir, epochs=epochs, lr=lr, freeze_encoder=False,
                               freeze_encoder_bn=False, init_from="")
    return fit(net, train, val, ccfg)


def log_depth_correlations(model: nn.Module, frames: Any, *, protocol: str = "densedepth",
                           flip_average: bool = True) -> dict[str, float]:
    """{frame name: Pearson r of log depth vs ground truth inside the protocol's crop}: does the model see each scene?"""
    from ..evaluation.metrics import log_depth_pearson
    from ..evaluation.protocols import get_protocol

    out = {}
    for i in range(len(frames)):
        s = frames[i]
        rows, cols = get_protocol(protocol).crop_slices(*s["depth"].shape[-2:])
        p = predict(model, s["image"][None], flip_average=flip_average, fx=s.get("fx"))[0, 0]
        out[str(s.get("name", i))] = log_depth_pearson(pred=p[rows, cols], target=s["depth"][0][rows, cols],
                                                       valid=s["valid"][0][rows, cols])
    return out


def edge_bands(model: nn.Module, frames: Any, *, flip_average: bool = True) -> dict[str, float]:
    """{side: mean over frames of metrics.edge_band} on whole frames as `predict` returns them (no protocol crop):
    does the prediction carry a band along an image edge that the ground truth does not?"""
    from ..evaluation.metrics import EDGE_SIDES, edge_band

    per = []
    for i in range(len(frames)):
        s = frames[i]
        p = predict(model, s["image"][None], flip_average=flip_average, fx=s.get("fx"))[0, 0]
        per.append(edge_band(pred=p, target=s["depth"][0], valid=s["valid"][0]))
    return {side: float(np.nanmean([b[side] for b in per])) for side in EDGE_SIDES}


def depth_spread(model: nn.Module, rgb: np.ndarray, *, flip_average: bool = True) -> float:
    """p95 / p5 of the depth `model` predicts for one uint8 [H,W,3] photo (1.0: one distance everywhere)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1).float()[None] / 255
    p5, p95 = np.percentile(predict(model, x, flip_average=flip_average)[0, 0].numpy(), [5, 95])
    return float(p95 / p5)


def mean_depth_baseline(dataset: Any) -> MeanDepthBaseline:
    """Per-pixel mean of valid depth over a dataset of full frames -> MeanDepthBaseline."""
    total = count = None
    for i in range(len(dataset)):
        s = dataset[i]
        d, v = s["depth"].double(), s["valid"].double()
        total = d * v if total is None else total + d * v
        count = v if count is None else count + v
    if total is None or count is None:
        raise DataError(None, "the baseline needs at least one training frame.")
    mean = torch.where(count > 0, total / count.clamp_min(1), (total.sum() / count.sum()).expand_as(total))
    return MeanDepthBaseline(mean.float())


def prediction_rows(models: Mapping[str, nn.Module], dataset: Any, indices: Sequence[int], *,
                    flip_average: bool = True) -> list[dict[str, Any]]:
    """Rows for viz.depth_grid: {"image", "depth", "valid", "name", <model name>: prediction in metres}."""
    rows = []
    for i in indices:
        s = dataset[int(i)]
        row = {"image": s["image"], "depth": s["depth"], "valid": s["valid"], "name": s.get("name", str(i))}
        for name, m in models.items():
            row[name] = predict(m, s["image"][None], flip_average=flip_average, fx=s.get("fx"))[0].cpu()
        rows.append(row)
    return rows


def paths_exist(*paths: str) -> list[Path]:
    """Resolve `paths` and raise DataError naming the first that does not exist (a missing earlier step)."""
    out = []
    for p in paths:
        r = resolve(p)
        if not r.exists():
            raise DataError(r, "does not exist.", "run the earlier notebook that writes it (see the pipeline profile).")
        out.append(r)
    return out


def subset(dataset: MappedDataset, which: str) -> MappedDataset:
    """"all" frames, or only the "hole_free" ones (dense ground truth everywhere)."""
    table = {"all": lambda d: d, "hole_free": hole_free}
    if which not in table:
        raise DataError(None, f"unknown subset {which!r}.", f"use one of {sorted(table)}.")
    return table[which](dataset)


def samples(dataset: Any, n: int) -> list[dict[str, Any]]:
    """The first n samples of a dataset (fewer if it is shorter), e.g. to show what training sees."""
    return [dataset[i] for i in range(min(n, len(dataset)))]


def frame_rows(source: FrameSource, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Rows {"image", "depth", "valid", "name"} of source frames, for viz.depth_grid."""
    from ..data.frame import frame_to_sample

    return [frame_to_sample(source[int(i)]) for i in indices]


def evaluate_all(models: Mapping[str, nn.Module], dataset: Any, **kwargs: Any) -> dict[str, Any]:
    """depthlib.evaluation.evaluate.evaluate for each named model on the same dataset and settings -> {name: EvalResult}.

    Each progress bar is labelled with its model's name (and the alignment, when not "none").
    """
    from ..evaluation.evaluate import evaluate

    return {name: evaluate(m, dataset, desc=name, **kwargs) for name, m in models.items()}


def evaluate_tables(models: Mapping[str, nn.Module], dataset: Any, alignments: Sequence[str],
                    **kwargs: Any) -> dict[str, dict[str, Any]]:
    """evaluate_all under each of `alignments`, every frame predicted once per model -> {alignment: {name: EvalResult}}.

    04's metric table ("none") and relative table come from one pass: half the network runs of two evaluate_all calls.
    """
    from ..evaluation.evaluate import evaluate_alignments

    per_model = {name: evaluate_alignments(m, dataset, alignments=alignments, desc=name, **kwargs)
                 for name, m in models.items()}
    return {a: {name: res[a] for name, res in per_model.items()} for a in dict.fromkeys(alignments)}


def write_report(results: Mapping[str, Any], out_dir: str, *, stem: str = "metrics", title: str = "") -> str:
    """Write <stem>.json (every result, per-image records included) and <stem>.md (side-by-side table) -> the table."""
    import json

    from ..core.atomic import atomic_write_text
    from ..evaluation.report import comparison_table

    out = resolve(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(dict(results))
    doc = {name: r.to_dict() for name, r in results.items()}
    atomic_write_text(out / f"{stem}.json", json.dumps(doc, indent=2))
    atomic_write_text(out / f"{stem}.md", (f"### {title}\n\n" if title else "") + table + "\n")
    return table


def milestone_figure(models: Mapping[str, nn.Module], dataset: Any, indices: Sequence[int], results: Mapping[str, Any],
                     path: str, *, flip_average: bool = True, rows: Sequence[Mapping[str, Any]] | None = None) -> Any:
    """RGB | ground truth | one column per model, titled with each model's AbsRel / delta1 on the whole split.

    rows: prediction_rows of these models on these frames, when the caller has them already (04 draws three figures
    from one set); otherwise they are predicted here."""
    from ..figures import viz

    if rows is None:
        rows = prediction_rows(models, dataset, indices, flip_average=flip_average)
    titles = ["RGB", "ground truth"] + [
        f"{n}\nAbsRel {results[n].metrics['abs_rel']:.3f}  δ1 {results[n].metrics['delta1']:.3f}" for n in models]
    first = next(iter(results.values()))
    return viz.depth_grid(rows, ["image", "depth", *models], titles=titles, path=resolve(path),
                          suptitle=f"{first.n_images} held-out frames, protocol {first.protocol}")


README_START, README_END = "<!-- pipeline-results:start -->", "<!-- pipeline-results:end -->"


def update_readme(table_md: str, figure: str, *, relative_md: str = "", relative: str = "scale_shift",
                  readme: str = "README.md", enabled: bool = True) -> Path | None:
    """Replace the README's generated results block with `table_md` (and the `relative`-aligned table) and a link to
    `figure`; no-op unless enabled."""
    from ..core.atomic import atomic_write_text

    if not enabled:
        return None

    p = resolve(readme)
    text = p.read_text()
    if README_START not in text or README_END not in text:
        raise DataError(p, f"has no {README_START} ... {README_END} block to update.", "add the two marker lines.")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    fig = Path(figure).as_posix()
    block = (f"{README_START}\n<!-- generated by notebooks/04_evaluate.ipynb; do not edit by hand -->\n\n"
             f"![milestone]({fig})\n\n**Metric depth**\n\n{table_md.strip()}\n"
             + (f"\n**Relative depth** ({relative} aligned per image)\n\n{relative_md.strip()}\n" if relative_md else "")
             + README_END)
    atomic_write_text(p, head + block + tail)
    return p


def spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]


def select(source: FrameSource, *, scenes: Sequence[str] = (), scene_fraction: float = 1.0, stride: int = 1,
           seed: int = 0) -> tuple[list[int], dict[str, Any]]:
    """Frames kept by scene list / scene fraction / stride -> (indices, record for the prepared file)."""
    from ..data.select import select_frames

    sel = select_frames(source, scenes=list(scenes) or None, scene_fraction=scene_fraction, stride=stride, seed=seed)
    return sel.indices, sel.to_meta()


def hole_demo(bts_path: str, *, method: str, path: str) -> Any:
    """hole_filling_figure on the first frame of a BTS-layout folder (e.g. data/sample/raw_depth); "" skips."""
    if not bts_path:
        print("hole demo skipped (hole_demo is empty)")
        return None
    src = open_source("bts", bts_path)
    return hole_filling_figure(src, [0], method=method, path=path)


def hole_filling_figure(source: FrameSource, indices: Sequence[int], *, method: str, path: str,
                        max_scan: int = 50) -> Any:
    """RGB | measured depth (holes magenta) | filled depth for the first frame with holes; None if there are none."""
    from ..data.frame import frame_to_sample
    from ..data.holes import fill_holes
    from ..figures import viz

    for i in list(indices)[:max_scan]:
        f = source[int(i)]
        if not f.valid.all():
            shown = method if method != "none" else "colorization"
            filled = frame_to_sample(fill_holes(f, shown))
            row = {**frame_to_sample(f), "filled": filled["depth"]}
            hole_pct = 100.0 * (1 - f.valid.mean())
            return viz.depth_grid([row], ["image", "depth", "filled"],
                                  titles=["RGB", f"measured ({hole_pct:.0f}% holes, masked in training)", f"filled ({shown})"],
                                  path=resolve(path), suptitle=f"hole filling on frame {f.name}")
    print(f"no holes in the first {min(len(indices), max_scan)} selected frames: the targets are dense already")
    return None


def finetune_summary(history: Any, *, select: str, init_from: str, wise_alpha: float = 1.0) -> str:
    """03's one line on the model best.pt holds: for select "val_loss" the epoch of the lowest val loss (0: init_from's
    weights, no epoch beat them); for "last" the final epoch, which a fixed schedule keeps whatever its val loss, read
    against the start's (epoch 0, when fit validated it)."""
    mix = "" if wise_alpha == 1 else (f"; best.pt then holds {wise_alpha:g} of these weights and {1 - wise_alpha:g} of "
                                      f"{init_from}'s (that mix itself is evaluated in 04)")
    if select == "last":
        start = next((row["val_loss"] for row in history.epochs if row.get("epoch") == 0 and "val_loss" in row), None)
        against = f" against {start:.4f} at the start ({init_from}'s weights)" if start is not None else ""
        return (f"kept epoch {history.best_epoch} (select = last, a fixed schedule: the final epoch, whatever its val "
                f"loss); its val loss {history.best_val_loss:.4f}{against}{mix}")
    whose = f"{init_from}'s, no epoch beat them" if history.best_epoch == 0 else f"the fine-tuned weights{mix}"
    return f"best epoch {history.best_epoch} (lowest val loss): val loss {history.best_val_loss:.4f} of {whose}"


def training_loss_fell(history: Any) -> bool:
    """Whether the epoch-mean training loss of a History fell from its first epoch to its last (02's check).

    A run of one epoch has nothing to compare (its first and last steps are single batches, too noisy to judge):
    True, and a printed note says the check was skipped. Rows without a training loss (fit's "epoch 0", the starting
    weights validated before a fine-tuning step) are not epochs of training.
    """
    losses = [row["train_loss"] for row in history.epochs if "train_loss" in row]
    if len(losses) < 2:
        why = "a run of one epoch has no earlier epoch to compare with" if losses else "no epoch of training finished"
        print(f"training loss not checked: {why} (2 or more epochs are checked)")
        return True
    return losses[-1] < losses[0]


def all_finite(values: Sequence[float]) -> bool:
    """True when no value is NaN or infinite (e.g. a history column)."""
    return bool(np.isfinite(np.asarray(values, dtype=float)).all())
