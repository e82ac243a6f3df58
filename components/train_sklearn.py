"""train-sklearn: multi-epoch SGD on synthetic digits (plus an optional fraction of real ones)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import describe, log_scalars, record_epoch_outputs, step_component, train_on_sets


@step_component("train-sklearn")
def train_sklearn(
    synthetic: Input[Dataset],
    real: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
    tensorboard: Output[Artifact],
    real_fraction: float = 0.0,
    model_type: str = "logreg",
    epochs: int = 10,
    schedule: str = "mixed",
    seed: int = 0,
) -> None:
    """Train on the synthetic dataset (+ ``real_fraction`` of real train), validate on real val.

    ``history`` is a CSV of per-epoch train/val loss and accuracy; ``metrics`` holds the final values;
    ``tensorboard`` a directory of TensorBoard event files with the same per-epoch values.
    """
    from expforge.train.sklearn_trainer import train_sklearn as train

    result = train_on_sets(
        train,
        synthetic,
        real,
        model,
        tensorboard,
        real_fraction,
        model=model_type,
        epochs=epochs,
        seed=seed,
        curriculum=schedule,
    )
    log_scalars(metrics, result.final)
    describe(model, result.params, framework="scikit-learn", format="skops")
    record_epoch_outputs(history, tensorboard, result.history)
