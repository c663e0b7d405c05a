"""The small pieces every stage uses, importing nothing else of depthlib: errors that name the file and the fix
(errors.py), the settings dataclasses saved as plain dicts (config.py), project-root paths (paths.py), atomic
files and one-writer locks (atomic.py, lock.py), read-ahead threads (ahead.py), notices a step's caller must hear
(notices.py), seeding and deterministic kernels (reproducibility.py) and torchrun plumbing (distributed.py).
The settings and errors are re-exported here.
"""

from __future__ import annotations

from .config import DataConfig, EvalConfig, ModelConfig, TrainConfig
from .errors import CheckpointError, ConfigError, DataError, DepthlibError

__all__ = ["CheckpointError", "ConfigError", "DataConfig", "DataError", "DepthlibError", "EvalConfig", "ModelConfig",
           "TrainConfig"]
