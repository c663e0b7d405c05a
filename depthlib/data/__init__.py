"""Readers (one module per NYU form), paired transforms, datasets and the prepared format."""

from .frame import Frame, FrameSource, frame_to_sample
from .registry import list_sources, open_source, register_source

# Importing a reader module registers it.
from . import densedepth  # noqa: F401,E402
from . import bts, h5, labeled_mat, nyu_test_npy, pairs, prepared, raw_kinect  # noqa: F401,E402

__all__ = ["Frame", "FrameSource", "frame_to_sample", "list_sources", "open_source", "register_source"]
