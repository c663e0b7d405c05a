"""Frames from files to tensors, the first stage above core: one reader module per source format (densedepth,
bts, h5, labeled_mat, nyu_test_npy, pairs, raw_kinect, ...), registered by name in registry.py and each yielding
Frames (frame.py); the prepared HDF5 format, its reader (prepared.py), writer (prepared_write.py) and fast
loader (prepared_loader.py); paired transforms (transforms.py), datasets (dataset.py), frame selection and hole
filling. The registry, the Frame types and write_prepared are re-exported here.
"""

from .frame import Frame, FrameSource, frame_to_sample
from .prepared_write import write_prepared
from .registry import list_sources, open_source, register_source

# Importing a reader module registers it.
from . import densedepth  # noqa: F401,E402
from . import bts, h5, labeled_mat, nyu_test_npy, pairs, prepared, raw_kinect  # noqa: F401,E402

__all__ = ["Frame", "FrameSource", "frame_to_sample", "list_sources", "open_source", "register_source", "write_prepared"]
