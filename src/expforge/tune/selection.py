"""Successive-halving selection: rank a rung's trials and keep the best.

A *trial record* is what one trial run reports (the pipeline's ``hyperband-trial`` step and the in-process
driver write the same shape)::

    {"trial_id": "b2-c05", "bracket": 2, "rung": 0, "config": {...}, "epochs": 1,
     "val_accuracy": 0.91, "val_loss": 0.30, "history": [{...per epoch...}]}

Ranking is deterministic: by the metric (best first), ties broken by ``trial_id`` so two runs with the same
results promote the same trials whatever order the trials finished in. A missing or non-finite metric ranks
last (a diverged trial is never promoted over one that trained).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from expforge.errors import ExpforgeError


def _score(record: Mapping[str, Any], metric: str, maximize: bool) -> float:
    value = record.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.inf
    return -float(value) if maximize else float(value)


def rank_trials(
    trials: Sequence[Mapping[str, Any]], metric: str = "val_accuracy", *, maximize: bool = True
) -> list[dict[str, Any]]:
    """All trials, best first (ties by ``trial_id``); each must have a distinct ``trial_id``."""
    seen: set[str] = set()
    for index, record in enumerate(trials):
        trial_id = record.get("trial_id") if isinstance(record, Mapping) else None
        if not isinstance(trial_id, str) or not trial_id:
            raise ExpforgeError(f"trials[{index}]: a trial record needs a non-empty string trial_id")
        if trial_id in seen:
            raise ExpforgeError(f"trials[{index}]: duplicate trial_id {trial_id!r}")
        seen.add(trial_id)
    return [dict(record) for record in sorted(trials, key=lambda r: (_score(r, metric, maximize), r["trial_id"]))]


def select_top(
    trials: Sequence[Mapping[str, Any]], keep: int, metric: str = "val_accuracy", *, maximize: bool = True
) -> list[dict[str, Any]]:
    """The best ``keep`` trials (all of them when there are fewer), best first."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ExpforgeError(f"keep: {keep!r} is not a non-negative integer")
    return rank_trials(trials, metric, maximize=maximize)[:keep]


def best_trial(
    trials: Sequence[Mapping[str, Any]], metric: str = "val_accuracy", *, maximize: bool = True
) -> dict[str, Any]:
    """The single best trial."""
    if not trials:
        raise ExpforgeError("trials: no trial records to choose from")
    return rank_trials(trials, metric, maximize=maximize)[0]


def leaderboard(
    trials: Sequence[Mapping[str, Any]], metric: str = "val_accuracy", *, maximize: bool = True
) -> list[dict[str, Any]]:
    """Ranked summary rows (no per-epoch history): rank, trial, bracket/rung, epochs, metric, config."""
    rows = []
    for rank, record in enumerate(rank_trials(trials, metric, maximize=maximize), start=1):
        row = {"rank": rank, "trial_id": record["trial_id"]}
        for key in ("bracket", "rung", "epochs", "val_accuracy", "val_loss", "config"):
            if key in record:
                row[key] = record[key]
        if metric not in row:
            row[metric] = record.get(metric)
        rows.append(row)
    return rows


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists: records travel as JSON/protobuf
    ``Struct`` values, where ``NaN``/``Infinity`` are not allowed."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
