"""Notebook 03's own cells, run in-process on a tiny prepared file and a tiny starting checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from depthlib.data import open_source
from depthlib.models import create_model
from depthlib.models.checkpoint import save_checkpoint
from depthlib.notebook import workbook

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_finetune.ipynb"


def test_finetune_notebook_loads_its_starting_weights_once(sample_dir, tmp_path, monkeypatch):
    # It built the model with load_model(init_from) and fit then loaded init_from into it again (and read the file a
    # third time for WiSE-FT's mix).
    raw = open_source("bts", sample_dir / "raw_depth")
    prepared = workbook.prepare(raw, str(tmp_path / "tiny.h5"), labels=["train", "val", "train"]).path
    torch.manual_seed(0)
    start = create_model("unet", width=4, depth=2)
    init = save_checkpoint(tmp_path / "start.pt", model=start)
    probe = next(k for k, v in start.state_dict().items() if v.is_floating_point())
    loads, reads = [], []
    real_load_state_dict, real_torch_load = torch.nn.Module.load_state_dict, torch.load

    def load_state_dict(self, sd, *args, **kwargs):
        if probe in sd and torch.equal(sd[probe].cpu(), start.state_dict()[probe]):
            loads.append(type(self).__name__)
        return real_load_state_dict(self, sd, *args, **kwargs)

    def torch_load(f, *args, **kwargs):
        if Path(str(f)) == init and not kwargs.get("mmap"):
            reads.append(f)
        return real_torch_load(f, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", load_state_dict)
    monkeypatch.setattr(torch, "load", torch_load)
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    overrides = dict(prepared_path=str(prepared), init_from=str(init), subset="all", image_size=[64, 64],
                     border_crop="none", epochs=1, batch_size=2, wise_alpha=0.5, device="cpu",
                     out_dir=str(tmp_path / "ft"), figure_dir=str(tmp_path / "fig"))
    scope: dict = {}
    exec(cells[0], scope)  # the parameters cell, then the values the pipeline would inject
    scope.update(overrides)
    for cell in cells[1:]:
        exec(cell, scope)
    assert scope["history"].epochs[-1]["epoch"] == 1
    assert len(loads) == 1, f"the starting weights were loaded into a model {len(loads)} times ({loads})"
    assert len(reads) == 1, f"{init.name} was read whole {len(reads)} times"
