"""Train the digit CNN with PyTorch: seeded, resumable to the bit, and fast on a GPU.

Three properties shape this module.

* **Exact resume.** Hyperband trains a configuration to rung r1, checkpoints, and later resumes it to r2. That is
  only honest if 0→r1→r2 equals 0→r2. So everything an epoch does is a function of the *global epoch index* and
  a fixed *plan*, never of how far this particular call will go: the LR at a step depends on
  ``(epoch + batch/batches) / horizon`` where the horizon is ``schedule_epochs`` (set it to the largest budget),
  the data order and augmentation come from one seeded ``torch.Generator`` whose state the checkpoint keeps,
  and dropout's global RNG is captured too. On CPU (deterministic kernels) the weights are bit-identical.
* **Speed.** No DataLoader and no per-image Python: the whole dataset lives on the device as a ``uint8`` tensor
  (60,000 digits are 47 MB), each epoch draws one permutation and one block of augmentation parameters, and a
  batch is a gather, one affine warp, forward and backward (autocast on a GPU; channels-last and fused
  optimizer kernels on a CPU). Losses and hit counts accumulate on the device; the host syncs once per epoch.
* **Curriculum semantics of the scikit-learn trainer.** ``curriculum="mixed"`` pools every training dataset each
  epoch (phase ``mixed``); ``"sequential"`` runs ``epochs`` epochs on the first dataset, then ``epochs`` on the
  next (phase ``<stage index>:<dataset name>``). With ``schedule_epochs`` S set, the plan is S epochs per stage and
  a call trains the first ``epochs × stages`` epochs of that plan, so resuming stays a prefix of one plan.

Train loss and accuracy are means over the epoch's training batches (augmented, dropout on), which costs nothing;
validation loss is the plain cross-entropy (no label smoothing) on the validation split.

This module is the entry point and the run's plan; its parts live next to it, one job each: ``torch_config``
(settings), ``lr_schedule``, ``torch_data`` (rows and resident tensors), ``torch_loop`` (optimizer, epoch,
evaluation), ``torch_resume`` (checkpoint and exact resume), ``torch_results`` and ``throughput``. The public
names are re-exported here, so ``from expforge.train.torch_trainer import ...`` keeps working.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expforge.errors import ExpforgeError
from expforge.train.curriculum import CURRICULA, check_curriculum, curriculum_phases, train_fractions_for
from expforge.train.lr_schedule import ONECYCLE_WARMUP, learning_rate
from expforge.train.throughput import measure_throughput
from expforge.train.torch_config import LR_SCHEDULES, OPTIMIZERS, TorchTrainConfig
from expforge.train.torch_data import Resident, load_split, load_stage
from expforge.train.torch_loop import EVAL_BATCH, device_info, new_trainer
from expforge.train.torch_results import TorchEpochMetrics, TorchTrainResult, write_history_csv
from expforge.train.torch_resume import read_checkpoint, restore, save

__all__ = [
    "CURRICULA",
    "EVAL_BATCH",
    "LR_SCHEDULES",
    "ONECYCLE_WARMUP",
    "OPTIMIZERS",
    "TorchEpochMetrics",
    "TorchTrainConfig",
    "TorchTrainResult",
    "learning_rate",
    "load_split",
    "measure_throughput",
    "train_torch",
    "write_history_csv",
]


def _check_options(
    train: Sequence[Path | str],
    output: Path,
    config: TorchTrainConfig,
    epochs: int,
    curriculum: str,
    train_fractions: Sequence[float] | None,
) -> list[float]:
    """Validate every argument before any data is read; return the fraction per training dataset."""
    if not isinstance(config, TorchTrainConfig):
        raise ExpforgeError(f"config: expected a TorchTrainConfig, got {type(config).__name__}")
    config.validate()
    if not train:
        raise ExpforgeError("--train: at least one training dataset is required")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ExpforgeError(f"--epochs: {epochs} is not a positive number of epochs")
    check_curriculum(curriculum)
    if config.horizon(epochs) < epochs:
        raise ExpforgeError(
            f"config.schedule_epochs: {config.schedule_epochs} is below --epochs {epochs}; "
            "the LR schedule must cover every epoch"
        )
    fractions = train_fractions_for(train, train_fractions)
    if output.is_dir():
        raise ExpforgeError(f"--output: {output} is a directory; expected a file path")
    return fractions


def train_torch(
    train: Sequence[Path | str],
    val: Path | str,
    output: Path | str,
    *,
    config: TorchTrainConfig,
    epochs: int,
    train_fractions: Sequence[float] | None = None,
    curriculum: str = "mixed",
    resume_from: Path | str | None = None,
    device: str = "auto",
    on_epoch: Callable[[TorchEpochMetrics], None] | None = None,
) -> TorchTrainResult:
    """Train the digit CNN on ``train`` (curriculum order), validating on ``val``'s val split every epoch.

    ``output`` receives one checkpoint file (kind ``digit-cnn``): the model artifact and a resume point alike.
    ``resume_from`` continues a checkpoint's run to ``epochs`` (same config, curriculum and data), exactly as if
    it had never stopped. ``on_epoch`` is called after every epoch trained by this call (the hook for
    per-epoch logging: tracking, TensorBoard).
    """
    from expforge.train.device import select_device

    output = Path(output)
    fractions = _check_options(train, output, config, epochs, curriculum, train_fractions)
    dev = select_device(device)
    stages = [
        load_stage(Path(path), fraction, np.random.default_rng([config.seed, index]))
        for index, (path, fraction) in enumerate(zip(train, fractions, strict=True))
    ]
    val_images, val_labels = load_split(val, "val")

    phases = curriculum_phases([(s.path, s.images, s.labels) for s in stages], curriculum)
    per_stage = config.horizon(epochs)
    horizon_total = per_stage * len(phases)
    run_total = epochs * len(phases)
    source = None if resume_from is None else Path(resume_from)
    payload = None if source is None else read_checkpoint(source, config)
    # cpu_bf16="auto" is decided here, once: the checkpoint and the params record the precision actually chosen.
    config = config.resolve_cpu_bf16(dev, None if payload is None else payload.get("config") or {})
    config_dict = {**config.to_dict(), "schedule_epochs": per_stage}

    trainer = new_trainer(config, dev, horizon_total)
    start_epoch = 0
    history: list[TorchEpochMetrics] = []
    if source is not None and payload is not None:
        start_epoch, history = restore(
            trainer,
            payload,
            source,
            config_dict=config_dict,
            curriculum=curriculum,
            stages=stages,
            epochs=epochs,
            run_total=run_total,
        )

    resident = [Resident(images, labels, dev) for _, images, labels in phases]
    val_data = Resident(val_images, val_labels, dev)
    started = time.perf_counter()
    for epoch in range(start_epoch, run_total):
        index = min(epoch // per_stage, len(phases) - 1)
        data = resident[index]
        train_loss, train_accuracy, seconds, lr = trainer.train_epoch(data, epoch)
        val_loss, val_accuracy = trainer.evaluate(val_data)
        metrics = TorchEpochMetrics(
            epoch=epoch + 1,
            phase=phases[index][0],
            train_loss=train_loss,
            val_loss=val_loss,
            train_accuracy=train_accuracy,
            val_accuracy=val_accuracy,
            seconds=seconds,
            images_per_second=data.size / seconds if seconds > 0 else float("inf"),
            lr=lr,
        )
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    elapsed = time.perf_counter() - started

    params: dict[str, Any] = {
        **config_dict,
        "epochs": epochs,
        "epochs_total": run_total,
        "schedule_epochs_total": horizon_total,
        "curriculum": curriculum,
        "train": [str(s.path) for s in stages],
        "train_fractions": fractions,
        "train_rows": [len(s.labels) for s in stages],
        "train_fingerprints": [s.fingerprint for s in stages],
        "train_split": "train",
        "val": str(val),
        "val_split": "val",
        "val_rows": len(val_labels),
        "resumed_from": None if resume_from is None else str(resume_from),
        "resumed_at_epoch": start_epoch if resume_from is not None else None,
    }
    save(
        output,
        trainer,
        config=config,
        epoch=run_total,
        horizon_total=horizon_total,
        history=history,
        params=params,
        config_dict=config_dict,
    )
    trained = history[start_epoch:]
    final = {
        **history[-1].final_metrics(),
        "epochs_trained": float(len(trained)),
        "seconds": elapsed,
        "images_per_second": float(np.mean([h.images_per_second for h in trained])) if trained else 0.0,
    }
    return TorchTrainResult(output, history, final, params, device_info(dev, config, resident[0].on_device))
