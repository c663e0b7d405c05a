"""depthlib.evaluation.protocols / evaluate / report: crops, masks, DenseDepth's upsampling, streaming == all-at-once."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from depthlib.core.errors import ConfigError, DataError
from depthlib.evaluation.evaluate import EvalResult, evaluate
from depthlib.evaluation.metrics import METRIC_NAMES, depth_metrics
from depthlib.evaluation.protocols import PROTOCOLS, Protocol, get_protocol, list_protocols
from depthlib.models.heads import InverseHead
from depthlib.evaluation.report import (comparison_table, error_maps, headline, read_metrics_json, worst_table,
                             write_metrics_json)

from test_metrics import np_metrics

H, W = 480, 640
SMALL = (96, 128)   # most evaluate tests run the protocols rescaled to this, to stay fast on CPU


class FakeModel(nn.Module):
    """Follows the model contract: forward -> raw inverse depth at 1/2 resolution, head.to_depth -> metres."""

    output_stride = 2
    input_multiple = 32
    arch = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 0.3, 0.2]))
        self.head = InverseHead(min_depth=0.1, max_depth=10.0)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        gray = (x * self.w.view(1, 3, 1, 1)).sum(1, keepdim=True)
        ramp = torch.linspace(0, 1, x.shape[-1], device=x.device, dtype=x.dtype)  # left/right asymmetry
        return F.avg_pool2d(1.0 + 9.0 * (0.6 * gray + 0.4 * ramp), 2)


class Source:
    path = "fake://frames"


class ListDataset(Dataset):
    """Sample dicts held in memory, with a `.source.path` like DepthDataset."""

    def __init__(self, n: int, *, holes: bool, seed: int = 0, size: tuple[int, int] = SMALL) -> None:
        gen = torch.Generator().manual_seed(seed)
        h, w = size
        self.source = Source()
        self.samples = []
        for i in range(n):
            depth = torch.rand(1, h, w, generator=gen) * 9.0 + 0.5
            valid = torch.ones(1, h, w, dtype=torch.bool)
            if holes:
                valid = torch.rand(1, h, w, generator=gen) > 0.2 + 0.1 * i   # raw Kinect-like holes
                depth[:, 40:45, 40:60] = 10.5                                # beyond the 10 m cap
                depth = torch.where(valid, depth, torch.zeros_like(depth))
            self.samples.append({"image": torch.rand(3, h, w, generator=gen), "depth": depth,
                                 "valid": valid, "name": f"{i:05d}"})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


def full_res_prediction(model: FakeModel, ds: ListDataset, p: Protocol, flip: bool) -> torch.Tensor:
    """All predictions at once [N,1,H,W] float64, flip averaging written out here (not depthlib.models.predict)."""
    x = torch.stack([s["image"] for s in ds.samples])
    with torch.no_grad():
        d = model.head.to_depth(model(x))
        if flip:
            d = 0.5 * (d + model.head.to_depth(model(x.flip(-1))).flip(-1))
    d = d.double()
    if p.clamp_before_upsample:
        d = d.clamp(*p.pred_range)
    return F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=p.align_corners).clamp(*p.pred_range)


def reference(model: FakeModel, ds: ListDataset, p: Protocol, flip: bool) -> dict[str, float]:
    """Non-streaming: every prediction held at once, NumPy metrics (no depthlib.evaluation.metrics)."""
    d = full_res_prediction(model, ds, p, flip)
    g = torch.stack([s["depth"] for s in ds.samples]).double()
    v = torch.stack([s["valid"] for s in ds.samples])
    t, b, l, r = p.crop  # type: ignore[misc]
    d, g, v = d[..., t:b, l:r].numpy(), g[..., t:b, l:r].numpy(), v[..., t:b, l:r].numpy()
    if p.valid_range is not None:
        v = v & (g > p.valid_range[0]) & (g < p.valid_range[1])
    if p.reduce == "pooled":
        out = np_metrics(d[v], g[v])
    else:
        per = [np_metrics(d[i][v[i]], g[i][v[i]]) for i in range(len(d))]
        out = {k: float(np.mean([m[k] for m in per])) for k in METRIC_NAMES}
    out["n_pixels"] = int(v.sum())
    return out


# ---------------------------------------------------------------- protocols


def test_registry_and_documented_crop_sizes() -> None:
    assert list_protocols() == ["densedepth", "eigen", "no_crop_valid"]
    pred = torch.full((1, 1, H, W), 2.0)
    target = torch.full((1, 1, H, W), 3.0)
    valid = torch.ones(1, 1, H, W, dtype=torch.bool)
    for name, size in {"densedepth": (440, 592), "eigen": (426, 560)}.items():
        proto = get_protocol(name)
        assert proto.crop_size == size
        for t in proto.apply(pred, target, valid):
            assert tuple(t.shape[-2:]) == size
        assert name in proto.describe()
    assert "rows 20-459, cols 24-615" in PROTOCOLS["densedepth"].describe()
    with pytest.raises(ConfigError, match="known"):
        get_protocol("kitti")


def test_wrong_frame_size_raises_and_rescaled_is_renamed() -> None:
    small = torch.ones(1, 1, 240, 320)
    with pytest.raises(DataError, match=r"rescaled\(240, 320\)"):
        PROTOCOLS["eigen"].apply(small, small, small.bool(), source="data/x")
    half = PROTOCOLS["densedepth"].rescaled(240, 320)
    assert half.name == "densedepth@240x320" and half.crop == (10, 230, 12, 308)
    assert half.apply(small, small, small.bool())[0].shape[-2:] == (220, 296)
    assert PROTOCOLS["eigen"].rescaled(480, 640) is PROTOCOLS["eigen"]


def test_no_crop_valid_takes_any_size_and_every_valid_pixel() -> None:
    """Your own data: odd sizes and aspect ratios, no crop, the reader's mask (even beyond 10 m), per-image mean."""
    proto = get_protocol("no_crop_valid")
    assert proto.rescaled(200, 320) is proto and "no crop, any frame size" in proto.describe()
    ds = ListDataset(3, holes=True, size=(64, 224))    # 7:2, multiples of 32 so predict pads nothing
    res = evaluate(FakeModel(), ds, protocol="no_crop_valid", batch_size=2, device="cpu", progress=False)
    v = torch.stack([s["valid"] for s in ds.samples])
    assert res.protocol == "no_crop_valid" and res.n_pixels == int(v.sum()) and res.reduce == "per_image"
    pred = full_res_prediction(FakeModel(), ds, proto, flip=True)
    g = torch.stack([s["depth"] for s in ds.samples]).double()
    per = [np_metrics(pred[i][v[i]].numpy(), g[i][v[i]].numpy()) for i in range(3)]
    for k in METRIC_NAMES:
        assert res.metrics[k] == pytest.approx(np.mean([m[k] for m in per]), rel=1e-9), k
    assert float(g[v].max()) > 10.0                                   # the 10.5 m patch counts: no range cap here
    with pytest.raises(DataError, match="defined on 640x480"):
        evaluate(FakeModel(), ds, protocol="eigen", device="cpu", progress=False)


def test_eigen_excludes_holes_and_out_of_range_ground_truth() -> None:
    ds = ListDataset(1, holes=True, size=(H, W))
    s = ds.samples[0]
    g, v = s["depth"][None], s["valid"][None]
    pred = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(9)) * 9 + 0.5
    proto = PROTOCOLS["eigen"]

    def run(p: torch.Tensor) -> dict[str, float]:
        a, b, c = proto.apply(p, g, v)
        return depth_metrics(pred=a, target=b, valid=c, reduce="per_image")

    base = run(pred)

    excluded = ~v | (g >= 10.0)
    excluded[..., :45, :] = True
    excluded[..., :, 601:] = True
    perturbed = torch.where(excluded, torch.full_like(pred, 0.02), pred)
    assert run(perturbed) == base                      # holes, >10 m and outside the crop: no effect
    kept = pred.clone()
    kept[0, 0, 200, 300] = 0.02 if bool(v[0, 0, 200, 300]) else kept[0, 0, 200, 300]
    assert bool(v[0, 0, 200, 300]) and run(kept) != base  # a valid pixel does count
    n_expected = int((v & (g > 1e-3) & (g < 10))[..., 45:471, 41:601].sum())
    assert base["n_pixels"] == n_expected


def test_densedepth_refuses_holes() -> None:
    s = ListDataset(1, holes=True, size=(H, W)).samples[0]
    with pytest.raises(DataError, match="filled ground truth"):
        PROTOCOLS["densedepth"].apply(torch.ones(1, 1, H, W), s["depth"][None], s["valid"][None])


def test_densedepth_upsampling_matches_skimage_resize_inside_the_crop() -> None:
    """DenseDepth's scale_up(2, .) is skimage resize(order=1, mode='reflect', anti_aliasing=True)."""
    resize = pytest.importorskip("skimage.transform").resize
    low = torch.rand(1, 1, H // 2, W // 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 9 + 0.5
    ours = PROTOCOLS["densedepth"].apply(low, torch.full((1, 1, H, W), 5.0), torch.ones(1, 1, H, W, dtype=torch.bool))[0]
    ref = resize(low[0, 0].numpy(), (H, W), order=1, preserve_range=True, mode="reflect", anti_aliasing=True)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref[20:460, 24:616], rtol=0, atol=1e-12)


def test_densedepth_clamps_before_upsampling() -> None:
    low = torch.full((1, 1, H // 2, W // 2), 5.0)
    low[..., 100, 100] = 50.0                  # far beyond 10 m: clipped first, as DenseDepth's predict does
    out = PROTOCOLS["densedepth"].apply(low, torch.full((1, 1, H, W), 5.0), torch.ones(1, 1, H, W, dtype=torch.bool))[0]
    # x2 bilinear with half-pixel centres: the nearest output pixels weigh that input by 0.75 * 0.75.
    # Clipping after upsampling would give 10 there (0.5625 * 50 + 0.4375 * 5 > 10) instead.
    assert float(out.max()) == pytest.approx(0.5625 * 10.0 + 0.4375 * 5.0, rel=1e-12)
    assert float(out[0, 0, 200 - 20, 200 - 24]) == pytest.approx(0.5625 * 10.0 + 0.4375 * 5.0, rel=1e-12)


# ---------------------------------------------------------------- evaluate


@pytest.mark.parametrize("name,holes", [("densedepth", False), ("eigen", True)])
def test_streaming_equals_all_at_once(name: str, holes: bool) -> None:
    ds = ListDataset(3, holes=holes)
    proto = PROTOCOLS[name].rescaled(*SMALL)
    model = FakeModel()
    res = evaluate(model, ds, protocol=proto, batch_size=2, device="cpu", progress=False)
    seen = list(model.batch_sizes)
    ref = reference(model, ds, proto, flip=True)
    for k in METRIC_NAMES:
        assert res.metrics[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k
    assert res.n_pixels == ref["n_pixels"] and res.n_images == 3
    assert seen == [2, 2, 1, 1]          # never more than one batch at a time; 2 passes (flip)
    assert res.protocol == f"{name}@96x128" and res.source == "fake://frames" and res.model == "fake"
    assert res.alignment == "none" and res.flip_average is True and res.reduce == PROTOCOLS[name].reduce
    one = evaluate(FakeModel(), ds, protocol=proto, batch_size=3, device="cpu", progress=False)
    assert one.metrics == pytest.approx(res.metrics, rel=1e-12)


@pytest.mark.slow
def test_full_resolution_densedepth_counts_every_pixel_of_the_crop() -> None:
    ds = ListDataset(2, holes=False, size=(H, W))
    res = evaluate(FakeModel(), ds, batch_size=2, device="cpu", progress=False)
    assert res.protocol == "densedepth" and res.n_pixels == 2 * 440 * 592
    ref = reference(FakeModel(), ds, PROTOCOLS["densedepth"], flip=True)
    assert res.metrics["abs_rel"] == pytest.approx(ref["abs_rel"], rel=1e-9)
    with pytest.raises(DataError, match="rescaled"):
        evaluate(FakeModel(), ListDataset(1, holes=False), device="cpu", progress=False)


def test_flip_alignment_and_worst_frames_are_recorded() -> None:
    ds = ListDataset(2, holes=True, seed=1)
    eigen = PROTOCOLS["eigen"].rescaled(*SMALL)
    plain = evaluate(FakeModel(), ds, protocol=eigen, flip_average=False, device="cpu", progress=False,
                     source="given/path")
    assert plain.flip_average is False and plain.source == "given/path"
    assert plain.metrics["abs_rel"] == pytest.approx(reference(FakeModel(), ds, eigen, flip=False)["abs_rel"], rel=1e-9)
    # Ground truth that is an exact affine of the model's (upsampled) inverse depth: alignment undoes it.
    pred = full_res_prediction(FakeModel(), ds, eigen, flip=True)
    for i, smp in enumerate(ds.samples):
        smp["depth"] = torch.where(smp["valid"], 1.0 / (0.5 / pred[i] + 0.05), torch.zeros(1, *SMALL)).float()
    aligned = evaluate(FakeModel(), ds, protocol=eigen, alignment="scale_shift_inverse", device="cpu",
                       progress=False, keep_per_image=False, worst_n=2)
    assert aligned.alignment == "scale_shift_inverse" and aligned.per_image == []
    assert aligned.metrics["abs_rel"] < 1e-6 and aligned.metrics["delta1"] == 1.0
    unaligned = evaluate(FakeModel(), ds, protocol=eigen, device="cpu", progress=False)
    assert unaligned.metrics["abs_rel"] > 0.1
    worst = plain.worst_frames(3)
    assert len(worst) == 2
    assert [w["abs_rel"] for w in worst] == sorted((r["abs_rel"] for r in plain.per_image), reverse=True)
    assert plain.worst[0] == worst[0] and len(aligned.worst) == 2 and aligned.worst[0]["abs_rel"] >= aligned.worst[1]["abs_rel"]
    per_image_mean = np.mean([r["abs_rel"] for r in plain.per_image])
    assert plain.metrics["abs_rel"] == pytest.approx(per_image_mean, rel=1e-12)
    with pytest.raises(ConfigError, match="alignment"):
        evaluate(FakeModel(), ds, alignment="affine", progress=False)


# ---------------------------------------------------------------- report


def _result(ds: ListDataset, flip: bool) -> EvalResult:
    return evaluate(FakeModel(), ds, protocol=PROTOCOLS["densedepth"].rescaled(*SMALL), flip_average=flip,
                    device="cpu", progress=False)


def test_metrics_json_roundtrip_and_tables(tmp_path) -> None:
    ds = ListDataset(2, holes=False)
    prev, cur = _result(ds, False), _result(ds, True)
    out = write_metrics_json(tmp_path / "m" / "current.json", cur)
    assert sorted(os.listdir(out.parent)) == ["current.json"]          # no temp file left behind
    d = json.loads(out.read_text())
    assert d["protocol"] == "densedepth@96x128" and d["metrics"]["n_pixels"] == 2 * 88 * 118
    assert d["protocol_settings"]["crop"] == [4, 92, 5, 123]
    back = read_metrics_json(out)
    assert back.metrics == cur.metrics and back.per_image == cur.per_image
    table = comparison_table({"previous": prev, "current": back})
    assert table.startswith("**Protocol: densedepth@96x128**") and "| metric | previous | current | change |" in table
    assert f"{cur.metrics['abs_rel'] - prev.metrics['abs_rel']:+.4f}" in table
    assert "| protocol | densedepth@96x128 | densedepth@96x128 |" in table
    assert "rows 4-91, cols 5-122 of 128x96 (118x88)" in table
    assert "protocol: densedepth@96x128" in worst_table(cur, n=2)
    eig = evaluate(FakeModel(), ListDataset(1, holes=True), protocol=PROTOCOLS["eigen"].rescaled(*SMALL),
                   device="cpu", progress=False)
    with pytest.raises(ConfigError, match="different protocols"):
        comparison_table({"a": cur, "b": eig})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        read_metrics_json(tmp_path / "bad.json")


def _scored(abs_rel: float, delta1: float) -> EvalResult:
    return EvalResult(protocol="densedepth", metrics={"abs_rel": abs_rel, "delta1": delta1}, source="x.h5")


def test_headline_says_whether_current_beats_each_reference() -> None:
    """04's headline (issue 25): the verdict follows AbsRel and delta1 together, references absent are left out."""
    res = {"previous": _scored(0.186, 0.70), "current": _scored(0.181, 0.72), "mean-depth baseline": _scored(0.37, 0.36)}
    text = headline(res)
    assert text.splitlines()[0] == "**current beats previous**: AbsRel 0.181 vs 0.186, δ1 0.720 vs 0.700"
    assert "**current beats mean-depth baseline**" in text and "scratch control" not in text
    worse = headline({"previous": _scored(0.143, 0.785), "current": _scored(0.551, 0.327)}, markdown=False)
    assert worse == "current is worse than previous: AbsRel 0.551 vs 0.143, δ1 0.327 vs 0.785"
    kept = headline({"previous": _scored(0.186, 0.7), "current": _scored(0.186, 0.7)})
    assert "**current is level with previous**" in kept
    mixed = headline({"previous": _scored(0.186, 0.7), "current": _scored(0.180, 0.69)})
    assert "is mixed against previous" in mixed
    assert "nothing to compare" in headline({"current": _scored(0.2, 0.6)})
    with pytest.raises(ConfigError, match="'current'"):
        headline({"previous": _scored(0.2, 0.6)})


def test_error_maps_are_cropped_arrays_with_nan_holes() -> None:
    ds = ListDataset(2, holes=True)
    eigen = PROTOCOLS["eigen"].rescaled(*SMALL)
    maps = error_maps(FakeModel(), ds, [1], protocol=eigen, device="cpu", kinds=("abs_rel", "signed"))
    m = maps[0]
    assert m["index"] == 1 and m["name"] == "00001" and m["protocol"] == "eigen@96x128"
    assert m["abs_rel"].shape == m["pred"].shape == m["valid"].shape == eigen.crop_size == (85, 112)
    assert np.isnan(m["abs_rel"][~m["valid"]]).all() and np.isfinite(m["abs_rel"][m["valid"]]).all()
    v = m["valid"]
    expected = np.abs(m["pred"][v].astype(np.float64) - m["target"][v]) / m["target"][v]
    np.testing.assert_allclose(m["abs_rel"][v], expected, rtol=1e-5, atol=1e-6)  # pred is stored as float32
    res = evaluate(FakeModel(), ds, protocol=eigen, device="cpu", progress=False)
    assert np.nanmean(m["abs_rel"].astype(np.float64)) == pytest.approx(res.per_image[1]["abs_rel"], rel=1e-5)


@pytest.mark.slow
def test_real_sample_frames_under_both_protocols(sample_dir) -> None:
    """The embedded real NYU test frames (filled, 640x480) through the lead's reader and DepthDataset."""
    if not sample_dir.is_dir():
        pytest.skip(f"embedded sample not found at {sample_dir}")
    from depthlib.data import open_source
    from depthlib.data.dataset import DepthDataset

    ds = DepthDataset(open_source("densedepth", str(sample_dir)), indices=[0, 1])
    dd = evaluate(FakeModel(), ds, protocol="densedepth", device="cpu", progress=False)
    assert dd.n_pixels == 2 * 440 * 592 and dd.source == "data/sample" and dd.reduce == "pooled"
    eg = evaluate(FakeModel(), ds, protocol="eigen", device="cpu", progress=False)
    assert eg.n_pixels == 2 * 426 * 560 and eg.reduce == "per_image"   # filled GT: the whole crop is valid
    assert [r["name"] for r in eg.per_image] == [ds.source.names[0], ds.source.names[1]]
