"""select-top: successive halving's cut — keep a rung's best trials and hand their checkpoints to the next rung.

Inputs are the rung's trials fanned in with ``dsl.Collected``: their checkpoints (a list of ``Model``
artifacts) and their records (a list of dicts). Each checkpoint is paired with its record by artifact URI
(the trial puts its checkpoint's URI into its record), never by list position.

Outputs: ``promoted`` is a directory with ``<trial_id>.pt`` for every kept trial (the next rung's trials resume
from it), ``leaderboard.json`` (the ranking) and ``records.json`` (every trial's record, per-epoch history
included); ``best`` is a copy of the best checkpoint. ``survivors`` are the next rung's loop items.

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
    from expforge.errors import ExpforgeError
    from expforge.tune.selection import json_safe, leaderboard, rank_trials

    if keep < 0:
        raise ExpforgeError(f"keep: {keep} is negative")
    if not records:
        raise ExpforgeError("records: no trial records to select from")
    by_uri = {artifact.uri: artifact for artifact in trials}
    by_id = {artifact.metadata.get("trial_id"): artifact for artifact in trials if artifact.metadata.get("trial_id")}
    checkpoints: dict[str, Path] = {}
    for record in records:
        trial_id = record.get("trial_id") if isinstance(record, dict) else None
        artifact = by_uri.get(record.get("checkpoint_uri")) if trial_id else None
        artifact = artifact or by_id.get(trial_id)
        if artifact is None:
            raise ExpforgeError(f"records: no collected checkpoint for trial {trial_id!r} (by URI or trial_id)")
        checkpoints[trial_id] = Path(artifact.path)

    ranked = rank_trials(records, metric)
    kept = ranked[:keep]
    with staged_directory(promoted.path) as staging:
        for record in kept:
            shutil.copyfile(checkpoints[record["trial_id"]], staging / f"{record['trial_id']}.pt")
        (staging / "leaderboard.json").write_text(json.dumps(json_safe(leaderboard(records, metric)), indent=1))
        (staging / "records.json").write_text(json.dumps(json_safe(ranked), indent=1))
    promoted.metadata["kept"] = [record["trial_id"] for record in kept]
    promoted.metadata["trials"] = len(records)

    winner, source = ranked[0], checkpoints[ranked[0]["trial_id"]]
    if incumbent is not None:
        challenger = incumbent_record or {
            key: incumbent.metadata[key] for key in ("trial_id", "config", metric) if key in incumbent.metadata
        }
        if rank_trials([winner, challenger], metric)[0]["trial_id"] != winner["trial_id"]:
            winner, source = dict(challenger), Path(incumbent.path)
    with staged_file(best.path) as staging:
        shutil.copyfile(source, staging)
    summary = {key: winner.get(key) for key in ("trial_id", "bracket", "rung", "epochs", "config", metric)}
    describe(best, json_safe(summary), framework="pytorch", format="expforge.checkpoint")

    log_scalars(
        metrics,
        {
            f"best_{metric}": winner.get(metric),
            f"rung_best_{metric}": ranked[0].get(metric),
            "trials": len(records),
            "kept": len(kept),
        },
    )
    survivors = [{"trial_id": record["trial_id"], "config": record["config"]} for record in kept]
    best_value = winner.get(metric)
    return SelectTopOutputs(
        survivors=json_safe(survivors),
        best_config=json_safe(winner.get("config") or {}),
        best_val_accuracy=float(best_value) if isinstance(best_value, int | float) else float("nan"),
        best_record=json_safe(winner),
    )
