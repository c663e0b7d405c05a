"""depthlib: the library behind depth-workbook's notebooks (DenseDepth / U-Net on NYU Depth V2)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
