"""The per-epoch history CSV both trainers' steps write: one row per epoch, the epoch record's fields as columns.

One writer for the scikit-learn and the CNN trainer, so their ``history`` outputs have the same shape (``\\n`` line
ends, the dataclass field order) and are never left half-written: the file is staged and renamed into place.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from expforge.atomic import staged_file
from expforge.train.sklearn_trainer import EpochMetrics


def write_history_csv(
    history: Sequence[EpochMetrics], path: Path | str, *, record: type[EpochMetrics] = EpochMetrics
) -> Path:
    """Write ``history`` to ``path`` atomically; an empty history still gets ``record``'s header."""
    path = Path(path)
    rows = [dataclasses.asdict(epoch) for epoch in history]
    fields = list(rows[0]) if rows else [f.name for f in dataclasses.fields(record)]
    with staged_file(path) as staging, open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
