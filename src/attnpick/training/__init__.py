"""Fine-tuning: `train()` (run.py) over `TrainConfig` (config.py), with its data (data.py), the packing check
(packing.py), rank agreement (distributed.py), the Trainer (trainer.py) and the run's files (outputs.py)."""

from __future__ import annotations

from attnpick.training.config import TrainConfig
from attnpick.training.run import TrainReport, train

__all__ = ["TrainConfig", "TrainReport", "train"]
