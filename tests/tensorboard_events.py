"""Read TensorBoard event files back with TensorBoard's own reader (tests' helper)."""

from __future__ import annotations

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from expforge.train.tensorboard_log import tag_for


def read_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """Tag → step → value, as TensorBoard loads them."""
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]
    }


def assert_matches_history(logdir: Path, history_csv: Path, step_column: str, columns: list[str]) -> None:
    """Every listed column of the history CSV is in the event files at its step (float32 precision)."""
    scalars = read_scalars(logdir)
    rows = list(csv.DictReader(history_csv.open(encoding="utf-8")))
    assert rows, f"{history_csv} has no rows"
    for column in columns:
        series = scalars[tag_for(column)]
        expected = {int(row[step_column]): float(row[column]) for row in rows}
        assert set(series) == set(expected), column
        for step, value in expected.items():
            assert abs(series[step] - value) <= 1e-6 * max(1.0, abs(value)), (column, step, series[step], value)
