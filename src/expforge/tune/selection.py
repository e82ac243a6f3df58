"""Successive-halving selection: rank a rung's trial records and keep the best.

Ranking is deterministic: by the metric (best first), ties broken by ``trial_id`` so two runs with the same
results promote the same trials whatever order the trials finished in. A missing or non-finite metric ranks
last (a diverged trial is never promoted over one that trained). Records are
:class:`~expforge.tune.records.TrialRecord` values, the one shape the pipeline's ``hyperband-trial`` step and the
in-process driver both write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tune.records import TrialRecord


def _score(record: TrialRecord, metric: str, maximize: bool) -> float:
    value = record.metric(metric)
    if value is None:
        return math.inf
    return -value if maximize else value


def rank_trials(
    trials: Sequence[TrialRecord], metric: str = "val_accuracy", *, maximize: bool = True
) -> list[TrialRecord]:
    """All trials, best first (ties by ``trial_id``); each must have a distinct ``trial_id``."""
    seen: set[str] = set()
    for index, record in enumerate(trials):
        if not isinstance(record, TrialRecord):
            raise ExpforgeError(f"trials[{index}]: expected a trial record, got {type(record).__name__}")
        if record.trial_id in seen:
            raise ExpforgeError(f"trials[{index}]: duplicate trial_id {record.trial_id!r}")
        seen.add(record.trial_id)
    return sorted(trials, key=lambda r: (_score(r, metric, maximize), r.trial_id))


def select_top(
    trials: Sequence[TrialRecord], keep: int, metric: str = "val_accuracy", *, maximize: bool = True
) -> list[TrialRecord]:
    """The best ``keep`` trials (all of them when there are fewer), best first."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ExpforgeError(f"keep: {keep!r} is not a non-negative integer")
    return rank_trials(trials, metric, maximize=maximize)[:keep]


def best_trial(trials: Sequence[TrialRecord], metric: str = "val_accuracy", *, maximize: bool = True) -> TrialRecord:
    """The single best trial."""
    if not trials:
        raise ExpforgeError("trials: no trial records to choose from")
    return rank_trials(trials, metric, maximize=maximize)[0]


def leaderboard(
    trials: Sequence[TrialRecord], metric: str = "val_accuracy", *, maximize: bool = True
) -> list[dict[str, Any]]:
    """Ranked summary rows (no per-epoch history): rank, trial, search, bracket/rung, epochs, metrics, config."""
    rows = []
    for rank, record in enumerate(rank_trials(trials, metric, maximize=maximize), start=1):
        row: dict[str, Any] = {
            "rank": rank,
            "trial_id": record.trial_id,
            "search": record.item.search,
            "bracket": record.item.bracket,
            "rung": record.item.rung,
            "epochs": record.item.epochs,
        }
        for name in dict.fromkeys(("val_accuracy", "val_loss", metric)):
            if name in record.metrics or name == metric:
                row[name] = record.metric(name)
        row["config"] = dict(record.item.config)
        rows.append(row)
    return rows
