"""The digit CNN as an ``nn.Module`` (this module imports torch; ``digit_cnn.build_model`` imports it on first use).

A real class at module level rather than one built inside a function, so type checkers see ``embed`` and callers
(the classifier loader, drift checks) are checked against it.
"""

from __future__ import annotations

import torch
from torch import nn

from expforge.train.digit_cnn import NUM_CLASSES, CNNSpec


class DigitCNN(nn.Module):
    """Conv blocks → flatten → hidden (ReLU) → dropout → 10 logits."""

    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        channels_in = 1
        for block in range(spec.depth):
            channels = spec.width * 2**block
            layers += [
                nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels_in = channels
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(spec.feature_size(), spec.hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.hidden, NUM_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N×hidden) of N×1×28×28 inputs scaled to [0, 1]."""
        features: torch.Tensor = self.hidden(self.features(x))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N×10)."""
        logits: torch.Tensor = self.classifier(self.dropout(self.embed(x)))
        return logits
