"""Per-epoch scalars as TensorBoard event files, so a local run can be opened in TensorBoard like a Vertex one.

One :class:`ScalarLog` is kept open for the whole training run (one event file per run, not one per epoch) and
fed the trainer's own per-epoch (or per-evaluation) record through the trainer's callback: the numbers in the
event file are the numbers of the history CSV, never recomputed. Field names map onto TensorBoard tags by one
rule (:func:`tag_for`): ``train_loss`` → ``train/loss``, ``val_accuracy`` → ``val/accuracy``, a throughput
(``*_per_second``) → ``throughput/...``, the learning rate → ``lr``; text fields (the curriculum phase) are skipped.

The writer is TensorBoard's own ``EventFileWriter`` (what torch's ``SummaryWriter`` wraps), so the scikit-learn
trainer needs no torch: only the ``tensorboard`` package, in the trainers' extras.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from expforge.errors import ExpforgeError

#: Fields of a history row that give its position, not a value to plot.
STEP_FIELDS = ("epoch", "step")

#: Where a trainer writes its event files, relative to its output directory (and the component's output name).
TENSORBOARD_DIR = "tensorboard"


def tag_for(field: str) -> str:
    """The TensorBoard tag of a history field (the inverse is unambiguous: tests map tags back to CSV columns)."""
    for prefix in ("train_", "val_"):
        if field.startswith(prefix):
            return f"{prefix[:-1]}/{field[len(prefix) :]}"
    if field.endswith("_per_second"):
        return f"throughput/{field}"
    if field == "lr":
        return "lr"
    return f"time/{field}" if field == "seconds" else f"other/{field}"


def _scalars(row: Any) -> tuple[int, dict[str, float]]:
    """The step and the finite numeric fields of one history row (a dataclass)."""
    if not dataclasses.is_dataclass(row) or isinstance(row, type):
        raise ExpforgeError(f"tensorboard: expected a history row (dataclass), got {type(row).__name__}")
    values = dataclasses.asdict(row)
    step_field = next((name for name in STEP_FIELDS if name in values), None)
    if step_field is None:
        raise ExpforgeError(f"tensorboard: history row {type(row).__name__} has no 'epoch' or 'step' field")
    scalars = {
        tag_for(name): float(value)
        for name, value in values.items()
        if name != step_field
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }
    return int(values[step_field]), scalars


class ScalarLog:
    """A kept TensorBoard writer over ``logdir``: :meth:`record` one history row per epoch, then :meth:`close`."""

    def __init__(self, logdir: Path | str) -> None:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise ExpforgeError(
                f"tensorboard: the 'tensorboard' package is required to write event files to {logdir} ({exc})"
            ) from exc
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise ExpforgeError(f"--tensorboard: {self.logdir} exists and is not a directory")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.logdir))

    def record(self, row: Any) -> None:
        """Write every numeric field of ``row`` at its epoch/step; flushed so a live TensorBoard sees it."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        step, scalars = _scalars(row)
        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
