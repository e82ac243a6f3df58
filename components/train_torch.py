"""train-torch: the digit CNN (PyTorch; CUDA when present) on synthetic digits plus an optional fraction of real
ones, with per-epoch metrics and a resumable checkpoint as the model."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import describe, log_scalars, record_epoch_outputs, step_component, train_on_sets


@step_component("train-torch")
def train_torch(
    synthetic: Input[Dataset],
    real: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
    tensorboard: Output[Artifact],
    real_fraction: float = 0.0,
    curriculum: str = "sequential",
    epochs: int = 5,
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.25,
    optimizer: str = "adamw",
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    lr_schedule: str = "cosine",
    augment: bool = True,
    device: str = "auto",
    seed: int = 0,
) -> None:
    """Train on the synthetic dataset (then ``real_fraction`` of real train, with ``curriculum="sequential"``),
    validating on real val every epoch.

    ``model`` is one checkpoint file (``expforge.checkpoint``, kind ``digit-cnn``); ``history`` the per-epoch CSV;
    ``metrics`` the final values plus every epoch's as ``epoch_003_val_accuracy``-style scalars; ``tensorboard``
    the same per-epoch values (and the learning rate and throughput) as TensorBoard event files.
    """
    from expforge.train.checkpoint import CHECKPOINT_FORMAT
    from expforge.train.torch_trainer import TorchTrainConfig
    from expforge.train.torch_trainer import train_torch as train

    config = TorchTrainConfig.from_dict(
        {
            "width": width,
            "depth": depth,
            "dropout": dropout,
            "optimizer": optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "lr_schedule": lr_schedule,
            "augment": augment,
            "seed": seed,
        }
    )
    result = train_on_sets(
        train,
        synthetic,
        real,
        model,
        tensorboard,
        real_fraction,
        config=config,
        epochs=epochs,
        curriculum=curriculum,
        device=device,
    )
    per_epoch = {
        f"epoch_{epoch.epoch:03d}_{key}": getattr(epoch, key)
        for epoch in result.history
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds")
    }
    log_scalars(metrics, {**result.final, **per_epoch})
    describe(
        model,
        result.params,
        framework="pytorch",
        format=CHECKPOINT_FORMAT,
        kind="digit-cnn",
        architecture=config.spec().architecture(),
        device=result.device,
    )
    record_epoch_outputs(history, tensorboard, result.history)
