"""The one training loop: training, fine-tuning (init_from + freeze_encoder) and resume.

fit(model, train, val, cfg) trains on Datasets of sample dicts and writes, under cfg.out_dir:
last.pt (every epoch, every cfg.checkpoint_every steps, and when max_steps pauses the run: the LR
schedule spans cfg.epochs, so resuming continues its curve),
best.pt (lowest val loss; train loss without a val set), history.csv / history.json, and
tensorboard/ when cfg.tensorboard. Launched by torchrun it trains with DistributedDataParallel
(see depthlib.core.distributed); rank 0 alone logs and writes.

Targets: the ground truth is brought to the model's output resolution (stride s) before the
loss: an output pixel is valid only when all s*s pixels under it are (min-pool of `valid`), and
its depth is their mean. Validation reports val_loss (batch means weighted by batch size) and
AbsRel / delta1 / RMSE in metres at that same resolution, pooled over pixels; the paper's
protocol (crop, full resolution, flip averaging) is depthlib.evaluation.evaluate's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from . import precision as P
from ..core import distributed as D
from ..core.config import TrainConfig, to_dict, to_plain
from ..core.errors import CheckpointError, ConfigError, DepthlibError
from ..core.notices import notice
from ..core.paths import resolve
from ..core.reproducibility import kernel_mode, rng_state, seed_everything, set_rng_state
from ..data.dataset import make_loader
from ..evaluation.metrics import metrics_from_sums
from ..models.checkpoint import load_checkpoint, save_checkpoint
from .callbacks import Callback, TensorBoardLogger, TrainState
from .history import History
from .losses import LOSSES
from .resume_data import check_data_kept, data_identity
from .train_setup import (SampleSeeds, SeededSamples, check_config, check_schedule_kept, init_weights,
                          device_augment, interpolate_weights, lr_factor, make_optimizer, make_scheduler)
from .train_step import batch_to, forward_with_targets, validation_sums

__all__ = ["Callback", "History", "NonFiniteLossError", "fit"]
# What _save puts into extra beside train_config, all of which resuming needs.
RESUME_KEYS = ("train_config", "batch_in_epoch", "world_size", "history", "epoch_loss", "scaler", "rng")
log = logging.getLogger(__name__)

# TrainConfig fields that define a run: resuming with another value would silently keep the old one
# (the optimiser state restores lr, the schedule its shape), so a change is refused. Fields left out
# (device, precision, workers, logging, max_steps, ...) may change between sessions; epochs too, unless
# the LR schedule's curve depends on the run's length (train_setup.check_schedule_kept).
RUN_SETTINGS = ("lr", "encoder_lr_mult", "betas", "weight_decay", "amsgrad", "scheduler", "warmup_steps", "grad_clip",
                "grad_accum", "seed", "lr_step_size", "lr_gamma", "min_lr_ratio", "gpu_augment", "wise_alpha")
FRESH_HINT = "in the pipeline: --fresh"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class NonFiniteLossError(DepthlibError, FloatingPointError):
    """The loss (or gradient norm) became NaN / Inf; the last checkpoint on disk is untouched."""


def fit(model: nn.Module, train: Dataset, val: Dataset | None, cfg: TrainConfig,
        callbacks: Sequence[Callback] = ()) -> History:
    """Train `model` on `train` ({"image" [3,H,W], "depth" [1,H,W] m, "valid" [1,H,W]}) -> History.

    With cfg.gpu_augment, `train` hands its flip and channel swap to fit (training_sets(..., gpu_augment=True)).
    """
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be depthlib.training.callbacks.Callback instances, got {type(cb).__name__}.")
    check_config(cfg, len(train))  # type: ignore[arg-type]
    device = D.resolve_device(cfg.device)
    info = D.init_distributed(device)
    try:
        with kernel_mode(cfg.deterministic):
            return _Run(model, train, val, cfg, [*callbacks], device, info).run()
    finally:
        D.shutdown(info)


class _Run:
    """State of one fit call; methods are the loop's phases."""

    def __init__(self, model: nn.Module, train: Dataset, val: Dataset | None, cfg: TrainConfig,
                 callbacks: list[Callback], device: torch.device, info: D.DistInfo) -> None:
        self.cfg, self.device, self.info, self.val = cfg, device, info, val
        self.device_augment = device_augment(train, cfg)  # gpu_augment: the training set's flip / swap, per batch
        self.out_dir = resolve(cfg.out_dir)
        # the frames trained and validated on, kept in last.pt: a resume over other frames is refused
        self.data_identity = {"train": data_identity(train), "val": data_identity(val)}
        P.check_precision(cfg.precision, device)
        seed_everything(cfg.seed + info.rank)
        self.core = model.to(device)
        last = self.out_dir / "last.pt"
        ckpt = load_checkpoint(last, map_location=device) if cfg.resume and last.is_file() else None
        init = resolve(cfg.init_from) if cfg.init_from else None
        self.init_sha256 = _sha256(init) if init is not None and init.is_file() else ""  # kept in last.pt
        # WiSE-FT: best.pt mixes the trained weights with init_from's (read again on resume: last.pt holds trained ones)
        wise = cfg.wise_alpha < 1.0 and init is not None
        start = load_checkpoint(init, map_location=device) if init is not None and (ckpt is None or wise) else None
        if ckpt is None and start is not None:
            at = init_weights(self.core, start, init)  # type: ignore[arg-type]
            self._say(f"initialised weights from {cfg.init_from} (step {at} there); fresh optimiser")
        self.wise_init = {k: v.detach().clone() for k, v in start["model"].items()} if wise and start else None
        if cfg.freeze_encoder:
            self.core.freeze_encoder()
        if cfg.freeze_encoder_bn:
            self.core.freeze_encoder_bn()
        if cfg.channels_last:
            P.to_channels_last(self.core)
        if cfg.sync_batchnorm and info.enabled:
            if device.type != "cuda":
                raise ConfigError("sync_batchnorm needs CUDA. Fix: set sync_batchnorm=False on CPU.")
            self.core = nn.SyncBatchNorm.convert_sync_batchnorm(self.core)
        self.opt = make_optimizer(self.core, cfg)
        self.scaler = P.make_scaler(cfg.precision, device)
        self.pin = cfg.non_blocking and device.type == "cuda"
        self.sampler = D.ShardSampler(len(train), rank=info.rank, world_size=info.world_size,  # type: ignore[arg-type]
                                      seed=cfg.seed, shuffle=True)
        # Workers draw each sample's augmentation from (seed, epoch, index); without workers the main process draws
        # them, and last.pt holds its RNG.
        keyed = cfg.num_workers > 0
        self.loader = make_loader(SeededSamples(train) if keyed else train, batch_size=cfg.batch_size, shuffle=False,
                                  num_workers=cfg.num_workers, seed=cfg.seed + info.rank, pin_memory=self.pin,
                                  sampler=SampleSeeds(self.sampler, cfg.seed) if keyed else self.sampler)
        self.val_loader: DataLoader | None = None
        self.n_batches = math.ceil(len(self.sampler) / cfg.batch_size)
        # The schedule spans every epoch; max_steps only pauses the run (resuming continues the curve).
        self.total_steps = cfg.epochs * math.ceil(self.n_batches / cfg.grad_accum)
        self.sched = make_scheduler(self.opt, self.total_steps, cfg)
        self.history = History()
        self.epoch, self.step, self.skip, self.batch_pos, self.loss_sum, self.loss_n = 0, 0, 0, 0, 0.0, 0
        if ckpt is not None:
            self._restore(ckpt, last)
        self.net: nn.Module = self.core
        if info.enabled:
            self.net = DistributedDataParallel(self.core, device_ids=[device.index] if device.type == "cuda" else None)
        self.fwd = P.compile_model(self.net, cfg.compile_backend, device) if cfg.compile else self.net
        self.loss_fn = LOSSES[cfg.loss]
        if cfg.tensorboard:
            callbacks.append(TensorBoardLogger())
        self.callbacks = callbacks
        self.state = TrainState(cfg=cfg, model=self.core, optimizer=self.opt, out_dir=self.out_dir,
                                is_main=info.is_main, epoch=self.epoch, step=self.step)

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        """Resume: model, optimiser, schedule, scaler, counters, history, RNG, position in the epoch."""
        ex = ckpt.get("extra") or {}
        lacking = [k for k in RESUME_KEYS if k not in ex] + [k for k in ("optimizer", "scheduler") if not ckpt.get(k)]
        if lacking:
            # e.g. a copy of best.pt (weights + train_config only) or a file saved with save_checkpoint directly.
            raise CheckpointError(
                f"{path}: was not written by fit as its resume point: it lacks {lacking}, so this run cannot "
                "be resumed from it (a copy of best.pt, or a save_checkpoint file, look like this). Fix: "
                "resume=False to start over in this out_dir (last.pt is then overwritten), or move the file "
                "away; to start from its weights, set init_from to it in a new out_dir.")
        check_data_kept(path, ex.get("data_identity"), self.data_identity, hint=FRESH_HINT)
        old = ex["train_config"]
        now = {"arch": getattr(self.core, "arch", None), "model_config": to_plain(getattr(self.core, "config", {})),
               "loss": self.cfg.loss, "data": to_plain(self.cfg.data)}
        was = {"arch": ckpt.get("arch"), "model_config": ckpt.get("model_config"), "loss": old.get("loss"),
               "data": old.get("data", {})}
        now.update({k: to_plain(getattr(self.cfg, k)) for k in RUN_SETTINGS if k in old})
        was.update({k: old[k] for k in RUN_SETTINGS if k in old})
        differ = sorted(k for k in now if now[k] != was[k])
        where = lambda p: str(resolve(p)) if p else ""  # noqa: E731  (relative or absolute: the same file)
        if "init_from" in old and where(old["init_from"]) != where(self.cfg.init_from):
            differ.append("init_from")
            was["init_from"], now["init_from"] = old["init_from"], self.cfg.init_from
        elif ex.get("init_from_sha256") and self.init_sha256 and ex["init_from_sha256"] != self.init_sha256:
            differ.append("init_from")  # same path, new content: e.g. 02 retrained the checkpoint 03 starts from
            was["init_from"], now["init_from"] = "a checkpoint since replaced", f"the current {self.cfg.init_from}"
        if differ:
            raise ConfigError(f"{path}: holds a different run ({', '.join(f'{k}: {was[k]!r} there, {now[k]!r} now' for k in differ)}). "
                              f"Fix: resume=False to start over in this out_dir ({FRESH_HINT}), or use another out_dir.")
        self.init_sha256 = ex.get("init_from_sha256", self.init_sha256)
        done, partial = int(ckpt["epoch"]), bool(ex["batch_in_epoch"])
        if done > self.cfg.epochs or (done == self.cfg.epochs and partial):
            raise ConfigError(f"{path}: holds a run that has trained {done + partial} epoch(s), more than the "
                              f"{self.cfg.epochs} asked for: resuming cannot give a {self.cfg.epochs}-epoch model. Fix: "
                              f"resume=False to start over in this out_dir, replacing that run ({FRESH_HINT}), or use "
                              "another out_dir.")
        check_schedule_kept(path, self.cfg, step=int(ckpt["step"]), old_epochs=old["epochs"], steps=self.total_steps,
                            old_steps=ex.get("schedule_steps", old["epochs"] * (self.total_steps // max(1, self.cfg.epochs))),
                            hint=FRESH_HINT)
        if old["freeze_encoder"] != self.cfg.freeze_encoder:
            raise ConfigError(f"{path}: was trained with freeze_encoder={old['freeze_encoder']}. Fix: resume with "
                              "the same setting, or start a new out_dir (init_from=that file).")
        if ex["batch_in_epoch"] and (ex["world_size"], old["batch_size"]) != (self.info.world_size, self.cfg.batch_size):
            raise ConfigError(f"{path}: was saved mid-epoch by {ex['world_size']} process(es) with batch_size "
                              f"{old['batch_size']}; now {self.info.world_size} with {self.cfg.batch_size}. "
                              "Fix: resume with the same setup, or use a new out_dir.")
        self.core.load_state_dict(ckpt["model"], strict=True)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ex["scaler"])
        self.epoch, self.step, self.skip = ckpt["epoch"], ckpt["step"], ex["batch_in_epoch"]
        self.loss_sum, self.loss_n = ex["epoch_loss"]
        self.history = History.from_dict(ex["history"])
        if self.info.enabled:  # only rank 0's RNG is on disk: give every rank its own fresh stream
            seed_everything(self.cfg.seed + self.info.rank + 1000 * self.step)
        else:
            set_rng_state(ex["rng"])
        if self.epoch >= self.cfg.epochs or (self.cfg.max_steps and self.step >= self.cfg.max_steps):
            h = self.history
            best = f"best epoch {h.best_epoch}, loss {h.best_val_loss:.4f}" if h.best_epoch >= 0 else "no epoch validated"
            n = self.cfg.epochs
            why = f"its {n} epoch{'s' * (n != 1)}" if self.epoch >= n else f"max_steps={self.cfg.max_steps}"
            self._notice(f"{path}: this run already finished {why} ({best}): nothing to train. To train again from "
                         f"scratch: resume=False ({FRESH_HINT}), replacing it, or another out_dir.")
            return
        started = f"; it started from {self.cfg.init_from}" if self.cfg.init_from else ""
        self._notice(f"resumed from {path}: epoch {self.epoch + 1} of {self.cfg.epochs}, batch {self.skip}, "
                     f"step {self.step}{started}")

    def run(self) -> History:
        """Epochs from the resume point; returns (and writes) the History. Callbacks' teardown runs however it ends."""
        with contextlib.ExitStack() as stack:
            stack.callback(self._release_loaders)
            for cb in self.callbacks:
                stack.callback(cb.teardown, self.state)
            return self._epochs()

    def _release_loaders(self) -> None:
        """Drop the loaders, so their persistent workers exit now, also after a raise (whose traceback, kept by a
        notebook, holds this run)."""
        self.loader, self.val_loader = None, None  # type: ignore[assignment]

    def _epochs(self) -> History:
        """on_train_start, the epochs (paused by max_steps), on_train_end, history files."""
        for cb in self.callbacks:
            cb.on_train_start(self.state)
        start = self.epoch
        judged = self._validates_the_start()
        if judged:
            self._epoch_zero()
        done = bool(self.cfg.max_steps and self.step >= self.cfg.max_steps)
        trains = start < self.cfg.epochs and not done  # else nothing changes: the history files stay as they are
        for epoch in range(start, self.cfg.epochs if not done else start):
            self.epoch = self.state.epoch = epoch
            skip = self.skip if epoch == start else 0
            if not self._train_epoch(epoch, skip):
                self.history.stopped_early = "max_steps"
                self._save("last.pt", epoch, self.batch_pos)
                self._paused()
                break
            self._end_epoch(epoch)
            if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                self.history.stopped_early = "max_steps" if epoch + 1 < self.cfg.epochs else ""
                if self.history.stopped_early:
                    self._paused()
                break
        for cb in self.callbacks:
            cb.on_train_end(self.state)
        if self.history.best_epoch == 0 and len(self.history) > 1 and not self.history.stopped_early:
            by = f" by select_margin={self.cfg.select_margin:g}" if self.cfg.select_margin > 0 else ""
            self._notice(f"fine-tuning never beat the weights it started from on the validation frames{by} (val loss "
                         f"{self.history.epochs[0]['val_loss']:.4f} at epoch 0, best after it "
                         f"{min(self.history['val_loss'][1:]):.4f}): {self.out_dir / 'best.pt'} is {self.cfg.init_from} "
                         "unchanged. Fix: " + ("freeze_encoder_bn=True, " if not self.cfg.freeze_encoder_bn else "")
                         + "a lower lr, or more validation frames (of scenes the training frames do not show).")
        if self.info.is_main and (judged or trains):
            self.history.save(self.out_dir)
        return self.history

    def _validates_the_start(self) -> bool:
        """Fine-tuning, fresh, with validation frames: the starting weights are validated first (epoch 0)."""
        return (bool(self.cfg.init_from) and self.val is not None and len(self.val) > 0  # type: ignore[arg-type]
                and self.step == 0 and not self.history.epochs)

    def _epoch_zero(self) -> None:
        """Validate the weights init_from gave, before any step: history row epoch 0, the start every epoch is read
        against; with select "val_loss" also best.pt until an epoch beats it ("last" keeps the final epoch anyway).
        Validation draws nothing from the training's random streams (its loader has its own generator), so the
        epochs train as they would without it."""
        metrics, _ = self._validate()
        row = {"epoch": 0, "step": 0, "lr": self.opt.param_groups[0]["lr"], **metrics, "loss_name": self.cfg.loss}
        self.history.epochs.append(row)
        if self.cfg.select == "val_loss":
            self.history.best_val_loss, self.history.best_epoch = row["val_loss"], 0
            self._save_best(0)
        self._say(f"epoch 0 (the weights of {self.cfg.init_from}): val loss {row['val_loss']:.4f}")

    def _paused(self) -> None:
        """Say where max_steps left the LR schedule, which spans the run's epochs."""
        end = self.cfg.lr * lr_factor(self.total_steps, self.total_steps, self.cfg)
        self._notice(f"max_steps={self.cfg.max_steps} paused the run at step {self.step} of its LR schedule's "
                     f"{self.total_steps} (lr {self.opt.param_groups[0]['lr']:.2e} now, {end:.2e} at its end): the "
                     f"schedule spans epochs={self.cfg.epochs}, so resuming (max_steps=0 or larger) continues the curve "
                     f"from {self.out_dir / 'last.pt'}; a run whose schedule ends sooner needs fewer epochs.")

    def _train_epoch(self, epoch: int, skip: int) -> bool:
        """Train one epoch from batch `skip`; False when max_steps stopped it part-way."""
        cfg, accum, n = self.cfg, self.cfg.grad_accum, self.n_batches
        if skip == 0:
            self.loss_sum, self.loss_n = 0.0, 0
        self.sampler.set_epoch(epoch, skip * cfg.batch_size)
        self.net.train()
        self.t_epoch = time.perf_counter()
        bar = tqdm(total=n, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True,
                   disable=not (cfg.progress and self.info.is_main))
        acc = torch.zeros((), device=self.device)
        with bar, contextlib.closing(self._waited(self.loader)) as batches:  # closed: a raise keeps no iterator alive
            for i, batch in enumerate(batches, start=skip):
                first = (i // accum) * accum
                size = min(accum, n - first)
                final = i + 1 == first + size
                sync = self.net.no_sync() if self.info.enabled and not final else contextlib.nullcontext()
                with sync:
                    loss = self._loss(batch)
                    self.scaler.scale(loss / size).backward()
                acc += loss.detach() / size
                bar.update(1)
                if not final:
                    continue
                self._optimizer_step(acc, epoch, i + 1)
                acc = torch.zeros((), device=self.device)
                if self.step % max(1, cfg.log_every) == 0:
                    bar.set_postfix(loss=f"{self.state.loss:.4f}", lr=f"{self.state.lr:.2e}")
                self.batch_pos = i + 1
                if cfg.max_steps and self.step >= cfg.max_steps and i + 1 < n:
                    return False
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and i + 1 < n:
                    self._save("last.pt", epoch, i + 1)
        return True

    def _waited(self, loader: Iterable[Any]) -> Iterator[Any]:
        """The loader's batches; the time spent waiting for each is added to state.data_wait_s."""
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                return
            self.state.data_wait_s += time.perf_counter() - t0
            yield batch

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        b = batch_to(batch, self.device, non_blocking=self.pin, channels_last=self.cfg.channels_last)
        if self.device_augment is not None:
            b = self.device_augment(b)
        raw, depth, valid = forward_with_targets(self.fwd, b, self.cfg.precision, self.device)
        return self.loss_fn(pred=raw, target=depth, valid=valid, head=self.core.head)

    def _optimizer_step(self, acc: torch.Tensor, epoch: int, batch_pos: int) -> None:
        """Check the loss on every rank, unscale, clip, step, schedule; then log and call back."""
        stats = D.all_reduce_sum(torch.stack([acc, (~torch.isfinite(acc)).float()]), self.info).tolist()
        where = f"at step {self.step + 1} (epoch {epoch + 1}, batch {batch_pos})"
        if stats[1] > 0:
            self._diverged(f"loss is {acc.item()} {where}")
        self.scaler.unscale_(self.opt)
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.cfg.grad_clip)
            if self.cfg.precision != "fp16" and not math.isfinite(norm.item()):
                self._diverged(f"gradient norm is {norm.item()} {where}")
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.step += 1
        loss = stats[0] / self.info.world_size
        self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1
        lr = self.opt.param_groups[0]["lr"]
        self.state.step, self.state.loss, self.state.lr = self.step, loss, lr
        if self.step % max(1, self.cfg.log_every) == 0:
            self.history.steps.append({"step": self.step, "loss": loss, "lr": lr})
        for cb in self.callbacks:
            cb.on_step_end(self.state)

    def _diverged(self, what: str) -> None:
        last = self.out_dir / "last.pt"
        kept = f"{last} (step {load_checkpoint(last)['step']}) is untouched" if last.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"training stopped: {what}; {kept}. Fix: lower TrainConfig.lr, keep grad_clip > 0, use bf16 "
            "rather than fp16, and check the data for NaN/Inf depth; then rerun (resume=True picks up last.pt)."
        )

    def _validate(self) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """val_loss, val_abs_rel, val_delta1, val_rmse over the whole val set (summed over ranks)."""
        if self.val is None or len(self.val) == 0:  # type: ignore[arg-type]
            return {}, {}
        if self.val_loader is None:  # one for the run: its workers (persistent) start at the first validation
            shard = Subset(self.val, D.contiguous_shard(len(self.val), self.info))  # type: ignore[arg-type]
            self.val_loader = make_loader(shard, batch_size=self.cfg.batch_size, shuffle=False,
                                          num_workers=self.cfg.num_workers, pin_memory=self.pin)
        self.core.eval()
        sums, preview = validation_sums(self.core, self.val_loader, self.loss_fn, precision=self.cfg.precision,
                                        device=self.device, channels_last=self.cfg.channels_last,
                                        non_blocking=self.pin, preview=self.info.is_main)
        D.all_reduce_sum(sums, self.info)
        out = {"val_loss": float(sums[0] / sums[1])}
        if float(sums[2]) > 0:  # count of valid pixels
            m = metrics_from_sums(sums[2:])
            out.update(val_abs_rel=m["abs_rel"], val_delta1=m["delta1"], val_rmse=m["rmse"])
        return out, preview

    def _end_epoch(self, epoch: int) -> None:
        """Validate, append the history row, write last.pt / best.pt / history, call back."""
        t0 = time.perf_counter()
        metrics, preview = self._validate()
        row = {"epoch": epoch + 1, "step": self.step, "lr": self.opt.param_groups[0]["lr"],
               "train_loss": self.loss_sum / max(1, self.loss_n), **metrics, "loss_name": self.cfg.loss,
               "train_seconds": t0 - self.t_epoch, "val_seconds": time.perf_counter() - t0}
        self.history.epochs.append(row)
        val = f", val loss {row['val_loss']:.4f}" if "val_loss" in row else ""
        self._say(f"epoch {epoch + 1}/{self.cfg.epochs}: train loss {row['train_loss']:.4f}{val} "
                  f"({row['train_seconds'] + row['val_seconds']:.0f} s)")   # a line the pipeline streams as it comes
        score = row.get("val_loss", row["train_loss"])
        # select="last": a fixed schedule, so a handful of validation frames never picks the model.
        improved = score < self.history.best_val_loss or self.cfg.select == "last"
        if improved and self.cfg.select == "val_loss" and self.history.best_epoch == 0 and self.cfg.select_margin > 0:
            improved = score < self.history.epochs[0]["val_loss"] * (1 - self.cfg.select_margin)  # the start is best.pt
        if improved:
            self.history.best_val_loss, self.history.best_epoch = score, epoch + 1
        if improved:  # best before last: a crash between the two redoes this epoch on resume
            self._save_best(epoch + 1)
        self._save("last.pt", epoch + 1, 0)
        if self.info.is_main:
            self.history.save(self.out_dir)
        self.state.metrics, self.state.preview = row, preview
        for cb in self.callbacks:
            cb.on_epoch_end(self.state)

    def _save_best(self, epoch: int) -> None:
        """best.pt: the weights now, or under wise_alpha their mix with init_from's (epoch 0 holds init_from's own)."""
        mix = self.wise_init is not None and epoch > 0
        self._save("best.pt", epoch, 0, weights_only=True,
                   model=interpolate_weights(self.core, self.wise_init, self.cfg.wise_alpha) if mix else None)

    def _save(self, name: str, epoch: int, batch_in_epoch: int, weights_only: bool = False,
              model: nn.Module | None = None) -> None:
        """Rank 0 writes out_dir/name (atomic, via save_checkpoint) between two barriers; `model`: other weights
        than the trained model's (best.pt under wise_alpha)."""
        D.barrier(self.info)
        if self.info.is_main:
            extra = {"batch_in_epoch": batch_in_epoch, "world_size": self.info.world_size,
                     "train_config": to_dict(self.cfg), "history": self.history.to_dict(),
                     "epoch_loss": [self.loss_sum, self.loss_n], "scaler": self.scaler.state_dict(),
                     "rng": rng_state(), "init_from_sha256": self.init_sha256, "schedule_steps": self.total_steps,
                     "data_identity": self.data_identity}
            metrics = self.history.epochs[-1] if self.history.epochs else {}
            save_checkpoint(self.out_dir / name, model=self.core if model is None else model,
                            optimizer=None if weights_only else self.opt,
                            scheduler=None if weights_only else self.sched,
                            epoch=epoch, step=self.step, metrics=metrics,
                            extra={"train_config": extra["train_config"]} if weights_only else extra)
        D.barrier(self.info)

    def _notice(self, msg: str) -> None:
        if self.info.is_main:
            notice(msg)

    def _say(self, msg: str) -> None:
        if self.info.is_main:
            log.info(msg)
            if self.cfg.progress:
                tqdm.write(msg)
