"""A deliberately shifted pair of digit domains and a tiny CNN trained on the first (importable by name).

The target is the same kind of digit at under a third of the contrast, so the source model does badly on it:
adaptation (without the target's labels) and fine-tuning (with them) each have something to recover.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from synthetic_digits import synthetic_items

from expforge.adapt.core import accuracy, load_source_model
from expforge.data.manifest import write_dataset
from expforge.train.torch_data import load_split
from expforge.train.torch_trainer import TorchTrainConfig, train_torch

CONTRAST = 0.3


def _dim(items: list) -> list:
    return [
        ((image.astype(np.float32) * CONTRAST).astype(np.uint8), label, split, extra)
        for image, label, split, extra in items
    ]


def shifted_domains(root: Path) -> dict[str, Path]:
    """A source dataset (train/val), a low-contrast target dataset (train/val/test) and ``model``, a tiny CNN
    trained on the source, all under ``root``."""
    write_dataset(root / "source", synthetic_items(20, "train", 1) + synthetic_items(5, "val", 2))
    target = synthetic_items(20, "train", 4) + synthetic_items(5, "val", 5) + synthetic_items(10, "test", 6)
    write_dataset(root / "target", _dim(target))
    config = TorchTrainConfig.from_dict(
        {"width": 4, "depth": 1, "hidden": 16, "batch_size": 32, "seed": 0, "augment": False, "lr": 0.01}
    )
    train_torch([root / "source"], root / "source", root / "source.pt", config=config, epochs=3, device="cpu")
    return {"root": root, "source": root / "source", "target": root / "target", "model": root / "source.pt"}


def split_accuracy(model_path: Path, dataset: Path, split: str = "test") -> float:
    """The accuracy of the checkpoint at ``model_path`` on ``dataset``'s ``split``."""
    model, _ = load_source_model(model_path, torch.device("cpu"))
    images, labels = load_split(dataset, split)
    return accuracy(model, torch.from_numpy(images), torch.from_numpy(labels).long())
