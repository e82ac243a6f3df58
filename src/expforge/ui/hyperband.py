"""The Hyperband view of a run: every trial the ``hyperband-trial`` tasks reported, shaped for three plots.

Where the trials come from: each trial task's ``record`` output parameter in ``run.json`` (one per rung it
reached), read as the typed :class:`~expforge.tune.records.TrialRecord` when it carries a ``version``, else as the
older flat dict (``trial_id``, ``bracket``, ``rung``, ``config``, ``val_accuracy``, ``history``).

* parallel coordinates: one line per trial (its furthest rung), one axis per hyperparameter, then the metric;
* the rung chart: validation accuracy against epochs per trial, a promoted trial's line continuing across rungs
  (its resumed epochs carry on the numbering), brackets told apart by colour;
* the leaderboard: trials by their furthest rung's metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METRIC = "val_accuracy"


@dataclass
class Trial:
    """One rung of one trial as the dashboard needs it."""

    trial_id: str
    search: str
    bracket: int | None
    rung: int
    epochs: int
    config: dict[str, Any]
    value: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    task: str = ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_record(data: Mapping[str, Any], task: str = "") -> Trial | None:
    """A trial from a record in either form; ``None`` when ``data`` is not a trial record."""
    if "version" in data and "item" in data:
        try:
            from expforge.tune.records import TrialRecord
        except ImportError:  # an older expforge without typed records
            return None
        try:
            record = TrialRecord.from_json(data, source=f"task {task}")
        except Exception:  # noqa: BLE001 - a malformed record is left out of the view, not a page error
            return None
        item = record.item
        return Trial(
            item.trial_id,
            item.search,
            item.bracket,
            item.rung,
            item.epochs,
            dict(item.config),
            record.metric(METRIC),
            [dict(row) for row in record.history],
            task,
        )
    if not isinstance(data.get("trial_id"), str) or not isinstance(data.get("config"), Mapping):
        return None
    bracket = data.get("bracket")
    search = "random-search" if bracket is None or bracket == -1 else "hyperband"
    return Trial(
        data["trial_id"],
        search,
        None if bracket is None or bracket == -1 else int(bracket),
        int(data.get("rung") or 0),
        int(data.get("epochs") or 0),
        dict(data["config"]),
        _number(data.get(METRIC)),
        [dict(row) for row in data.get("history") or [] if isinstance(row, Mapping)],
        task,
    )


def trials_of(document: Mapping[str, Any]) -> list[Trial]:
    """Every trial rung reported in ``run.json`` (tasks whose ``record`` output is a trial record)."""
    found = []
    for key, task in sorted((document.get("tasks") or {}).items()):
        record = (task.get("parameters") or {}).get("record")
        if isinstance(record, Mapping):
            trial = parse_record(record, key)
            if trial is not None:
                found.append(trial)
    return found


def furthest(trials: list[Trial]) -> dict[str, Trial]:
    """Each trial id's furthest rung (the rung that decides its place)."""
    best: dict[str, Trial] = {}
    for trial in trials:
        if trial.trial_id not in best or trial.rung > best[trial.trial_id].rung:
            best[trial.trial_id] = trial
    return best


def _label(trial: Trial) -> str:
    return "random search" if trial.bracket is None else f"bracket {trial.bracket}"


def parallel_coordinates(trials: list[Trial]) -> dict[str, Any]:
    """Plotly ``parcoords`` dimensions: numeric hyperparameters as they are, others as categories, then the metric."""
    final = sorted(furthest(trials).values(), key=lambda t: t.trial_id)
    keys = sorted({k for t in final for k in t.config})
    dimensions = []
    for key in keys:
        values = [t.config.get(key) for t in final]
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            dimensions.append({"label": key, "values": numbers})
            continue
        categories = sorted({str(v) for v in values})
        dimensions.append(
            {
                "label": key,
                "values": [categories.index(str(v)) for v in values],
                "tickvals": list(range(len(categories))),
                "ticktext": categories,
            }
        )
    dimensions.append({"label": METRIC, "values": [t.value if t.value is not None else 0.0 for t in final]})
    return {"trial_ids": [t.trial_id for t in final], "dimensions": dimensions, "color": dimensions[-1]["values"]}


def rung_chart(trials: list[Trial]) -> list[dict[str, Any]]:
    """One line per trial id: (epoch, val_accuracy) over all its rungs; ``promoted`` when it reached a later rung."""
    lines = []
    for trial_id in sorted({t.trial_id for t in trials}):
        rungs = sorted((t for t in trials if t.trial_id == trial_id), key=lambda t: t.rung)
        points: dict[int, float | None] = {}
        for rung in rungs:
            for row in rung.history:
                epoch = _number(row.get("epoch"))
                if epoch is not None:
                    points[int(epoch)] = _number(row.get(METRIC))
            if not rung.history and rung.value is not None:
                points[rung.epochs] = rung.value
        ordered = sorted(points)
        lines.append(
            {
                "trial_id": trial_id,
                "group": _label(rungs[0]),
                "bracket": rungs[0].bracket,
                "epochs": ordered,
                "values": [points[e] for e in ordered],
                "rung_ends": [t.epochs for t in rungs],
                "promoted": len(rungs) > 1,
            }
        )
    return lines


def leaderboard(trials: list[Trial]) -> list[dict[str, Any]]:
    """Trials by their furthest rung's metric, best first (no result last)."""
    final = list(furthest(trials).values())
    final.sort(key=lambda t: (t.value is None, -(t.value or 0.0), -t.epochs, t.trial_id))
    return [
        {
            "rank": rank,
            "trial_id": t.trial_id,
            "group": _label(t),
            "rung": t.rung,
            "epochs": t.epochs,
            METRIC: t.value,
            "config": t.config,
            "task": t.task,
        }
        for rank, t in enumerate(final, 1)
    ]


def view(document: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the Hyperband page and ``GET /api/runs/{id}/hyperband`` show."""
    trials = trials_of(document)
    return {
        "trials": len(furthest(trials)),
        "rungs_run": len(trials),
        "parallel_coordinates": parallel_coordinates(trials) if trials else None,
        "rung_chart": rung_chart(trials),
        "leaderboard": leaderboard(trials),
    }
