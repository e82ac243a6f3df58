"""Questions asked of any tracker: filtered lists, side-by-side comparison, leaderboards — and their tables.

Why here and not in each backend: the backends only have to return :class:`RunRecord` lists, so ``local`` and
``gcp`` answer the same question the same way (the ``gcp`` backend reads BigQuery).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tracking.base import RunFilter, RunRecord, Tracker, parse_time


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


# -- the run search of the dashboard API and `runs list` -------------------------------------------------------

_NO_FILTER = RunFilter()
SORT_FIELDS = ("started_at", "ended_at", "duration", "state", "pipeline", "experiment", "run_id")


@dataclass(frozen=True)
class RunQuery:
    """A run search beyond :class:`RunFilter`: state, parameter equality, metric range, top-level only, sorting
    and paging. Why separate: the filter is what backends may push down; sorting and paging happen over the
    matching records, the same way for every backend.

    ``sort`` is one of :data:`SORT_FIELDS` or the name of a metric (final value, else last epoch); runs without
    that metric come last whatever the order. ``params`` compares a parameter's value as text, so ``epochs=3``
    matches ``3`` and ``"3"``.
    """

    run_filter: RunFilter = RunFilter()
    states: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    metric: str | None = None
    metric_min: float | None = None
    metric_max: float | None = None
    top_level: bool = False
    sort: str = "started_at"
    descending: bool = True
    offset: int = 0
    limit: int | None = 50

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ExpforgeError(f"offset: {self.offset} is negative")
        if self.limit is not None and self.limit < 1:
            raise ExpforgeError(f"limit: {self.limit} is below 1")
        if (self.metric_min is not None or self.metric_max is not None) and not self.metric:
            raise ExpforgeError("metric: metric_min/metric_max need the metric they bound (metric=NAME)")

    @property
    def selects_all(self) -> bool:
        """No criterion at all: every record matches (the search skips the per-record checks)."""
        return not (self.top_level or self.states or self.params or self._bounded or self.run_filter != RunFilter())

    @property
    def _bounded(self) -> bool:
        return bool(self.metric) and (self.metric_min is not None or self.metric_max is not None)

    def matches(self, record: RunRecord) -> bool:
        """Whether ``record`` passes the filter and every criterion of this query."""
        if self.top_level and record.parent_run_id:
            return False
        if self.states and record.state not in self.states:
            return False
        for key, wanted in self.params:
            if key not in record.params or param_text(record.params[key]) != wanted:
                return False
        if self.metric and (self.metric_min is not None or self.metric_max is not None):
            value = record.metric(self.metric)
            if value is None or math.isnan(value):
                return False
            if self.metric_min is not None and value < self.metric_min:
                return False
            if self.metric_max is not None and value > self.metric_max:
                return False
        return self.run_filter == _NO_FILTER or self.run_filter.matches(record)

    def sort_key(self, record: RunRecord) -> tuple[Any, ...]:
        """Sort key for :attr:`sort`; a missing value sorts last in both directions (see :func:`search`)."""
        if self.sort in SORT_FIELDS:
            value: Any = duration_s(record) if self.sort == "duration" else getattr(record, self.sort)
        else:
            value = record.metric(self.sort)
            if value is not None and math.isnan(value):
                value = None
        return (value is None, value if value is not None else 0)


@dataclass(frozen=True)
class SearchResult:
    """One page of a search: ``total`` matching runs, of which ``runs`` start at ``offset``."""

    total: int
    offset: int
    runs: list[RunRecord]


def search(records: Sequence[RunRecord], query: RunQuery) -> SearchResult:
    """Filter, sort and page ``records`` (given newest first, as every backend lists them; ties keep that order).

    The default question — everything, newest first — is answered without touching each record, which is
    what keeps ``GET /api/runs`` fast over ten thousand runs.
    """
    found = list(records) if query.selects_all else [r for r in records if query.matches(r)]
    if query.sort == "started_at" and query.descending:
        ordered = found
    else:
        keyed = [(query.sort_key(r), r) for r in found]
        present = [(key[1], r) for key, r in keyed if not key[0]]
        present.sort(key=lambda item: item[0], reverse=query.descending)
        ordered = [r for _, r in present] + [r for key, r in keyed if key[0]]
    end = None if query.limit is None else query.offset + query.limit
    return SearchResult(len(ordered), query.offset, ordered[query.offset : end])


def search_tracker(tracker: Tracker, query: RunQuery) -> SearchResult:
    """:func:`search` over the tracker's runs, answered by the backend itself when it can (the local SQLite
    backend filters, sorts and pages in SQL; the result is the same)."""
    in_backend = getattr(tracker, "search", None)
    if callable(in_backend):
        result: SearchResult = in_backend(query)
        return result
    return search(tracker.list_runs(), query)


def duration_s(record: RunRecord) -> float | None:
    """Seconds from start to end (``None`` while running or when a time is unreadable)."""
    if not record.ended_at:
        return None
    try:
        return (parse_time(record.ended_at) - parse_time(record.started_at)).total_seconds()
    except ExpforgeError:
        return None


def param_text(value: Any) -> str:
    """A parameter's value as text, as ``param=KEY=VALUE`` compares it (``true``, ``3`` for ``3.0``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- tables that fit a terminal -------------------------------------------------------------------------------

TABLE_WIDTH = 120
_GENERATED_ID = re.compile(r"^.+-\d{8}-\d{6}-(?P<suffix>[0-9a-f]{4,})(?P<task>/.*)?$")


def short_run_id(run_id: str) -> str:
    """``mnist-baseline-20261201-090101-b50ec0/evaluate`` → ``b50ec0/evaluate``: the random suffix the runner
    gives every pipeline run, plus the task; :func:`resolve_run_id` accepts it back."""
    match = _GENERATED_ID.match(run_id)
    if match:
        return match["suffix"] + (match["task"] or "")
    return run_id


def resolve_run_id(run_ids: Sequence[str], text: str) -> str:
    """``text`` if it is a run id, else the one run id it ends with (a short id as tables show it)."""
    if text in run_ids:
        return text
    found = [r for r in run_ids if r.endswith(text) and (r[: -len(text)].endswith(("-", "/")))]
    if len(found) == 1:
        return found[0]
    if found:
        raise ExpforgeError(f"run id {text!r} is ambiguous: {', '.join(sorted(found)[:5])}")
    return text  # unknown: the backend's lookup names it


def when(text: str | None) -> str:
    """``2026-12-01T09:01:01.671902Z`` → ``2026-12-01 09:01``."""
    if not text:
        return "-"
    try:
        return parse_time(text).strftime("%Y-%m-%d %H:%M")
    except ExpforgeError:
        return text


def _clip(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 1 else text[:width]


def fit_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, flexible: Sequence[str] = (), width: int = TABLE_WIDTH
) -> str:
    """:func:`format_table`, with the ``flexible`` columns (then the widest ones) cut with ``…`` until every
    line fits ``width`` characters."""
    cells = [[_cell(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def excess() -> int:
        return sum(widths) + 2 * (len(widths) - 1) - width

    # The flexible columns give way first, in the order given, each down to its header (at least 6 wide).
    by_width = sorted(range(len(widths)), key=lambda i: -widths[i])
    for i in [headers.index(f) for f in flexible if f in headers] + by_width:
        if excess() <= 0:
            break
        floor = min(widths[i], max(6, len(headers[i])))
        widths[i] = max(floor, min(widths[i], widths[i] - excess()))
    clipped = [[_clip(c, w) for c, w in zip(row, widths, strict=True)] for row in cells]
    lines = ["  ".join(_clip(h, w).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in clipped]
    return "\n".join(lines)


def key_metric_names(records: Sequence[RunRecord], wanted: Sequence[str] = (), limit: int = 3) -> list[str]:
    """The metric columns of a run table: those asked for, then well-known ones the runs have, then the most common."""
    counts: dict[str, int] = {}
    for record in records:
        for key in record.metrics:
            counts[key] = counts.get(key, 0) + 1
    chosen = list(dict.fromkeys(wanted))
    chosen += [k for k in KEY_METRICS if k in counts and k not in chosen]
    chosen += sorted((k for k in counts if k not in chosen), key=lambda k: (-counts[k], k))
    return chosen[: max(limit, len(wanted))]


KEY_METRICS = ("accuracy", "val_accuracy", "macro_f1", "best_val_accuracy", "val_loss", "bits_per_char")
