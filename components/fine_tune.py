"""fine-tune: the digit CNN (font-trained or adapted) fine-tuned on the real train split's labels, the epoch chosen
on real val only; the output is an ordinary ``digit-cnn`` checkpoint."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component


class FineTuneOutputs(NamedTuple):
    """Real-val accuracy of the chosen epoch's weights and that epoch (1-based)."""

    val_accuracy: float
    best_epoch: int


@step_component("fine-tune")
def fine_tune(
    model: Input[Model],
    labelled: Input[Dataset],
    tuned: Output[Model],
    metrics: Output[Metrics],
    epochs: int = 60,
    lr: float = 2e-3,
    ema: float = 0.999,
    labels: int = 0,
    device: str = "auto",
    seed: int = 0,
) -> FineTuneOutputs:
    """Fine-tune ``model`` on ``labelled``'s train labels; choose the epoch on its val split (the test split is not
    read). ``metrics`` logs the val accuracy of every epoch (``epoch_001_val_accuracy``-style scalars, a series)."""
    from expforge.adapt.fine_tune import FineTuneSettings, fine_tune_digit_cnn
    from expforge.train.checkpoint import CHECKPOINT_FORMAT

    settings = FineTuneSettings(epochs=epochs, lr=lr, ema=ema, labels=labels, seed=seed)
    result = fine_tune_digit_cnn(model.path, artifact_dir(labelled), tuned.path, settings=settings, device=device)
    log_scalars(
        metrics,
        {
            "val_accuracy": result.val_accuracy,
            "source_val_accuracy": result.source_val_accuracy,
            "gain": result.val_accuracy - result.source_val_accuracy,
            "best_epoch": result.best_epoch,
            "labelled_rows": result.labelled_rows,
            **{f"epoch_{n:03d}_val_accuracy": v for n, v in enumerate(result.val_accuracy_by_epoch, start=1)},
        },
    )
    describe(
        tuned,
        {k: v for k, v in result.to_dict().items() if k not in ("output", "val_accuracy_by_epoch")},
        framework="pytorch",
        format=CHECKPOINT_FORMAT,
        kind="digit-cnn",
    )
    return FineTuneOutputs(val_accuracy=result.val_accuracy, best_epoch=result.best_epoch)
