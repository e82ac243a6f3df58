"""Per-epoch learning curves of a run, wherever they were recorded.

Why several sources: the torch trainers log their epochs as tracked series (``train_loss`` at step 3), the
scikit-learn trainer writes them only to its ``history`` artifact (CSV), and a pipeline run's own record has no
series at all — its training tasks do. So a run's curves are its own series, else its task runs' series, else
the ``history`` CSV/JSON artifacts its tasks wrote.

Wall time: the torch trainer records each epoch's training ``seconds``; their running sum is the x-axis. Where
no per-epoch time exists the task's runtime is spread evenly over its epochs and the curve says so
(``time_estimated``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.tracking.base import RunRecord

CURVE_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
HISTORY_ARTIFACT = "history"
MAX_HISTORY_BYTES = 5_000_000


@dataclass
class Curve:
    """One metric of one run (or one of its tasks) over epochs."""

    run_id: str
    source: str  # the task key the points came from ("" for the run itself)
    metric: str
    epochs: list[int]
    values: list[float | None]
    seconds: list[float] = field(default_factory=list)
    time_estimated: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form (NaN as null)."""
        return {
            "run_id": self.run_id,
            "source": self.source,
            "metric": self.metric,
            "epochs": self.epochs,
            "values": [None if v is None or math.isnan(v) else v for v in self.values],
            "seconds": self.seconds,
            "time_estimated": self.time_estimated,
        }


def _cumulative(values: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value if math.isfinite(value) else 0.0
        out.append(round(total, 3))
    return out


def _spread(epochs: Sequence[int], runtime_s: float | None) -> list[float]:
    if not epochs or not runtime_s:
        return [float(e) for e in epochs]
    step = runtime_s / len(epochs)
    return [round(step * (i + 1), 3) for i in range(len(epochs))]


def series_curves(record: RunRecord, source: str = "", runtime_s: float | None = None) -> list[Curve]:
    """Curves from a tracked run's series (``seconds``, when logged, gives the wall-time axis)."""
    timing = dict(record.series.get("seconds", []))
    curves = []
    for metric in CURVE_METRICS:
        points = record.series.get(metric)
        if not points:
            continue
        epochs = [s for s, _ in points]
        if timing and all(e in timing for e in epochs):
            seconds, estimated = _cumulative(timing[e] for e in epochs), False
        else:
            seconds, estimated = _spread(epochs, runtime_s), True
        curves.append(Curve(record.run_id, source, metric, epochs, [v for _, v in points], seconds, estimated))
    return curves


def _rows(path: Path) -> list[Mapping[str, Any]]:
    """Rows of a history artifact: CSV with a header, or a JSON list of objects."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".json"))
        if not found:
            return []
        path = found[0]
    if path.stat().st_size > MAX_HISTORY_BYTES:
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):
        data = json.loads(text)
        return [row for row in data if isinstance(row, Mapping)]
    return list(csv.DictReader(io.StringIO(text)))


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def history_curves(run_id: str, source: str, path: Path, runtime_s: float | None = None) -> list[Curve]:
    """Curves from a trainer's history file (columns ``epoch`` and any of :data:`CURVE_METRICS`)."""
    try:
        rows = _rows(path)
    except (OSError, ValueError):
        return []
    rows = [r for r in rows if _number(r.get("epoch")) is not None]
    if not rows:
        return []
    epochs = [int(_number(r["epoch"]) or 0) for r in rows]
    timing = [_number(r.get("seconds")) for r in rows]
    if all(t is not None for t in timing):
        seconds, estimated = _cumulative(t or 0.0 for t in timing), False
    else:
        seconds, estimated = _spread(epochs, runtime_s), True
    curves = []
    for metric in CURVE_METRICS:
        if metric in rows[0]:
            values = [_number(r.get(metric)) for r in rows]
            curves.append(Curve(run_id, source, metric, epochs, values, seconds, estimated))
    return curves
