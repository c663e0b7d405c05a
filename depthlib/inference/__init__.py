"""Running a trained checkpoint on whole images: loading it with the crop and resize it was trained with, as the
fast inference copy (load.py: load_for_inference), and exporting what `depthlib predict` runs to ONNX with a
check against it (export.py). The tensor-level inference path itself is depthlib.models.predict.
load_for_inference and the crops it can replay are re-exported here (they were the module depthlib.inference).
"""

from __future__ import annotations

from .load import NYU_FRAME, REPLAYABLE_CROPS, canonical_fx, load_for_inference

__all__ = ["NYU_FRAME", "REPLAYABLE_CROPS", "canonical_fx", "load_for_inference"]
