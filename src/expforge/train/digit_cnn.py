"""A small convolutional network for 28×28 digits, described by a plain spec that checkpoints carry.

The spec (``CNNSpec``) is the *architecture*: a checkpoint stores ``spec.architecture()`` and a loader rebuilds
exactly that network, so a model file never depends on the code that trained it keeping the same defaults.
Block ``i`` has ``width·2^i`` channels (two 3×3 convolutions with batch norm, then 2×2 max pooling): the usual
shape for MNIST-sized inputs, where doubling channels as the map halves keeps the cost per block similar.

``embed(x)`` returns the penultimate features (the hidden layer, after ReLU, before dropout): drift checks
compare these between synthetic and real digits, which says more than comparing pixels.

The ``nn.Module`` itself lives in ``digit_cnn_net``, which imports torch; ``build_model`` imports it on first use,
so importing this module (and the config that uses the spec) stays cheap and works without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expforge.errors import ExpforgeError

if TYPE_CHECKING:
    import torch

    from expforge.train.digit_cnn_net import DigitCNN

IMAGE_SIZE = 28
NUM_CLASSES = 10
MAX_DEPTH = 4  # 28 → 14 → 7 → 3 → 1: a fifth pooling would leave nothing to pool
PIXEL_SCALE = 1.0 / 255.0
KIND = "digit-cnn"


@dataclass(frozen=True)
class CNNSpec:
    """The network's shape. ``dropout`` is part of it because it is a layer of the module."""

    width: int = 32
    depth: int = 2
    hidden: int = 128
    dropout: float = 0.25

    def validate(self, name: Callable[[str], str] | None = None) -> CNNSpec:
        """Raise a one-line error for a spec no network can be built from; ``name`` labels a field
        (default ``config.<field>``)."""
        label = name or (lambda key: f"config.{key}")
        if self.width < 1:
            raise ExpforgeError(f"{label('width')}: {self.width} is not a positive number of channels")
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ExpforgeError(
                f"{label('depth')}: {self.depth} is not in 1–{MAX_DEPTH} (a 28×28 input halves per block)"
            )
        if self.hidden < 1:
            raise ExpforgeError(f"{label('hidden')}: {self.hidden} is not a positive layer size")
        if not 0.0 <= self.dropout < 1.0:
            raise ExpforgeError(f"{label('dropout')}: {self.dropout} is not in [0, 1)")
        return self

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint records (and checks on load): every value that changes the module."""
        return {
            "width": self.width,
            "depth": self.depth,
            "hidden": self.hidden,
            "dropout": float(self.dropout),
            "in_channels": 1,
            "image_size": IMAGE_SIZE,
            "num_classes": NUM_CLASSES,
        }

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any], *, source: str = "checkpoint") -> CNNSpec:
        """Rebuild the spec a checkpoint was saved with (inverse of :meth:`architecture`)."""
        expected = cls().architecture()
        fixed = {k: v for k, v in expected.items() if k not in ("width", "depth", "hidden", "dropout")}
        for key, value in fixed.items():
            if architecture.get(key) != value:
                raise ExpforgeError(
                    f"{source}: architecture {key}={architecture.get(key)!r}; this network expects {value!r}"
                )
        try:
            spec = cls(
                width=int(architecture["width"]),
                depth=int(architecture["depth"]),
                hidden=int(architecture["hidden"]),
                dropout=float(architecture["dropout"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ExpforgeError(f"{source}: architecture {architecture!r} is not a digit-cnn spec") from None
        return spec.validate(lambda key: f"{source}: architecture {key}")

    def feature_size(self) -> int:
        """Length of the flattened map after the last block."""
        size = IMAGE_SIZE
        for _ in range(self.depth):
            size //= 2
        return self.width * 2 ** (self.depth - 1) * size * size


def build_model(spec: CNNSpec) -> DigitCNN:
    """A freshly initialised network (initialisation draws from torch's global RNG: seed it first)."""
    from expforge.train.digit_cnn_net import DigitCNN

    return DigitCNN(spec.validate())


def to_input(images: torch.Tensor) -> torch.Tensor:
    """N×28×28 ``uint8`` pixels (any device) → N×1×28×28 ``float32`` in [0, 1], the network's input."""
    return images.unsqueeze(1).float().mul_(PIXEL_SCALE)
