"""Curriculum phases shared by every trainer: how several training datasets become the phases of a run.

``mixed`` pools every dataset into one phase; ``sequential`` trains on each in the order given (synthetic
first, then real), one phase each, named ``<index>:<dataset directory>`` so epoch histories say which data an
epoch saw. Both trainers use this, so their histories and phase names always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

MIXED_PHASE = "mixed"


def curriculum_phases(
    stages: Sequence[tuple[Path, np.ndarray, np.ndarray]], schedule: str
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(dataset path, inputs, labels)`` per training dataset → ``(phase name, inputs, labels)`` per phase."""
    if schedule == MIXED_PHASE:
        return [
            (
                MIXED_PHASE,
                np.concatenate([inputs for _, inputs, _ in stages]),
                np.concatenate([labels for _, _, labels in stages]),
            )
        ]
    return [(f"{i}:{Path(path).name}", inputs, labels) for i, (path, inputs, labels) in enumerate(stages)]
