"""DDP through fit: 2 gloo processes under torchrun == 1 process with the doubled batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _train_helpers import DDP_RUN, SynthDepth, cfg, tiny_model, weights
from depthlib.core import distributed as D
from depthlib.models.checkpoint import load_checkpoint
from depthlib.training.train import fit

HELPER = Path(__file__).with_name("_train_helpers.py")


def test_shard_sampler_matches_doubled_batch_order():
    one = D.ShardSampler(10, rank=0, world_size=1, seed=5, shuffle=True)
    two = [D.ShardSampler(10, rank=r, world_size=2, seed=5, shuffle=True) for r in (0, 1)]
    for s in [one, *two]:
        s.set_epoch(3)
    full = list(one)
    assert sorted(full) == list(range(10))
    r0, r1 = list(two[0]), list(two[1])
    assert [x for pair in zip(r0, r1) for x in pair] == full  # batch b per rank <-> batch 2b in one process
    two[1].set_epoch(3, skip=2)
    assert list(two[1]) == r1[2:] and len(two[1]) == 3
    odd = D.ShardSampler(5, rank=1, world_size=2, seed=0, shuffle=False)
    assert list(odd) == [1, 3, 0]  # padded to a multiple of the world size, as DistributedSampler


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 10, 13, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_contiguous_shard_hands_each_rank_one_block(n, world):
    shards = [D.contiguous_shard(n, D.DistInfo(rank=r, world_size=world)) for r in range(world)]
    for s in filter(None, shards):
        assert s == list(range(s[0], s[0] + len(s))), f"a rank's indices are not one block: {s}"
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert [i for s in shards for i in s] == list(range(n))  # in rank order: disjoint, and together every index


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_one_process_doubled_batch(tmp_path):
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HELPER), "ddp", str(out), str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    ref = tiny_model()
    single = {**DDP_RUN, "batch_size": 2 * DDP_RUN["batch_size"]}
    h = fit(ref, SynthDepth(16), SynthDepth(5, seed=1), cfg(tmp_path / "one", **single))
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == h.epochs[-1]["step"] == 2 and ck["extra"]["world_size"] == 2
    for k, v in weights(ref).items():
        torch.testing.assert_close(ck["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
        assert not torch.equal(v, weights(tiny_model())[k])  # training moved every tensor
    row = ck["extra"]["history"]["epochs"][-1]
    for key in ("train_loss", "val_loss", "val_abs_rel", "val_delta1"):  # summed over both ranks' shards
        assert row[key] == pytest.approx(h.epochs[-1][key], rel=1e-5), key
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.csv", "history.json", "last.pt"]
    # 4 batches per rank, grad_accum 2: the 2 non-final micro-steps of each rank ran under no_sync
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["2", "2"]
