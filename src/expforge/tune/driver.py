"""Run Hyperband or random search in one process, around any training function.

The pipeline (``expforge.pipelines.hpo``) runs every trial as its own task; this driver runs the very same
schedule, sampling and selection in a loop, for the benchmark and for quick experiments on one machine. Both
share :mod:`~expforge.tune.space`, :mod:`~expforge.tune.hyperband`, the records of :mod:`~expforge.tune.records`
and the cut of :func:`~expforge.tune.promotion.promote`, so the same seed tries the same configurations and
promotes the same trials in either.

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
from expforge.tune.promotion import Checkpoint, Incumbent, promote
from expforge.tune.random_search import random_search_trials
from expforge.tune.records import TrialItem, TrialRecord
from expforge.tune.space import SearchSpace, bracket_prefix, bracket_salt, sample_trials

TrainFn = Callable[[dict[str, Any], int, Path | None, Path], Mapping[str, Any]]


@dataclass
class TuneResult:
    """Every trial in the order it ran, the best-so-far timeline and the chosen trial.

    ``best`` is the best trial among those trained to the full ``R`` epochs (a bracket's final rung; every
    random-search trial): only those finished the LR schedule the trainer runs over ``R`` epochs.
    ``timeline`` is ``[(cumulative_epochs, best_val_accuracy_so_far), ...]`` over *all* trials, one point per
    trial (``timeline[i]`` belongs to ``trials[i]``).
    """

    method: str
    trials: list[TrialRecord] = field(default_factory=list)
    timeline: list[tuple[int, float]] = field(default_factory=list)
    best: TrialRecord | None = None
    total_epochs: int = 0
    metric: str = "val_accuracy"

    def epochs_to_reach(self, accuracy: float, *, final_only: bool = False) -> int | None:
        """Epochs trained until some trial first reached ``accuracy`` (``None`` if none did).

        ``final_only`` counts only trials that trained the full ``R`` epochs.
        """
        for record, (cumulative, _) in zip(self.trials, self.timeline, strict=True):
            if final_only and not record.item.final:
                continue
            value = record.metric(self.metric)
            if value is not None and value >= accuracy:
                return cumulative
        return None

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per trial (its record's summary, the epochs trained, the running epoch count and the
        checkpoint): what a benchmark table or a plot reads."""
        return [
            {
                **record.summary(self.metric),
                "val_loss": record.metric("val_loss"),
                "final": record.item.final,
                "epochs_trained": record.epochs_trained,
                "cumulative_epochs": cumulative,
                "checkpoint": record.checkpoint,
            }
            for record, (cumulative, _) in zip(self.trials, self.timeline, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (benchmark reports): trials in the records' own versioned form."""
        return {
            "method": self.method,
            "metric": self.metric,
            "total_epochs": self.total_epochs,
            "best": None if self.best is None else self.best.to_json(),
            "timeline": [list(point) for point in self.timeline],
            "trials": [record.to_json() for record in self.trials],
        }


def _run_trial(train_fn: TrainFn, item: TrialItem, checkpoint_out: Path, trained: int, metric: str) -> TrialRecord:
    """Train ``item`` (``trained`` new epochs), writing its checkpoint to ``checkpoint_out``; the trial's record."""
    checkpoint_out.parent.mkdir(parents=True, exist_ok=True)
    resume_from = Path(item.resume_from) if item.resume_from is not None else None
    outcome = train_fn(dict(item.config), item.epochs, resume_from, checkpoint_out)
    value = outcome.get(metric) if isinstance(outcome, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpforgeError(f"trial {item.trial_id}: the training function returned no numeric {metric!r}")
    metrics: dict[str, float | None] = {metric: float(value)}
    if "val_loss" in outcome:
        metrics["val_loss"] = float(outcome["val_loss"])
    return TrialRecord(
        item=item,
        metrics=metrics,
        history=tuple(dict(row) for row in outcome.get("history", [])),
        epochs_trained=trained,
        checkpoint=str(checkpoint_out),
    )


class _Recorder:
    """Appends trial records and keeps the cumulative epochs / best-so-far timeline."""

    def __init__(self, result: TuneResult) -> None:
        self.result = result
        self.best_so_far = -math.inf

    def add(self, record: TrialRecord) -> TrialRecord:
        self.result.total_epochs += record.epochs_trained
        value = record.metric(self.result.metric)
        if value is not None:
            self.best_so_far = max(self.best_so_far, value)
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
    model_based: bool = False,
) -> TuneResult:
    """Run every bracket, most aggressive first, rung by rung; promoted trials resume from their checkpoint.

    ``model_based=True`` is BOHB: every bracket after the first proposes its configurations with
    :func:`expforge.tune.bohb.propose_trials`, fitted on all trial records so far (the pipeline variant sees the
    previous bracket's first rung only, what a static graph can pass).

    Checkpoints go to ``workdir/bracket-<s>/rung-<i>/<trial_id>.pt``. ``warm_start=False`` retrains promoted
    trials from scratch (what Katib's Hyperband does), for comparing the epoch cost. Each rung ends with the
    same :func:`~expforge.tune.promotion.promote` cut as the pipeline's ``select-top``, and the brackets' final
    rungs are chained through its incumbent the same way.
    """
    workdir = Path(workdir)
    result = TuneResult(method="bohb" if model_based else "hyperband", metric=metric)
    recorder = _Recorder(result)
    incumbent: Incumbent | None = None
    for bracket in schedule.brackets:
        salt, prefix = bracket_salt(bracket.s), bracket_prefix(bracket.s)
        if model_based and result.trials:
            from expforge.tune.bohb import propose_trials

            loop_items = propose_trials(space, result.trials, bracket.configs, seed, salt, prefix)
        else:
            loop_items = sample_trials(space, bracket.configs, seed, salt, prefix)
        resume: dict[str, Path] = {}
        for rung in bracket.rungs:
            final = rung.index == len(bracket.rungs) - 1
            records = []
            for loop_item in loop_items:
                resume_from = resume.get(loop_item["trial_id"]) if warm_start else None
                item = TrialItem.from_loop_item(
                    loop_item,
                    bracket=bracket.s,
                    rung=rung.index,
                    epochs=rung.epochs,
                    max_epochs=schedule.max_resource,
                    resume_from=None if resume_from is None else str(resume_from),
                )
                out = workdir / f"bracket-{bracket.s}" / f"rung-{rung.index}" / f"{item.trial_id}.pt"
                trained = rung.epochs - rung.previous_epochs if resume_from is not None else rung.epochs
                records.append(recorder.add(_run_trial(train_fn, item, out, trained, metric)))
            checkpoints = [Checkpoint(uri=str(r.checkpoint), path=Path(str(r.checkpoint))) for r in records]
            cut = promote(records, checkpoints, 1 if final else rung.keep, incumbent if final else None, metric)
            if final:
                incumbent = Incumbent(cut.best, cut.best_checkpoint)
                break
            loop_items, resume = cut.survivors(), cut.kept_checkpoints()
    assert incumbent is not None  # a schedule has at least one bracket
    result.best = incumbent.record
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
    first: int = 0,
) -> TuneResult:
    """Train ``budget_epochs // epochs_per_trial`` random configurations for ``epochs_per_trial`` epochs each.

    ``first`` skips the plan's first trials: a run that already trained them (same seed, a smaller budget: the
    plan is prefix-consistent and each trial trains alone) is extended by training only the rest."""
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise ExpforgeError(f"first: {first!r} is negative or not an integer")
    workdir = Path(workdir)
    result = TuneResult(method="random-search", metric=metric)
    recorder = _Recorder(result)
    plan = random_search_trials(space, budget_epochs, epochs_per_trial, seed)
    if first >= len(plan):
        raise ExpforgeError(f"first: {first} skips every one of the plan's {len(plan)} trials; nothing to train")
    for loop_item in plan[first:]:
        item = TrialItem.from_loop_item(
            loop_item, bracket=None, rung=0, epochs=epochs_per_trial, max_epochs=epochs_per_trial
        )
        out = workdir / "random-search" / f"{item.trial_id}.pt"
        recorder.add(_run_trial(train_fn, item, out, epochs_per_trial, metric))
    checkpoints = [Checkpoint(uri=str(r.checkpoint), path=Path(str(r.checkpoint))) for r in result.trials]
    result.best = promote(result.trials, checkpoints, 1, None, metric).best
    return result
