"""Shared fixtures: small real datasets built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from docker_gate import docker_unavailable, require_images

from expforge.data.manifest import write_dataset


def synthetic_items(n_per_class: int, split: str, seed: int = 0) -> list[tuple[np.ndarray, int, str, dict[str, str]]]:
    """Tiny 28×28 images whose bright square's position encodes the label (so models can learn it)."""
    rng = np.random.default_rng(seed)
    items = []
    for label in range(10):
        for _ in range(n_per_class):
            image = rng.integers(0, 30, size=(28, 28), dtype=np.uint8)
            row, col = divmod(label, 5)
            image[4 + row * 10 : 12 + row * 10, 2 + col * 5 : 6 + col * 5] = 255
            items.append((image, label, split, {}))
    return items


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-class dataset with train/val/test splits written through the real writer."""
    output = tmp_path_factory.mktemp("tiny") / "dataset"
    items = synthetic_items(6, "train", 1) + synthetic_items(3, "val", 2) + synthetic_items(3, "test", 3)
    write_dataset(output, items, info={"source": "test"})
    return output


REPO = Path(__file__).resolve().parents[1]
IMAGES_JSON = REPO / "build" / "images.json"


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """``build/images.json`` (from ``make images``), with every image checked to exist in a reachable daemon."""
    try:
        images = json.loads(IMAGES_JSON.read_text())
    except (OSError, ValueError):
        docker_unavailable(f"{IMAGES_JSON} missing or unreadable: run `make images`")
    require_images(list(images.values()))
    return images
