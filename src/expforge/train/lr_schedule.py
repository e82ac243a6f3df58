"""The learning rate as a pure function of progress through the schedule horizon.

Because the LR at a step depends only on ``(epoch + batch/batches) / horizon`` and the config, never on how far
one call of the trainer will go, a run resumed from a checkpoint follows the same curve as one that never
stopped: the property Hyperband's rungs rely on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from expforge.train.torch_config import TorchTrainConfig

ONECYCLE_WARMUP = 0.1  # fraction of the horizon spent warming up from lr/25 to lr


def learning_rate(config: TorchTrainConfig, progress: float) -> float:
    """LR at ``progress`` ∈ [0, 1] of the schedule horizon: a pure function, which is what makes resume exact."""
    base = config.lr
    if config.lr_schedule == "constant":
        return base
    p = min(max(progress, 0.0), 1.0)
    if config.lr_schedule == "onecycle":
        if p < ONECYCLE_WARMUP:
            return base * (0.04 + 0.96 * p / ONECYCLE_WARMUP)
        p = (p - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP)
    return base * 0.5 * (1.0 + math.cos(math.pi * p))
