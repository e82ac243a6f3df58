"""What a digit-CNN training run returns and records: per-epoch metrics, the result, the history CSV.

The epoch record extends the scikit-learn trainer's, so tracking, plots and the history CSV read both trainers'
histories the same way.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
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
    """One row per epoch (columns: the dataclass fields), written atomically."""
    path = Path(path)
    rows = [dataclasses.asdict(epoch) for epoch in history]
    fields = list(rows[0]) if rows else [f.name for f in dataclasses.fields(TorchEpochMetrics)]
    with staged_file(path) as staging, open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
