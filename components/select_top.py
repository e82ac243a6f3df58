"""select-top: successive halving's cut — keep a rung's best trials and hand their checkpoints to the next rung.

Inputs are the rung's trials fanned in with ``dsl.Collected``: their checkpoints (a list of ``Model``
artifacts) and their records (a list of :class:`~expforge.tune.records.TrialRecord` JSON objects). The cut itself is
:func:`expforge.tune.promotion.promote`, the same function the in-process driver calls: it pairs each checkpoint
with its record by artifact URI (the trial puts its checkpoint's URI into its record), never by list position.

Outputs: ``promoted`` is a directory with ``<trial_id>.pt`` for every kept trial (the next rung's trials resume
from it), ``leaderboard.json`` (the ranking) and ``records.json`` (every trial's record, per-epoch history
included); ``best`` is a copy of the best checkpoint (its metadata carries the best record, without history).
``survivors`` are the next rung's loop items.

``incumbent`` (+ ``incumbent_record``) is the best model from earlier — the pipeline chains the brackets'
final rungs through it — and ``best`` is whichever of it and this rung's winner ranks higher. The incumbent
is never promoted: ``survivors``/``promoted`` are about this rung's trials only.
"""

from typing import NamedTuple, Optional

from kfp.dsl import Artifact, Input, Metrics, Model, Output

from expforge.components._adapter import describe, log_scalars, step_component


class SelectTopOutputs(NamedTuple):
    """The next rung's loop items and the best trial so far."""

    survivors: list
    best_config: dict
    best_val_accuracy: float
    best_record: dict


@step_component("select-top")
def select_top(
    trials: Input[list[Model]],
    records: list,
    keep: int,
    promoted: Output[Artifact],
    best: Output[Model],
    metrics: Output[Metrics],
    incumbent: Input[Model] = None,
    incumbent_record: Optional[dict] = None,  # noqa: UP045  (KFP's component parser does not read `dict | None`)
    metric: str = "val_accuracy",
) -> SelectTopOutputs:
    """Rank the trials by ``metric`` (higher is better; ties by trial id), keep the best ``keep``."""
    import json
    import shutil
    from pathlib import Path

    from expforge.atomic import staged_directory, staged_file
    from expforge.tune.promotion import Checkpoint, Incumbent, promote
    from expforge.tune.records import TrialRecord, finite_json, records_from_json
    from expforge.tune.selection import leaderboard

    trial_records = records_from_json(records, source="records")
    checkpoints = [
        Checkpoint(uri=artifact.uri, path=Path(artifact.path), trial_id=artifact.metadata.get("trial_id") or None)
        for artifact in trials
    ]
    champion = None
    if incumbent is not None:
        # The previous select-top's best_record; its best checkpoint also carries the record (without history).
        held = incumbent_record if incumbent_record is not None else incumbent.metadata.get("record")
        source = "incumbent_record" if incumbent_record is not None else "incumbent.metadata.record"
        champion = Incumbent(TrialRecord.from_json(held, source=source), Path(incumbent.path))
    cut = promote(trial_records, checkpoints, keep, champion, metric)

    with staged_directory(promoted.path) as staging:
        for record in cut.kept:
            shutil.copyfile(cut.checkpoints[record.trial_id], staging / f"{record.trial_id}.pt")
        (staging / "leaderboard.json").write_text(json.dumps(finite_json(leaderboard(trial_records, metric)), indent=1))
        (staging / "records.json").write_text(json.dumps([r.to_json() for r in cut.ranked], indent=1))
    promoted.metadata["kept"] = [record.trial_id for record in cut.kept]
    promoted.metadata["trials"] = len(trial_records)

    with staged_file(best.path) as staging:
        shutil.copyfile(cut.best_checkpoint, staging)
    describe(
        best,
        cut.best.summary(metric),
        record=cut.best.to_json(history=False),
        framework="pytorch",
        format="expforge.checkpoint",
    )

    log_scalars(
        metrics,
        {
            f"best_{metric}": cut.best.metric(metric),
            f"rung_best_{metric}": cut.rung_best.metric(metric),
            "trials": len(trial_records),
            "kept": len(cut.kept),
        },
    )
    best_value = cut.best.metric(metric)
    return SelectTopOutputs(
        survivors=finite_json(cut.survivors()),
        best_config=finite_json(cut.best.item.config),
        best_val_accuracy=float("nan") if best_value is None else best_value,
        best_record=cut.best.to_json(),
    )
