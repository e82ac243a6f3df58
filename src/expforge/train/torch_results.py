"""What a digit-CNN training run returns and records: per-epoch metrics, the result, the history CSV.

The epoch record extends the scikit-learn trainer's, so tracking, plots and the history CSV read both trainers'
histories the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.train.history_csv import write_history_csv as write_epoch_csv
from expforge.train.sklearn_trainer import EpochMetrics


@dataclass
class TorchEpochMetrics(EpochMetrics):
    """An epoch of the scikit-learn trainer's record, plus the training pass's wall time, throughput and last LR."""

    seconds: float
    images_per_second: float
    lr: float


@dataclass
class TorchTrainResult:
    """Where the checkpoint was saved, the full epoch history (resumed epochs included), the last epoch's
    metrics, the run's parameters and the hardware it ran on."""

    model_path: Path
    history: list[TorchEpochMetrics]
    final: dict[str, float]
    params: dict[str, Any]
    device: dict[str, Any]


def write_history_csv(history: Sequence[EpochMetrics], path: Path | str) -> Path:
    """One row per epoch (columns: the dataclass fields), written atomically; an empty history gets the CNN
    record's header."""
    return write_epoch_csv(history, path, record=TorchEpochMetrics)
