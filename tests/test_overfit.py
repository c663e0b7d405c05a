"""End-to-end learning check on real data: a small model overfits 4 real NYU frames on CPU."""

from __future__ import annotations

import pytest
import torch

from depthlib.config import DataConfig, TrainConfig
from depthlib.data import open_source
from depthlib.data.dataset import DepthDataset, MappedDataset
from depthlib.data.transforms import build_transforms
from depthlib.metrics import depth_metrics
from depthlib.models import create_model
from depthlib.predict import predict
from depthlib.train import fit


class _Cached(torch.utils.data.Dataset):
    """Decode once: the test is about learning, not I/O."""

    def __init__(self, ds):
        self.items = [ds[i] for i in range(len(ds))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.mark.slow
def test_overfitting_four_real_frames(sample_dir, tmp_path):
    torch.manual_seed(0)
    cfg = DataConfig(image_size=(64, 96), border_crop="nyu")
    frames = DepthDataset(open_source("densedepth", sample_dir), indices=[0, 3, 9, 30])
    data = _Cached(MappedDataset(frames, build_transforms(cfg, train=False)))
    model = create_model("unet", width=16, depth=3, head="log")
    tc = TrainConfig(epochs=300, batch_size=4, lr=2e-3, loss="densedepth", scheduler="cosine", device="cpu",
                     out_dir=str(tmp_path), resume=False, progress=False, seed=0)
    hist = fit(model, data, None, tc)
    losses = hist["train_loss"]
    assert len(losses) == 300
    assert losses[-1] * 5 <= losses[0], f"loss fell only from {losses[0]:.4f} to {losses[-1]:.4f}"
    batch = torch.utils.data.default_collate(data.items)
    pred = predict(model, batch["image"], flip_average=False)
    m = depth_metrics(pred=pred, target=batch["depth"], valid=batch["valid"])
    assert m["abs_rel"] < 0.1, m
