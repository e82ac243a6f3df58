"""Tiny learnable digit images for tests (importable by name from any test module)."""

from __future__ import annotations

import numpy as np


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
