"""Run Hyperband or random search in one process, around any training function.

The pipeline (``expforge.pipelines.hpo``) runs every trial as its own task; this driver runs the very same
schedule, sampling and selection in a loop, for the benchmark and for quick experiments on one machine. Both
share :mod:`~expforge.tune.space`, :mod:`~expforge.tune.hyperband` and :mod:`~expforge.tune.selection`, so the
same seed tries the same configurations and promotes the same trials in either.

``train_fn(config, epochs, resume_from, checkpoint_out)`` trains ``config`` *up to* ``epochs`` in total —
continuing from the checkpoint ``resume_from`` when given (a promoted trial), else from scratch — writes its
checkpoint to ``checkpoint_out`` and returns at least ``{"val_accuracy": float, "val_loss": float,
"history": [...]}``.

Every trial is recorded, with the running epoch count, so a benchmark can read off "epochs needed to reach
validation accuracy X" (:meth:`TuneResult.epochs_to_reach`) for Hyperband and random search alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tune.hyperband import HyperbandSchedule
from expforge.tune.random_search import random_search_trials
from expforge.tune.selection import best_trial, select_top
from expforge.tune.space import SearchSpace, bracket_prefix, bracket_salt, sample_trials

TrainFn = Callable[[dict[str, Any], int, Path | None, Path], Mapping[str, Any]]


@dataclass
class TuneResult:
    """Every trial in the order it ran, the best-so-far timeline and the chosen trial.

    ``best`` is the best trial among those trained to the full ``R`` epochs (a bracket's final rung; every
    random-search trial): only those finished the LR schedule the trainer runs over ``R`` epochs.
    ``timeline`` is ``[(cumulative_epochs, best_val_accuracy_so_far), ...]`` over *all* trials, one point per
    trial.
    """

    method: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[tuple[int, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    total_epochs: int = 0
    metric: str = "val_accuracy"

    def epochs_to_reach(self, accuracy: float, *, final_only: bool = False) -> int | None:
        """Epochs trained until some trial first reached ``accuracy`` (``None`` if none did).

        ``final_only`` counts only trials that trained the full ``R`` epochs.
        """
        for record in self.trials:
            if final_only and not record["final"]:
                continue
            value = record.get(self.metric)
            if isinstance(value, int | float) and math.isfinite(value) and value >= accuracy:
                return int(record["cumulative_epochs"])
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (benchmark reports)."""
        return {
            "method": self.method,
            "metric": self.metric,
            "total_epochs": self.total_epochs,
            "best": self.best,
            "timeline": [list(point) for point in self.timeline],
            "trials": self.trials,
        }


def _run_trial(
    train_fn: TrainFn,
    item: Mapping[str, Any],
    *,
    epochs: int,
    resume_from: Path | None,
    checkpoint_out: Path,
    metric: str,
) -> Mapping[str, Any]:
    checkpoint_out.parent.mkdir(parents=True, exist_ok=True)
    outcome = train_fn(dict(item["config"]), epochs, resume_from, checkpoint_out)
    value = outcome.get(metric) if isinstance(outcome, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpforgeError(f"trial {item['trial_id']}: the training function returned no numeric {metric!r}")
    return outcome


class _Recorder:
    """Appends trial records and keeps the cumulative epochs / best-so-far timeline."""

    def __init__(self, result: TuneResult) -> None:
        self.result = result
        self.best_so_far = -math.inf

    def add(self, record: dict[str, Any], outcome: Mapping[str, Any], epochs_trained: int) -> dict[str, Any]:
        metric = self.result.metric
        self.result.total_epochs += epochs_trained
        record.update(
            {
                metric: float(outcome[metric]),
                "val_loss": float(outcome["val_loss"]) if "val_loss" in outcome else None,
                "history": list(outcome.get("history", [])),
                "epochs_trained": epochs_trained,
                "cumulative_epochs": self.result.total_epochs,
            }
        )
        if math.isfinite(record[metric]):
            self.best_so_far = max(self.best_so_far, record[metric])
        self.result.trials.append(record)
        self.result.timeline.append((self.result.total_epochs, self.best_so_far))
        return record


def run_hyperband(
    schedule: HyperbandSchedule,
    space: SearchSpace,
    seed: int,
    train_fn: TrainFn,
    *,
    workdir: Path | str,
    warm_start: bool = True,
    metric: str = "val_accuracy",
) -> TuneResult:
    """Run every bracket, most aggressive first, rung by rung; promoted trials resume from their checkpoint.

    Checkpoints go to ``workdir/bracket-<s>/rung-<i>/<trial_id>.pt``. ``warm_start=False`` retrains promoted
    trials from scratch (what Katib's Hyperband does), for comparing the epoch cost.
    """
    workdir = Path(workdir)
    result = TuneResult(method="hyperband", metric=metric)
    recorder = _Recorder(result)
    finals: list[dict[str, Any]] = []
    for bracket in schedule.brackets:
        items = sample_trials(space, bracket.configs, seed, bracket_salt(bracket.s), bracket_prefix(bracket.s))
        checkpoints: dict[str, Path] = {}
        for rung in bracket.rungs:
            records = []
            rung_checkpoints: dict[str, Path] = {}
            final = rung.index == len(bracket.rungs) - 1
            for item in items:
                resume_from = checkpoints.get(item["trial_id"]) if warm_start else None
                out = workdir / f"bracket-{bracket.s}" / f"rung-{rung.index}" / f"{item['trial_id']}.pt"
                outcome = _run_trial(
                    train_fn, item, epochs=rung.epochs, resume_from=resume_from, checkpoint_out=out, metric=metric
                )
                trained = rung.epochs - rung.previous_epochs if resume_from is not None else rung.epochs
                record = {
                    "trial_id": item["trial_id"],
                    "bracket": bracket.s,
                    "rung": rung.index,
                    "config": dict(item["config"]),
                    "epochs": rung.epochs,
                    "final": final,
                    "resumed_from": str(resume_from) if resume_from is not None else None,
                    "checkpoint": str(out),
                }
                records.append(recorder.add(record, outcome, trained))
                rung_checkpoints[item["trial_id"]] = out
            if final:
                finals.extend(records)
                break
            kept = select_top(records, rung.keep, metric)
            items = [{"trial_id": r["trial_id"], "config": r["config"]} for r in kept]
            checkpoints = {r["trial_id"]: rung_checkpoints[r["trial_id"]] for r in kept}
    result.best = best_trial(finals, metric)
    return result


def run_random_search(
    space: SearchSpace,
    budget_epochs: int,
    epochs_per_trial: int,
    seed: int,
    train_fn: TrainFn,
    *,
    workdir: Path | str,
    metric: str = "val_accuracy",
) -> TuneResult:
    """Train ``budget_epochs // epochs_per_trial`` random configurations for ``epochs_per_trial`` epochs each."""
    workdir = Path(workdir)
    result = TuneResult(method="random-search", metric=metric)
    recorder = _Recorder(result)
    for item in random_search_trials(space, budget_epochs, epochs_per_trial, seed):
        out = workdir / "random-search" / f"{item['trial_id']}.pt"
        outcome = _run_trial(
            train_fn, item, epochs=epochs_per_trial, resume_from=None, checkpoint_out=out, metric=metric
        )
        record = {
            "trial_id": item["trial_id"],
            "bracket": None,
            "rung": 0,
            "config": dict(item["config"]),
            "epochs": epochs_per_trial,
            "final": True,
            "resumed_from": None,
            "checkpoint": str(out),
        }
        recorder.add(record, outcome, epochs_per_trial)
    result.best = best_trial(result.trials, metric)
    return result
