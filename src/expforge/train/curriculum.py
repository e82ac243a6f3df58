"""Curriculum phases shared by every trainer: how several training datasets become the phases of a run.

``mixed`` pools every dataset into one phase; ``sequential`` trains on each in the order given (synthetic
first, then real), one phase each, named ``<index>:<dataset directory>`` so epoch histories say which data an
epoch saw. Both trainers use this, so their histories and phase names always agree; they also share the check
of the per-dataset fractions (``--train-fraction``), so both refuse the same bad input with the same line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from expforge.errors import ExpforgeError

MIXED_PHASE = "mixed"
#: The curriculum choices, under one name in every trainer's library API (``curriculum=``).
CURRICULA = (MIXED_PHASE, "sequential")


def check_curriculum(curriculum: str, flag: str = "--curriculum") -> str:
    """``curriculum`` when it is one of ``CURRICULA``; else one error line naming ``flag`` and the choices."""
    if curriculum not in CURRICULA:
        raise ExpforgeError(f"{flag}: unknown curriculum {curriculum!r}; expected {' or '.join(CURRICULA)}")
    return curriculum


def train_fractions_for(train: Sequence[Path | str], train_fractions: Sequence[float] | None) -> list[float]:
    """The fraction of each training dataset to use (all of each by default); one error line for a missing,
    extra or out-of-range value."""
    fractions = [1.0] * len(train) if train_fractions is None else [float(f) for f in train_fractions]
    if len(fractions) != len(train):
        raise ExpforgeError(
            f"--train-fraction: {len(fractions)} value(s) for {len(train)} --train dataset(s); give one per --train"
        )
    for path, fraction in zip(train, fractions, strict=True):
        if not 0.0 < fraction <= 1.0:
            raise ExpforgeError(f"--train-fraction: {fraction} for {path} is not in (0, 1]")
    return fractions


def curriculum_phases(
    stages: Sequence[tuple[Path, np.ndarray, np.ndarray]], curriculum: str
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(dataset path, inputs, labels)`` per training dataset → ``(phase name, inputs, labels)`` per phase."""
    if curriculum == MIXED_PHASE:
        return [
            (
                MIXED_PHASE,
                np.concatenate([inputs for _, inputs, _ in stages]),
                np.concatenate([labels for _, _, labels in stages]),
            )
        ]
    return [(f"{i}:{Path(path).name}", inputs, labels) for i, (path, inputs, labels) in enumerate(stages)]
