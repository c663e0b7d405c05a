"""Shared fixtures: paths to the embedded sample and to the shared real NYU files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED_NYU = ROOT.parent / "shared" / "data" / "nyu_samples"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def shared_nyu() -> Path:
    if not SHARED_NYU.is_dir():
        pytest.skip(f"shared NYU samples not found at {SHARED_NYU} (present in CI and developer checkouts)")
    return SHARED_NYU
