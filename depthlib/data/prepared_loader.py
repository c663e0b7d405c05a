"""Fast training path over a prepared file: one chunk read + one JPEG decode per sample.

Frames come out as stored; flip and channel swap are depthlib.data.transforms' (DataConfig's rates), after the
border crop: a flip here, before NYU's uneven crop (7 columns left, 8 right), would show the model another window.

Memory does not grow with the dataset: a sample reads its own chunks; the only per-frame state is the row
index array (8 bytes a frame); the HDF5 handle opens lazily in each loader worker.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import DataError
from .prepared import PreparedDataset


class PreparedTorchDataset(Dataset):
    """Samples {"image": float[3,H,W] in [0,1], "depth": float[1,H,W] m (0 = hole), "valid": bool[1,H,W], "name",
    "fx": focal length in pixels of the frame's width, NaN when unknown}."""

    def __init__(self, prepared: PreparedDataset | str, *, split: str | None = None,
                 indices: Sequence[int] | None = None) -> None:
        self.src = prepared if isinstance(prepared, PreparedDataset) else PreparedDataset(prepared, split=split)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._ds: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.src) if self.indices is None else len(self.indices)

    def identity(self, positions: Sequence[int] | None = None) -> dict[str, Any]:
        """What these samples are (or those at `positions`), for a resumed run to check it trains on the same frames:
        {"file", "split", "frames", "content": PreparedDataset.content_hash of their rows, in order}."""
        rows = self.src.rows if self.indices is None else self.src.rows[self.indices]
        if positions is not None:
            rows = rows[np.asarray(positions, dtype=np.int64)]
        return {"file": self.src.path, "split": self.src.split or "all", "frames": int(len(rows)),
                "content": self.src.content_hash(rows)}

    def _datasets(self) -> dict[str, Any]:
        # Per process: dataset handles (a lookup by name costs ~0.2 ms) and the small per-frame tables
        # (JPEG offsets, 8 B/frame; names, ~40 B/frame: ~2.4 MB at full NYU), each otherwise one more read.
        f = self.src.file()
        if self._ds.get("file") is not f:
            self._ds = {"file": f, "depth": f["depth"], "name": f["name"][()]}
            if self.src.codec == "jpeg":
                # torchvision imported here, once a process, not with the module: it loads torch._dynamo (1.4 s of
                # every process that imports depthlib, most of which never decode a prepared file's JPEGs this way)
                from torchvision.io import decode_jpeg

                self._ds.update(rgb=f["rgb_jpeg"], offset=f["rgb_offset"][()], decode=decode_jpeg)
            else:
                self._ds.update(rgb=f["rgb"])
        return self._ds

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ds": {}}

    def _rgb(self, ds: dict[str, Any], r: int) -> np.ndarray:
        """uint8 [3, H, W]."""
        if self.src.codec == "jpeg":
            data = torch.from_numpy(ds["rgb"][ds["offset"][r]:ds["offset"][r + 1]])
            try:
                return ds["decode"](data).numpy()
            except RuntimeError as e:
                raise DataError(f"{self.src.path}[rgb_jpeg {r}]", f"JPEG cannot be decoded ({e}).",
                                "the file is damaged; re-run 01_data_prep.") from None
        return ds["rgb"][r].transpose(2, 0, 1)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(i if self.indices is None else self.indices[i])
        ds, r = self._datasets(), int(self.src.rows[j])
        rgb, code = self._rgb(ds, r), ds["depth"][r]
        image = np.multiply(rgb, np.float32(1 / 255), dtype=np.float32, order="C")
        depth = np.multiply(code, np.float32(self.src.depth_unit_m), dtype=np.float32, order="C")
        # Writer invariant (tested): code 0 <=> invalid, so `valid` needs no second read and holes are already 0.
        valid = np.not_equal(code, 0, order="C")
        return {"image": torch.from_numpy(image), "depth": torch.from_numpy(depth)[None],
                "valid": torch.from_numpy(valid)[None], "name": ds["name"][r].decode("utf-8"),
                "fx": float(self.src.fx[r])}
