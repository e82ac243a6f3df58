"""adapt: the font-trained digit CNN adapted to unlabeled real train digits (AdaBN, then self-training), the
candidate chosen on real val only; the output is an ordinary ``digit-cnn`` checkpoint."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component


class AdaptOutputs(NamedTuple):
    """Real-val accuracy of the chosen candidate and the name of that candidate."""

    val_accuracy: float
    chosen: str


@step_component("adapt")
def adapt(
    model: Input[Model],
    real: Input[Dataset],
    adapted: Output[Model],
    metrics: Output[Metrics],
    methods: list = ["adabn", "self-train"],  # noqa: B006 (a KFP default, never mutated)
    rounds: int = 10,
    threshold: float = 0.7,
    device: str = "auto",
    seed: int = 0,
) -> AdaptOutputs:
    """Adapt ``model`` to the *images* of ``real``'s train split; select on ``real``'s val split (labels used
    there only). ``metrics`` logs every candidate's val accuracy."""
    from expforge.adapt.core import adapt_digit_cnn
    from expforge.adapt.methods import SelfTrainSettings
    from expforge.train.checkpoint import CHECKPOINT_FORMAT

    result = adapt_digit_cnn(
        model.path,
        artifact_dir(real),
        artifact_dir(real),
        adapted.path,
        methods=[str(m) for m in methods],
        settings=SelfTrainSettings(rounds=rounds, threshold=threshold, seed=seed),
        device=device,
    )
    summary = result.to_dict()
    log_scalars(
        metrics,
        {
            "val_accuracy": result.val_accuracy,
            "source_val_accuracy": result.source_val_accuracy,
            "gain": result.val_accuracy - result.source_val_accuracy,
            "unlabeled_rows": result.unlabeled_rows,
            **{f"candidate_{c.name.replace('/', '_')}_val_accuracy": c.val_accuracy for c in result.candidates},
        },
    )
    describe(
        adapted,
        {k: v for k, v in summary.items() if k != "output"},  # the architecture comes from the checkpoint
        framework="pytorch",
        format=CHECKPOINT_FORMAT,
        kind="digit-cnn",
    )
    return AdaptOutputs(val_accuracy=result.val_accuracy, chosen=result.chosen)
