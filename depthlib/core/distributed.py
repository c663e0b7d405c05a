"""torchrun / DistributedDataParallel plumbing used by depthlib.training.train.fit.

Launch (one machine, 4 GPUs):
    torchrun --standalone --nproc_per_node=4 -m depthlib train ...   (or any script calling fit)
Several machines: the same command on each, with --nnodes=N --node_rank=i
--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT --rdzv_id=JOB instead of --standalone.
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; fit reads them here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False   # fit started the process group, so fit ends it

    @property
    def enabled(self) -> bool:
        """True when gradients are averaged across more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or an equivalent launcher) set RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str, *, option: str = "") -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when a GPU is visible, else cpu; explicit names are checked.

    option: the command-line flag that gave `name` (e.g. "--device"): errors then say the fix in its words.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    said = f"{option} {name}" if option else f"device={name!r}"

    def use(*values: str) -> str:
        """The fix in the words of whoever gave `name`: the command-line flag, else the setting."""
        if option:
            return " or ".join(f"{option} {v}" for v in values)
        return "set device=" + " or ".join(repr(v) for v in values)

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{said} is not a device depthlib runs on. "
                          f"Fix: {use('auto', 'cpu', 'cuda', 'cuda:N')} (or mps on Apple silicon).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{said} but no Apple-silicon GPU (MPS) is available. Fix: {use('auto', 'cpu')}.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{said} but no CUDA GPU is visible. Fix: {use('auto', 'cpu')}.")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun job when launched by it (nccl on cuda, gloo on cpu); else rank 0 of 1."""
    if not launched_by_torchrun():
        return DistInfo()
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world == 1:
        return DistInfo(rank=0, world_size=1, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        created = True
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ConfigError(
            f"the process group has rank {dist.get_rank()}/{dist.get_world_size()} but the "
            f"environment says {rank}/{world}. Fix: launch with torchrun and do not re-initialise."
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, created_group=created)


def shutdown(info: DistInfo) -> None:
    """End the process group if fit created it."""
    if info.created_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `t` over ranks in place and return it (no-op for a single process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class ShardSampler(Sampler[int]):
    """Per-epoch shuffled shard of the dataset for this rank, able to start mid-epoch.

    The order is DistributedSampler's (randperm seeded by seed + epoch, padded to a multiple of
    world_size, rank r takes every world_size-th index from r), so one process with batch
    world_size*b sees, step for step, the union of what world_size ranks with batch b see.
    `skip` drops this rank's first `skip` indices: a resumed run does not load them again.
    """

    def __init__(self, n: int, *, rank: int, world_size: int, seed: int, shuffle: bool) -> None:
        self.n, self.rank, self.world, self.seed, self.shuffle = n, rank, world_size, seed, shuffle
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Choose the epoch (reshuffles) and how many of this rank's indices to skip."""
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> np.ndarray:
        """This rank's indices of the epoch, int64 [ceil(n / world_size)]: 8 bytes an index, no Python list."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).numpy()
        else:
            order = np.arange(self.n, dtype=np.int64)
        total = -(-self.n // self.world) * self.world
        if total > self.n:
            order = np.concatenate([order, order[: total - self.n]])
        return order[self.rank : total : self.world]

    def __iter__(self) -> Iterator[int]:
        return map(int, self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, -(-self.n // self.world) - self.skip)


def contiguous_shard(n: int, info: DistInfo) -> list[int]:
    """Indices of this rank's part of an n-item evaluation set: one block, without padding (exact sums).

    Blocks in rank order cover 0..n-1 once; the first n % world_size ranks get one item more.
    """
    size, extra = divmod(n, info.world_size)
    start = info.rank * size + min(info.rank, extra)
    return list(range(start, start + size + (info.rank < extra)))
