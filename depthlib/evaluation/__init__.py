"""Measuring a model against ground truth: the masked depth metrics (metrics.py), the named protocols that say how
a prediction is upsampled, cropped, masked and clamped (protocols.py), per-image alignment of relative depth
(align.py), the streaming evaluation of a model over a dataset (evaluate.py: evaluate -> EvalResult) and its
outputs, metrics JSON, comparison tables and error maps (report.py), and how a model's metric depth follows a longer
lens (lens.py). depth_metrics and the protocol registry are re-exported here; evaluate stays in evaluate.py (a name
the module itself holds here).
"""

from __future__ import annotations

from .metrics import depth_metrics
from .protocols import get_protocol, list_protocols

__all__ = ["depth_metrics", "get_protocol", "list_protocols"]
