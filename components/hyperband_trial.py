"""hyperband-trial: train one configuration of a Hyperband rung (or a random-search trial) with PyTorch.

The loop item ``trial`` is ``{"trial_id": "b2-c05", "config": {...}}``. At rung 0 the trial starts from scratch;
at a later rung ``previous`` is the previous rung's ``select-top`` ``promoted`` directory and the trial resumes
from ``<previous>/<trial_id>.pt`` up to ``epochs`` — a promoted trial continues, it does not start over. The LR
schedule's horizon is the schedule's ``max_epochs`` (R) at every rung, which is what makes resuming exact.
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component, train_on_sets


class TrialOutputs(NamedTuple):
    """The trial's validation accuracy and its full record (a :class:`~expforge.tune.records.TrialRecord` as JSON:
    what ``select-top`` ranks)."""

    val_accuracy: float
    record: dict


@step_component("hyperband-trial")
def hyperband_trial(
    synthetic: Input[Dataset],
    real: Input[Dataset],
    trial: dict,
    epochs: int,
    max_epochs: int,
    checkpoint: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
    tensorboard: Output[Artifact],
    previous: Input[Artifact] = None,
    real_fraction: float = 0.0,
    curriculum: str = "mixed",
    device: str = "auto",
    seed: int = 0,
    bracket: int = -1,
    rung: int = 0,
    limit_cpu: str = "",
    limit_memory: str = "",
    limit_accelerator_type: str = "",
    limit_accelerator_count: int = 0,
) -> TrialOutputs:
    """Train ``trial["config"]`` on synthetic (+ ``real_fraction`` of real train) up to ``epochs``; validate on
    real val. ``bracket``/``rung`` only label the record; ``bracket`` -1 (the value the compiled YAML carries for
    random search) becomes ``search="random-search", bracket=None`` in the :class:`TrialRecord`.

    ``limit_*`` are the limits the task was given, recorded with the trial. They are
    also *why* the task limits can come from pipeline parameters inside a ``ParallelFor``: KFP 2.17 forwards a
    parameter into a loop only for the tasks' inputs, not for their resource settings alone.

    ``tensorboard`` holds the epochs this task trained as TensorBoard event files (a resumed rung continues at
    the next epoch), so ``expforge tensorboard`` shows every trial as its own run."""
    import dataclasses
    import json
    from pathlib import Path

    from expforge.errors import ExpforgeError
    from expforge.train.torch_trainer import TorchTrainConfig, train_torch
    from expforge.tune.records import (
        RANDOM_SEARCH_BRACKET_PARAMETER,
        Resources,
        TrialItem,
        TrialRecord,
        finite_json,
    )

    if not isinstance(trial, dict) or not isinstance(trial.get("trial_id"), str) or "config" not in trial:
        raise ExpforgeError(f"trial: expected {{'trial_id': str, 'config': {{...}}}}, got {trial!r:.200}")
    trial_id = trial["trial_id"]
    resume_from = None
    if previous is not None:
        resume_from = artifact_dir(previous) / f"{trial_id}.pt"
        if not resume_from.is_file():
            raise ExpforgeError(f"previous: no checkpoint {resume_from.name} in the promoted directory {previous.uri}")
    item = TrialItem.from_loop_item(
        trial,
        bracket=None if bracket == RANDOM_SEARCH_BRACKET_PARAMETER else bracket,
        rung=rung,
        epochs=epochs,
        max_epochs=max_epochs,
        resume_from=None if resume_from is None else f"{previous.uri}/{trial_id}.pt",
    )
    config = TorchTrainConfig.from_dict(
        {"seed": seed, **item.config, "schedule_epochs": max_epochs},
        labels={key: f"trial {trial_id}: config.{key}" for key in item.config},
    )
    result = train_on_sets(
        train_torch,
        synthetic,
        real,
        checkpoint,
        tensorboard,
        real_fraction,
        config=config,
        epochs=epochs,
        curriculum=curriculum,
        resume_from=resume_from,
        device=device,
    )
    tensorboard.metadata["format"] = "tensorboard"

    rows = finite_json([dataclasses.asdict(epoch) for epoch in result.history])
    val_accuracy = float(result.final["val_accuracy"])
    record = TrialRecord(
        item=item,
        metrics={"val_accuracy": val_accuracy, "val_loss": float(result.final["val_loss"])},
        history=tuple(rows),
        epochs_trained=int(result.final.get("epochs_trained", len(rows))),
        # select-top pairs each collected checkpoint with its record by this URI (collected lists carry no
        # promise that two lists gathered from one loop come back in the same order).
        checkpoint=checkpoint.uri,
        # (named limit_*: KFP names the task inputs behind resource placeholders cpu_limit, accelerator_count, ...)
        resources=Resources(
            cpu=limit_cpu,
            memory=limit_memory,
            accelerator_type=limit_accelerator_type if limit_accelerator_count else "",
            accelerator_count=limit_accelerator_count,
        ),
    )

    per_epoch = {
        f"epoch_{epoch.epoch:03d}_{key}": getattr(epoch, key)
        for epoch in result.history
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    }
    log_scalars(metrics, {**result.final, **per_epoch})
    describe(
        checkpoint,
        {"trial_id": trial_id, "search": item.search, "bracket": item.bracket, "rung": rung, "config": item.config},
        val_accuracy=val_accuracy,
        epochs=epochs,
        framework="pytorch",
        format="expforge.checkpoint",
    )
    Path(history.path).parent.mkdir(parents=True, exist_ok=True)
    Path(history.path).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    history.metadata["format"] = "json"
    history.metadata["trial_id"] = trial_id
    return TrialOutputs(val_accuracy=val_accuracy, record=record.to_json())
