"""The digit CNN's training machinery: model, optimizer and seeded generator, stepping through one plan.

An epoch is a function of the *global epoch index* and the plan (``horizon_total``), never of how far this call
will go: one permutation and one block of augmentation parameters per epoch from the trainer's own seeded
``torch.Generator`` (which a checkpoint keeps), the LR from ``lr_schedule``. Per batch there is a gather, one
affine warp, forward and backward (under autocast on a GPU, and on a CPU with ``cpu_bf16``) and a fused
optimizer step; losses and hit counts accumulate on the device, and the host syncs once per epoch. Evaluation
runs under ``inference_mode``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expforge.train.lr_schedule import learning_rate
from expforge.train.torch_config import TorchTrainConfig
from expforge.train.torch_data import Resident, upload

if TYPE_CHECKING:
    import torch

EVAL_BATCH = 2048


def make_optimizer(model: torch.nn.Module, config: TorchTrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only (biases and batch-norm parameters are not shrunk towards zero)."""
    import torch

    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused kernels (CUDA and CPU): one pass over all parameters instead of a dozen small kernels per tensor.
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0, fused=True
    )


@dataclass
class Trainer:
    """Model, optimizer and the seeded generator of data order and augmentation, stepping through one plan."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler or None
    generator: torch.Generator
    config: TorchTrainConfig
    device: torch.device
    horizon_total: int

    def train_epoch(self, data: Resident, epoch: int) -> tuple[float, float, float, float]:
        """One pass over ``data`` in a fresh seeded order; returns (loss, accuracy, seconds, last LR)."""
        import torch
        import torch.nn.functional as F

        from expforge.train.augment_torch import affine_matrices, draw_params, warp
        from expforge.train.device import autocast
        from expforge.train.digit_cnn import to_input

        config, device, model = self.config, self.device, self.model
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(data.size, generator=self.generator)
        uniforms = draw_params(data.size, self.generator) if config.augment else None
        order = upload(order, device) if data.on_device else order
        # The epoch's matrices in one go: a handful of kernels per epoch instead of per batch.
        thetas = affine_matrices(upload(uniforms, device)) if uniforms is not None else None
        batches = math.ceil(data.size / config.batch_size)
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device, dtype=torch.int64)
        lr = config.lr
        model.train()
        for batch in range(batches):
            lo, hi = batch * config.batch_size, min((batch + 1) * config.batch_size, data.size)
            lr = learning_rate(config, (epoch + batch / batches) / self.horizon_total)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            pixels, labels = data.take(order[lo:hi])
            inputs = to_input(pixels)
            if thetas is not None:
                inputs = warp(inputs, thetas[lo:hi])
            with autocast(device, config.amp, cpu=config.cpu_bf16 is True):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            loss_sum += loss.detach() * (hi - lo)
            hits += (logits.detach().argmax(dim=1) == labels).sum()
        mean_loss = float(loss_sum.item()) / data.size  # the epoch's one host sync
        accuracy = int(hits.item()) / data.size
        return mean_loss, accuracy, time.perf_counter() - start, lr

    def evaluate(self, data: Resident) -> tuple[float, float]:
        """(cross-entropy, accuracy) on ``data`` in eval mode (batch norm uses its running statistics)."""
        import torch
        import torch.nn.functional as F

        from expforge.train.device import autocast
        from expforge.train.digit_cnn import to_input

        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device, dtype=torch.int64)
        with torch.inference_mode():
            for lo in range(0, data.size, EVAL_BATCH):
                pixels, labels = data.take(slice(lo, min(lo + EVAL_BATCH, data.size)))
                with autocast(self.device, self.config.amp, cpu=self.config.cpu_bf16 is True):
                    logits = self.model(to_input(pixels))
                logits = logits.float()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum")
                hits += (logits.argmax(dim=1) == labels).sum()
        self.model.train()
        return float(loss_sum.item()) / data.size, int(hits.item()) / data.size


def new_trainer(config: TorchTrainConfig, device: torch.device, horizon_total: int) -> Trainer:
    """Seed, build and move the model; the generator is seeded separately so data order does not depend on
    how many random numbers initialisation consumed."""
    import torch

    from expforge.train.device import needs_grad_scaler, place_model, seed_everything
    from expforge.train.digit_cnn import build_model

    config = config.resolve_cpu_bf16(device)  # a no-op when the caller (train_torch) has already decided
    seed_everything(config.seed, device)
    model = place_model(build_model(config.spec()), device)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, config.amp) else None
    generator = torch.Generator().manual_seed(config.seed)
    return Trainer(model, optimizer, scaler, generator, config, device, horizon_total)


def device_info(device: torch.device, config: TorchTrainConfig, data_on_device: bool) -> dict[str, Any]:
    """The run record's hardware and precision: the device, autocast (``amp``, ``amp_dtype``), the resulting
    ``precision`` and the ``cpu_bf16`` setting as decided for this run (``config`` already resolved)."""
    import torch

    from expforge.train.device import cpu_autocast_used, describe_device, needs_grad_scaler

    info = describe_device(device)
    amp = config.amp and device.type == "cuda"
    cpu_bf16 = cpu_autocast_used(device, config.cpu_bf16 is True)
    info["amp"] = amp or cpu_bf16
    if cpu_bf16 or (amp and torch.cuda.is_bf16_supported()):
        info["amp_dtype"] = "bfloat16"
    else:
        info["amp_dtype"] = "float16" if amp else None
    # What the forward and backward passes computed in: the one field to read when comparing runs' numbers.
    info["precision"] = "float32" if info["amp_dtype"] is None else f"{info['amp_dtype']} autocast"
    info["cpu_bf16"] = config.cpu_bf16
    info["grad_scaler"] = needs_grad_scaler(device, config.amp)
    info["data_on_device"] = data_on_device
    return info
