"""Questions asked of any tracker: filtered lists, side-by-side comparison, leaderboards — and their tables.

Why here and not in each backend: the backends only have to return :class:`RunRecord` lists, so ``local`` and
``gcp`` answer the same question the same way (the ``gcp`` backend reads BigQuery).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import RunFilter, RunRecord, Tracker


def list_runs(tracker: Tracker, run_filter: RunFilter | None = None) -> list[RunRecord]:
    """Runs matching ``run_filter``, newest first."""
    return tracker.list_runs(run_filter)


def metric_keys(record: RunRecord) -> list[str]:
    """Every metric the run has, final or series."""
    return sorted(set(record.metrics) | set(record.series))


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: one row per parameter and metric key (the union over the runs)."""

    run_ids: list[str]
    params: dict[str, list[Any]]
    metrics: dict[str, list[float | None]]

    def rows(self) -> list[list[str]]:
        """``[key, value per run...]``; a missing key shows as ``-``."""
        table = [[f"param {k}", *(_cell(v) for v in values)] for k, values in self.params.items()]
        table += [[f"metric {k}", *(_cell(v) for v in values)] for k, values in self.metrics.items()]
        return table

    def to_json(self) -> dict[str, Any]:
        """JSON form (NaN as null)."""
        return {
            "run_ids": self.run_ids,
            "params": self.params,
            "metrics": {k: [None if v is None or math.isnan(v) else v for v in vs] for k, vs in self.metrics.items()},
        }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def compare(records: Sequence[RunRecord]) -> Comparison:
    """The union of parameter and metric keys of ``records``, each with its value per run."""
    if len(records) < 2:
        raise ExpforgeError("compare: give at least two run ids")
    param_keys = sorted(set().union(*(r.params for r in records)))
    metric_names = sorted(set().union(*(metric_keys(r) for r in records)))
    return Comparison(
        run_ids=[r.run_id for r in records],
        params={k: [r.params.get(k) for r in records] for k in param_keys},
        metrics={k: [r.metric(k) for r in records] for k in metric_names},
    )


@dataclass(frozen=True)
class Entry:
    """One leaderboard line."""

    rank: int
    value: float
    run: RunRecord


def leaderboard(
    records: Sequence[RunRecord], metric: str, *, top: int | None = 10, ascending: bool = False
) -> list[Entry]:
    """Runs ranked by ``metric`` (final value, else last series point); runs without it (or NaN) are left out.

    Ties keep the earlier-started run first.
    """
    if top is not None and top < 1:
        raise ExpforgeError(f"--top: {top} is below 1")
    scored = []
    for record in records:
        value = record.metric(metric)
        if value is not None and not math.isnan(value):
            scored.append((value, record))
    scored.sort(key=lambda item: (item[0] if ascending else -item[0], item[1].started_at, item[1].run_id))
    chosen = scored if top is None else scored[:top]
    return [Entry(rank, value, record) for rank, (value, record) in enumerate(chosen, 1)]


def summary(record: RunRecord, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """The columns ``runs list`` shows for a run."""
    data: dict[str, Any] = {
        "run_id": record.run_id,
        "state": record.state,
        "started_at": record.started_at,
        "experiment": record.experiment,
        "datasets": ",".join(record.datasets),
    }
    for key in metrics:
        data[key] = record.metric(key)
    data["note"] = record.note
    return data


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (cells via ``str``, floats with 6 significant digits)."""
    cells = [[_cell(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
