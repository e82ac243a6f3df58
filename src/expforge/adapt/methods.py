"""The two adaptation methods, each a function of a model and unlabeled target images, never of target labels.

* **AdaBN** (batch-norm statistics adaptation): the convolutions learnt on font digits stay, but each batch-norm
  layer's running mean and variance are re-estimated on the real digits. Font and handwritten digits differ most
  in low-level statistics (stroke width, contrast, blur), which is exactly what those statistics normalise.
* **Self-training with consistency**: the model labels the clean real digits itself; the confident ones
  (softmax ≥ ``threshold``) become targets for a *randomly warped* copy of the same digit, so the network learns
  to give one answer under the augmentation rather than to repeat its own mistakes on the exact pixels
  (FixMatch's weak/strong split, with the affine warp of the trainer as the strong view). Pseudo-labels are
  refreshed every round and the batch-norm statistics re-estimated at the end.

Both operate in place on a ``torch.nn.Module`` on the given device; the caller copies the model first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BATCH = 256


def _batches(images: torch.Tensor, size: int) -> list[slice]:
    return [slice(lo, min(lo + size, len(images))) for lo in range(0, len(images), size)]


def adapt_batch_norm(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Replace every batch-norm layer's running statistics by those of ``images`` (N×28×28 ``uint8``).

    ``momentum=None`` makes batch norm keep a cumulative average, so the estimate is the plain mean over all
    batches whatever their number; the momenta are put back afterwards.
    """
    import torch
    from torch import nn

    from expforge.train.digit_cnn import to_input

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for index in _batches(images, BATCH):
            model(to_input(images[index]))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()
    return model


@dataclass(frozen=True)
class SelfTrainSettings:
    """Rounds of pseudo-labelling and the fine-tuning inside each; ``threshold`` is the confidence kept."""

    rounds: int = 3
    epochs_per_round: int = 1
    threshold: float = 0.9
    lr: float = 3e-4
    batch_size: int = 128
    seed: int = 0


def pseudo_labels(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, confidence) of every image, in eval mode on the clean pixels."""
    import torch

    from expforge.train.digit_cnn import to_input

    model.eval()
    labels, confidence = [], []
    with torch.inference_mode():
        for index in _batches(images, 2048):
            probs = torch.softmax(model(to_input(images[index])).float(), dim=1)
            top, label = probs.max(dim=1)
            labels.append(label)
            confidence.append(top)
    return torch.cat(labels), torch.cat(confidence)


def balanced_confident(labels: torch.Tensor, confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Rows whose confidence reaches ``threshold``, at most the median class's count per predicted class (the
    most confident first): the easy classes (1s, 0s) are confident first, and training on them alone would pull
    every other digit towards them."""
    import torch

    confident = confidence >= threshold
    per_class = [(confident & (labels == c)).nonzero().flatten() for c in range(int(labels.max()) + 1)]
    counts = sorted(len(rows) for rows in per_class if len(rows))
    if not counts:
        return torch.empty(0, dtype=torch.int64, device=labels.device)
    cap = counts[len(counts) // 2]
    kept = [rows[confidence[rows].argsort(descending=True)[:cap]] for rows in per_class if len(rows)]
    return torch.cat(kept).sort().values


def self_train_round(
    model: torch.nn.Module, images: torch.Tensor, settings: SelfTrainSettings, round_index: int
) -> dict[str, float]:
    """One round: label, keep the confident, train the warped copies on them; returns the round's figures."""
    import torch
    import torch.nn.functional as F

    from expforge.train.augment_torch import draw_params, random_affine
    from expforge.train.digit_cnn import to_input

    labels, confidence = pseudo_labels(model, images)
    keep = balanced_confident(labels, confidence, settings.threshold)
    figures = {"kept": float(len(keep)), "kept_share": len(keep) / max(1, len(images)), "loss": float("nan")}
    if len(keep) == 0:
        return figures
    generator = torch.Generator().manual_seed(settings.seed * 1_000 + round_index)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    model.train()
    losses: list[float] = []
    for _ in range(settings.epochs_per_round):
        order = keep[torch.randperm(len(keep), generator=generator).to(keep.device)]
        for batch in range(math.ceil(len(order) / settings.batch_size)):
            rows = order[batch * settings.batch_size : (batch + 1) * settings.batch_size]
            if len(rows) < 2:  # batch norm needs two samples in train mode
                continue
            uniforms = draw_params(len(rows), generator)
            strong = random_affine(to_input(images[rows]), uniforms)
            loss = F.cross_entropy(model(strong), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    figures["loss"] = sum(losses) / len(losses) if losses else float("nan")
    return figures
