"""depthlib: the library behind depth-workbook's notebooks (DenseDepth / U-Net on NYU Depth V2).

Its sub-packages are the stages data flows through, each importing only from those listed before it:
core (errors, settings, paths, files) -> data (readers, transforms, the prepared format) -> models (networks,
checkpoints, the inference path) and figures -> evaluation -> training -> inference (loading a checkpoint for
whole images, ONNX export) -> notebook (what the numbered notebooks call, the pipeline that runs them); cli.py is
the `depthlib` command. Modules that lived at the top before keep their old names for a while (see _moved.py).
"""

from . import _moved

__version__ = "0.1.0"

_moved.install()

__all__ = ["__version__"]
