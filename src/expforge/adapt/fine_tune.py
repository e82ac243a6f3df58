"""Fine-tune a font-trained (or adapted) digit CNN on the real train split's *labels*: the last leg of
fonts → (adapt on unlabeled real) → fine-tune on real labels → evaluate.

The recipe is the one ``bench/bench_adapt.py`` measured (bench/reference/adapt.json ``fine_tuned_*``): AdamW with
a one-cycle learning rate and label smoothing 0.1; each batch split between the adaptation step's strong views
(``strong_share`` of it) and the trainer's mild affine warp; the weights averaged per step (EMA), and the averaged
network scored on the real val split after every epoch. The output holds the averaged weights of the best val
epoch (the last of equals: with a one-cycle schedule the later of two equal epochs has the lower learning rate).
A few thousand labels are too few for the raw last step's weights to be stable; the average is what generalises.

Only the train split's labels train and only the val split's labels select; the test split is never read.
``labels`` > 0 keeps that many train digits (:func:`labelled_subset`): the points of a learning curve.
The output is an ordinary ``digit-cnn`` checkpoint that records how it was made; it holds no optimizer state.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output
from expforge.errors import ExpforgeError

MIN_LABELLED = 2  # batch norm cannot train on a batch of one

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneSettings:
    """How the labelled fine-tune runs; :meth:`validate` names the flag of a value that cannot work.

    The defaults are the measured recipe: 60 epochs of 2,000 digits, about 1,900 steps. The weight average's horizon
    is 1 / (1 - ``ema``) steps (1,000 at the default), so a much shorter run scores weights still close to where it
    started: keep the steps near that length, or lower ``ema`` with them.
    """

    epochs: int = 60
    lr: float = 2e-3
    batch_size: int = 64
    strong_share: float = 0.5
    ema: float = 0.999
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    labels: int = 0
    subset_seed: int = 0
    seed: int = 0

    def steps(self, rows: int) -> int:
        """Optimiser steps of a run over ``rows`` labelled digits (the one-cycle schedule's length)."""
        return self.epochs * math.ceil(rows / self.batch_size)

    def validate(self) -> FineTuneSettings:
        if self.epochs < 1:
            raise ExpforgeError(f"--epochs: {self.epochs} is not a number of passes (1 or more)")
        if not self.lr > 0.0:
            raise ExpforgeError(f"--lr: {self.lr} is not a learning rate > 0")
        if self.batch_size < MIN_LABELLED:
            raise ExpforgeError(f"--batch-size: {self.batch_size}; batch norm needs at least {MIN_LABELLED}")
        if not 0.0 <= self.strong_share <= 1.0:
            raise ExpforgeError(f"--strong-share: {self.strong_share} is not a share of the batch in [0, 1]")
        if not 0.0 <= self.ema < 1.0:
            raise ExpforgeError(f"--ema: {self.ema} is not a weight-averaging decay in [0, 1)")
        if not self.weight_decay >= 0.0:
            raise ExpforgeError(f"--weight-decay: {self.weight_decay} is not a decay ≥ 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ExpforgeError(f"--label-smoothing: {self.label_smoothing} is not in [0, 1)")
        if self.labels < 0:
            raise ExpforgeError(f"--labels: {self.labels} is not a count of digits (0 means all)")
        return self


@dataclass
class FineTuneResult:
    """The scored (best val epoch) network's figures, every epoch's val accuracy, and the data sizes used."""

    output: Path
    val_accuracy: float
    source_val_accuracy: float
    best_epoch: int
    val_accuracy_by_epoch: list[float]
    labelled_rows: int
    val_rows: int
    seconds: float
    settings: FineTuneSettings = field(default_factory=FineTuneSettings)
    architecture: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "val_accuracy": self.val_accuracy,
            "source_val_accuracy": self.source_val_accuracy,
            "gain": self.val_accuracy - self.source_val_accuracy,
            "best_epoch": self.best_epoch,
            "val_accuracy_by_epoch": self.val_accuracy_by_epoch,
            "labelled_rows": self.labelled_rows,
            "val_rows": self.val_rows,
            "seconds": self.seconds,
            "settings": asdict(self.settings),
            "architecture": self.architecture,
            "warnings": self.warnings,
        }


def labelled_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Rows of ``count`` train digits, stratified by class and nested: a larger count keeps every smaller one's rows.

    One permutation (from ``seed``, so every training seed sees the same digits) is walked per class, and each
    class gives its share of ``count`` (largest remainders first), so a learning curve compares label counts, not
    which digits happened to be drawn. ``count`` 0, or at least the split's size, means every row.
    """
    if count <= 0 or count >= len(labels):
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    shares = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - shares), kind="stable")[: count - int(shares.sum())]:
        shares[index] += 1
    chosen = [order[labels[order] == label][:share] for label, share in zip(classes, shares, strict=True)]
    return np.sort(np.concatenate(chosen))


def short_run_warning(settings: FineTuneSettings, rows: int) -> str | None:
    """A warning when the run has fewer optimiser steps than the weight average's horizon (1 / (1 - ema)): the
    scored weights would then still be mostly the starting model's, which looks like a fine-tune that did not help.
    """
    steps = settings.steps(rows)
    if settings.ema <= 0.0 or steps >= 1.0 / (1.0 - settings.ema):
        return None
    horizon = round(1.0 / (1.0 - settings.ema))
    return (
        f"--epochs: {settings.epochs} epoch(s) of {rows} digits are {steps} steps, fewer than the weight average's "
        f"horizon of {horizon} steps (--ema {settings.ema}); the scored weights stay close to the starting model's. "
        "Raise --epochs or lower --ema"
    )


def _splits(labelled: Path, settings: FineTuneSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept train digits and the val digits of ``labelled``; too few of either is a one-line error."""
    from expforge.train.torch_data import load_split

    try:
        images, labels = load_split(labelled, "train")
    except ExpforgeError as exc:
        raise ExpforgeError(f"--labelled: no labelled real train digits to fine-tune on ({exc})") from None
    kept = labelled_subset(labels, settings.labels, settings.subset_seed)
    if len(kept) < MIN_LABELLED:
        raise ExpforgeError(
            f"--labelled: {labelled} split 'train' has {len(kept)} labelled digit(s); fine-tuning needs at least "
            f"{MIN_LABELLED}"
        )
    try:
        val_images, val_labels = load_split(labelled, "val")
    except ExpforgeError as exc:
        raise ExpforgeError(f"--labelled: no real val digits to choose the epoch on ({exc})") from None
    if len(val_labels) == 0:
        raise ExpforgeError(f"--labelled: {labelled} has no val split rows; the epoch is chosen on real val digits")
    return images[kept], labels[kept], val_images, val_labels


def _average_into(averaged: Any, model: Any, decay: float) -> None:
    """One step of the weight average: ``averaged ← decay · averaged + (1 − decay) · model`` over the whole state,
    batch-norm statistics included (the averaged network is scored as it stands); integer buffers are copied."""
    import torch

    with torch.no_grad():
        for mean, value in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
            if mean.dtype.is_floating_point:
                mean.mul_(decay).add_(value, alpha=1 - decay)
            else:
                mean.copy_(value)


def fine_tune_network(
    model: Any,
    images: Any,
    labels: Any,
    val_images: Any,
    val_labels: Any,
    settings: FineTuneSettings,
) -> tuple[Any, float, list[float], int]:
    """Fine-tune ``model`` (on the tensors' device) and return the averaged network of the best val epoch, its
    val accuracy, every epoch's (rounded to 4 places) and that epoch (1-based). Seeded by ``settings.seed``: the
    same call gives the same weights."""
    import torch
    import torch.nn.functional as F

    from expforge.adapt.core import accuracy
    from expforge.adapt.methods import strong_view
    from expforge.train.augment_torch import draw_params, random_affine
    from expforge.train.digit_cnn import to_input

    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.steps(len(images)), pct_start=0.15
    )
    averaged = copy.deepcopy(model)
    best, best_epoch, best_state = -1.0, 0, copy.deepcopy(averaged.state_dict())
    by_epoch: list[float] = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for lo in range(0, len(order), settings.batch_size):
            rows = order[lo : lo + settings.batch_size]
            if len(rows) < MIN_LABELLED:
                continue
            pixels = to_input(images[rows])
            strong = int(len(rows) * settings.strong_share)
            weak = random_affine(pixels[strong:], draw_params(len(rows) - strong, generator))
            view = torch.cat([strong_view(pixels[:strong], generator), weak]) if strong else weak
            loss = F.cross_entropy(model(view), labels[rows], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            _average_into(averaged, model, settings.ema)
        val = accuracy(averaged, val_images, val_labels)
        by_epoch.append(round(val, 4))
        if val >= best:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(averaged.state_dict())
    averaged.load_state_dict(best_state)
    return averaged.eval(), best, by_epoch, best_epoch


def fine_tune_digit_cnn(
    model_path: Path | str,
    labelled: Path | str,
    output: Path | str,
    *,
    settings: FineTuneSettings | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> FineTuneResult:
    """Fine-tune ``model_path`` on ``labelled``'s train labels, choose the epoch on its val split, write ``output``."""
    import torch

    from expforge.adapt.core import accuracy, load_source_model
    from expforge.train.checkpoint import save_checkpoint
    from expforge.train.device import select_device
    from expforge.train.digit_cnn import KIND

    started = time.perf_counter()
    settings = (settings or FineTuneSettings()).validate()
    output = check_output(output, directory=False, inputs=(model_path,), overwrite=overwrite, flag="--output")
    dev = select_device(device)
    torch.manual_seed(settings.seed)  # dropout draws from the global generator
    model, payload = load_source_model(model_path, dev)
    arrays = _splits(Path(labelled), settings)
    images, labels, val_x, val_y = (torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in arrays)
    labels, val_y = labels.long(), val_y.long()
    warnings = [w for w in (short_run_warning(settings, len(labels)),) if w]
    for warning in warnings:
        log.warning("expforge: warning: %s", warning)
    architecture = dict(payload["architecture"])
    source_val = accuracy(model, val_x, val_y)
    tuned, best, by_epoch, best_epoch = fine_tune_network(model, images, labels, val_x, val_y, settings)
    result = FineTuneResult(
        output, best, source_val, best_epoch, by_epoch, len(labels), len(val_y),
        time.perf_counter() - started, settings, architecture, warnings,
    )  # fmt: skip
    params = {
        **dict(payload.get("params") or {}),
        "fine_tuned_from": str(model_path),
        "fine_tune": {
            "settings": asdict(settings),
            "labelled": str(labelled),
            "labelled_rows": len(labels),
            "selected_on": f"{labelled} (val split)",
            "best_epoch": best_epoch,
            "val_accuracy_by_epoch": by_epoch,
        },
    }
    save_checkpoint(
        output,
        kind=KIND,
        architecture=architecture,
        model={k: v.detach().cpu() for k, v in tuned.state_dict().items()},
        params=params,
        history=list(payload.get("history") or []),
        epoch=int(payload.get("epoch") or 0),
    )
    return result
