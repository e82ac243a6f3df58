"""Promotion: the one successive-halving cut that ``select-top`` and the in-process driver both make.

Given a rung's trial records and their checkpoints, keep the best ``keep`` trials (the next rung resumes them from
their checkpoints) and name the best model so far — this rung's winner, or the ``incumbent`` from an earlier
bracket when that ranks higher. The incumbent is never promoted: ``kept`` is about this rung's trials only.

Checkpoints are paired with records by checkpoint URI (the trial writes its checkpoint's URI into its record),
falling back to a ``trial_id`` the checkpoint carries, never by list position: two lists collected from one
pipeline loop carry no promise to come back in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.tune.records import TrialRecord
from expforge.tune.selection import rank_trials


@dataclass(frozen=True)
class Checkpoint:
    """One trial checkpoint: its URI (what records name), its local path, and the trial id it is labelled with."""

    uri: str
    path: Path
    trial_id: str | None = None


@dataclass(frozen=True)
class Incumbent:
    """The best trial of earlier brackets and its checkpoint."""

    record: TrialRecord
    checkpoint: Path


@dataclass(frozen=True)
class Promotion:
    """The outcome of one cut: every record ranked, those kept, and the best model so far."""

    ranked: tuple[TrialRecord, ...]
    kept: tuple[TrialRecord, ...]
    checkpoints: Mapping[str, Path]
    best: TrialRecord
    best_checkpoint: Path

    @property
    def rung_best(self) -> TrialRecord:
        """This rung's own winner (``best`` may be the incumbent)."""
        return self.ranked[0]

    def survivors(self) -> list[dict[str, Any]]:
        """The next rung's loop items (``{"trial_id", "config"}``), best first."""
        return [record.item.loop_item() for record in self.kept]

    def kept_checkpoints(self) -> dict[str, Path]:
        """``trial_id → checkpoint`` of the kept trials (what the next rung resumes from)."""
        return {record.trial_id: self.checkpoints[record.trial_id] for record in self.kept}


def pair_checkpoints(records: Sequence[TrialRecord], checkpoints: Sequence[Checkpoint]) -> dict[str, Path]:
    """``trial_id → checkpoint path`` for every record, by URI first and the checkpoint's trial id second."""
    by_uri = {checkpoint.uri: checkpoint for checkpoint in checkpoints}
    by_id = {checkpoint.trial_id: checkpoint for checkpoint in checkpoints if checkpoint.trial_id}
    paired: dict[str, Path] = {}
    for record in records:
        found = by_uri.get(record.checkpoint) if record.checkpoint else None
        found = found or by_id.get(record.trial_id)
        if found is None:
            raise ExpforgeError(f"records: no collected checkpoint for trial {record.trial_id!r} (by URI or trial_id)")
        paired[record.trial_id] = found.path
    return paired


def promote(
    records: Sequence[TrialRecord],
    checkpoints: Sequence[Checkpoint],
    keep: int,
    incumbent: Incumbent | None = None,
    metric: str = "val_accuracy",
) -> Promotion:
    """Rank ``records`` by ``metric`` (higher is better; ties by trial id), keep the best ``keep``, and pick the
    best of this rung's winner and ``incumbent``."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ExpforgeError(f"keep: {keep!r} is negative or not an integer")
    if not records:
        raise ExpforgeError("records: no trial records to select from")
    paired = pair_checkpoints(records, checkpoints)
    ranked = rank_trials(records, metric)
    best, best_checkpoint = ranked[0], paired[ranked[0].trial_id]
    if incumbent is not None and rank_trials([best, incumbent.record], metric)[0] is incumbent.record:
        best, best_checkpoint = incumbent.record, incumbent.checkpoint
    return Promotion(
        ranked=tuple(ranked),
        kept=tuple(ranked[:keep]),
        checkpoints=paired,
        best=best,
        best_checkpoint=best_checkpoint,
    )
