"""Checkpoint and resume for the digit CNN: what a checkpoint holds, and continuing one run from it exactly.

A resume continues *one* run: the same settings, curriculum and training rows (paths may differ), so the check
comes before anything is restored. Restoring puts back the weights, the optimizer state (laid out like this
device's parameters), the grad scaler and the data-order generator, so 0→r1→r2 equals 0→r2 (bit-identical on
CPU). The checkpoint is one file: the model artifact and the resume point alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expforge.errors import ExpforgeError
from expforge.train.digit_cnn import IMAGE_SIZE, KIND, NUM_CLASSES, PIXEL_SCALE
from expforge.train.torch_config import LATER_FIELDS
from expforge.train.torch_results import TorchEpochMetrics

if TYPE_CHECKING:
    import torch

    from expforge.train.torch_config import TorchTrainConfig
    from expforge.train.torch_data import Stage
    from expforge.train.torch_loop import Trainer


def check_resumable(
    payload: dict[str, Any], source: Path, config_dict: dict[str, Any], curriculum: str, stages: list[Stage]
) -> None:
    """A resume continues one run: same settings, same curriculum, same training rows (paths may differ)."""
    saved = {**LATER_FIELDS, **(payload.get("config") or {})}
    differing = sorted(k for k in set(saved) | set(config_dict) if saved.get(k) != config_dict.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs requested {config_dict.get(k)!r}" for k in differing)
        hint = "; set schedule_epochs to the full budget to train in rungs" if "schedule_epochs" in differing else ""
        raise ExpforgeError(f"{source}: cannot resume with another config ({detail}){hint}")
    params = payload.get("params") or {}
    if params.get("curriculum") != curriculum:
        raise ExpforgeError(
            f"{source}: checkpoint was trained with curriculum {params.get('curriculum')!r}, not {curriculum!r}"
        )
    fingerprints = [s.fingerprint for s in stages]
    if params.get("train_fingerprints") != fingerprints:
        raise ExpforgeError(
            f"{source}: the training data (after --train-fraction) differs from the checkpoint's; "
            "a resume must see the same rows"
        )


def read_checkpoint(source: Path, config: TorchTrainConfig) -> dict[str, Any]:
    """The checkpoint to resume from, checked to be a digit CNN of ``config``'s architecture."""
    from expforge.train.checkpoint import load_checkpoint

    return load_checkpoint(source, kind=KIND, architecture=config.spec().architecture())


def restore(
    trainer: Trainer,
    payload: dict[str, Any],
    source: Path,
    *,
    config_dict: dict[str, Any],
    curriculum: str,
    stages: list[Stage],
    epochs: int,
    run_total: int,
) -> tuple[int, list[TorchEpochMetrics]]:
    """Load ``payload`` (read from ``source``) into ``trainer`` after checking that it continues this run and has
    not already gone past ``run_total`` epochs (``epochs`` per stage); return (epochs done, their history)."""
    from expforge.train.checkpoint import restore_rng_state

    check_resumable(payload, source, config_dict, curriculum, stages)
    start_epoch = int(payload["epoch"])
    if start_epoch > run_total:
        raise ExpforgeError(
            f"--epochs: {epochs} ({run_total} epoch(s) in all) is below the {start_epoch} the checkpoint "
            f"{source} has already trained"
        )
    try:
        trainer.model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ExpforgeError(f"{source}: model weights do not fit the architecture ({exc!s:.200})") from None
    fused_keys = ("fused", "foreach", "capturable")
    current: list[dict[str, Any]] = [{k: g[k] for k in fused_keys if k in g} for g in trainer.optimizer.param_groups]
    trainer.optimizer.load_state_dict(payload["optimizer"])
    for group, kept in zip(trainer.optimizer.param_groups, current, strict=True):
        group.update(kept)  # fused kernels are a property of this device, not of the checkpoint
    match_layouts(trainer.optimizer)
    if trainer.scaler is not None and payload.get("grad_scaler"):
        trainer.scaler.load_state_dict(payload["grad_scaler"])
    restore_rng_state(payload["rng"], trainer.generator)
    return start_epoch, [TorchEpochMetrics(**row) for row in payload["history"]]


def match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's memory layout.

    A checkpoint written on a GPU (or before channels-last) holds contiguous moments; the fused CPU kernels
    assume that state and parameter share strides and silently compute garbage otherwise (torch 2.13)."""
    import torch

    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param).copy_(value)


def to_cpu(value: Any) -> Any:
    """Tensors of a (nested) state dict moved to the CPU, so a GPU checkpoint loads anywhere."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def save(
    output: Path,
    trainer: Trainer,
    *,
    config: TorchTrainConfig,
    epoch: int,
    horizon_total: int,
    history: list[TorchEpochMetrics],
    params: dict[str, Any],
    config_dict: dict[str, Any],
) -> Path:
    """Write the checkpoint (tensors on the CPU, so a GPU checkpoint loads anywhere) atomically."""
    from expforge.train.checkpoint import capture_rng_state, save_checkpoint

    return save_checkpoint(
        output,
        kind=KIND,
        architecture=config.spec().architecture(),
        model=to_cpu(trainer.model.state_dict()),
        optimizer=to_cpu(trainer.optimizer.state_dict()),
        scheduler={"lr_schedule": config.lr_schedule, "base_lr": config.lr, "horizon_epochs": horizon_total},
        grad_scaler=trainer.scaler.state_dict() if trainer.scaler is not None else None,
        rng=capture_rng_state(trainer.generator),
        epoch=epoch,
        history=[dataclasses.asdict(h) for h in history],
        params=params,
        config=config_dict,
        preprocessing={"input_shape": [IMAGE_SIZE, IMAGE_SIZE], "scale": PIXEL_SCALE},
        classes=list(range(NUM_CLASSES)),
    )
