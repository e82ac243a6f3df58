"""Typed trial records: what one Hyperband or random-search trial is asked to do, and what it reports.

A trial crosses process boundaries several times — the ``hyperband-trial`` task writes its record as a KFP output
parameter, ``select-top`` reads the rung's records back (after a trip through a protobuf ``Struct``, where every
number is a double), the in-process driver builds the same records in a loop, and the dashboard reads them from
``records.json``. One frozen dataclass pair with one versioned JSON form keeps all of them on the same shape; a
record that does not fit is one clear error naming the file and the field, never a ``KeyError`` three steps later.

* :class:`TrialItem` — the work: trial id, configuration, which search (:data:`HYPERBAND` or
  :data:`RANDOM_SEARCH`, an explicit marker rather than a magic bracket number), bracket and rung (Hyperband
  only), the epoch target and the schedule's full length ``max_epochs``, and the checkpoint it resumed from.
* :class:`TrialRecord` — the item plus the per-epoch history, the final metrics, the epochs trained in this
  trial, where its checkpoint went, and the resource limits the task had.

JSON form (``version`` 1)::

    {"version": 1,
     "item": {"trial_id": "b2-c05", "config": {...}, "search": "hyperband", "bracket": 2, "rung": 1,
              "epochs": 3, "max_epochs": 9, "resume_from": "<checkpoint uri or path>" | null},
     "metrics": {"val_accuracy": 0.91, "val_loss": 0.30}, "history": [{...per epoch...}],
     "epochs_trained": 2, "checkpoint": "<uri or path>" | null,
     "resources": {"cpu": "2", "memory": "4G", "accelerator_type": "", "accelerator_count": 0} | null}

Non-finite metrics are written as ``null`` (JSON and ``Struct`` values have no ``NaN``) and read back as ``None``;
:meth:`TrialRecord.metric` treats both as "no result", which ranks last.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError

RECORD_VERSION = 1
HYPERBAND = "hyperband"
RANDOM_SEARCH = "random-search"
SEARCHES = (HYPERBAND, RANDOM_SEARCH)

#: What the ``hyperband-trial`` component's ``bracket`` parameter carries for a random-search trial. The pipeline
#: YAML is the contract and keeps this value; the component turns it into ``search=RANDOM_SEARCH, bracket=None``
#: at once, so no record and no reader ever sees it.
RANDOM_SEARCH_BRACKET_PARAMETER = -1


def finite_json(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists.

    Trial records travel as JSON and as protobuf ``Struct`` values, where ``NaN``/``Infinity`` are not allowed;
    a diverged trial's metric becomes ``null`` (tracking keeps ``NaN`` as a string instead, see
    :func:`expforge.tracking.base.json_safe`, a different choice under a different name).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


class _Reader:
    """Reads fields of one JSON object, naming ``source`` and the field's path in every error."""

    def __init__(self, data: object, source: str, where: str = "") -> None:
        self.source, self.where = source, where
        if not isinstance(data, Mapping):
            raise ExpforgeError(f"{source}: {where or 'record'}: expected a JSON object, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> ExpforgeError:
        return ExpforgeError(f"{self.source}: {self.name(key)}: {problem}")

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise self.fail(key, "missing")
        return self.data[key]

    def string(self, key: str, *, optional: bool = False) -> str | None:
        value = self.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not value and not optional):
            raise self.fail(key, f"{value!r} is not a non-empty string")
        return value

    def integer(self, key: str, *, optional: bool = False) -> int | None:
        value = self.get(key)
        if value is None and optional:
            return None
        # Struct values carry every number as a double: 3 arrives as 3.0.
        if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
            raise self.fail(key, f"{value!r} is not an integer")
        return int(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.get(key)
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected a JSON object")
        return value

    def nested(self, key: str) -> _Reader:
        return _Reader(self.get(key), self.source, self.name(key))


@dataclass(frozen=True)
class TrialItem:
    """One trial to run: which configuration, where in the search, how far, and from which checkpoint.

    ``bracket`` is ``None`` exactly for random search. ``config`` is a plain dict (JSON-ready); treat it as
    read-only like the rest of the item.
    """

    trial_id: str
    config: dict[str, Any]
    search: str = HYPERBAND
    bracket: int | None = None
    rung: int = 0
    epochs: int = 1
    max_epochs: int = 1
    resume_from: str | None = None

    def __post_init__(self) -> None:
        where = f"trial {self.trial_id}"
        if self.search not in SEARCHES:
            raise ExpforgeError(f"{where}: search: {self.search!r} is not one of {', '.join(SEARCHES)}")
        if (self.bracket is None) != (self.search == RANDOM_SEARCH):
            raise ExpforgeError(
                f"{where}: bracket: {self.bracket!r}; a hyperband trial needs a bracket, random search has none"
            )
        if self.epochs < 1 or self.max_epochs < self.epochs:
            raise ExpforgeError(f"{where}: epochs: {self.epochs} is not within 1..max_epochs ({self.max_epochs})")

    @classmethod
    def from_loop_item(
        cls,
        loop_item: object,
        *,
        bracket: int | None,
        rung: int,
        epochs: int,
        max_epochs: int,
        resume_from: str | None = None,
        source: str = "trial",
    ) -> TrialItem:
        """An item from a pipeline loop item ``{"trial_id": ..., "config": {...}}`` (what ``sample-configs`` and
        ``select-top``'s ``survivors`` hand out); ``bracket=None`` makes it a random-search trial."""
        reader = _Reader(loop_item, source)
        return cls(
            trial_id=str(reader.string("trial_id")),
            config=dict(reader.mapping("config")),
            search=RANDOM_SEARCH if bracket is None else HYPERBAND,
            bracket=bracket,
            rung=rung,
            epochs=epochs,
            max_epochs=max_epochs,
            resume_from=resume_from,
        )

    @property
    def final(self) -> bool:
        """Trained for the schedule's full length (a bracket's last rung; every random-search trial)."""
        return self.epochs >= self.max_epochs

    def loop_item(self) -> dict[str, Any]:
        """The pipeline loop item of this trial (the next rung's input when it is promoted)."""
        return {"trial_id": self.trial_id, "config": dict(self.config)}

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``item`` in a record."""
        return {
            "trial_id": self.trial_id,
            "config": finite_json(self.config),
            "search": self.search,
            "bracket": self.bracket,
            "rung": self.rung,
            "epochs": self.epochs,
            "max_epochs": self.max_epochs,
            "resume_from": self.resume_from,
        }

    @classmethod
    def from_json(cls, data: object, *, source: str = "trial item", where: str = "") -> TrialItem:
        """Parse :meth:`to_json`'s form; a missing or mistyped field is one error naming ``source`` and it."""
        reader = _Reader(data, source, where)
        search = reader.get("search")
        if search not in SEARCHES:
            raise reader.fail("search", f"{search!r} is not one of {', '.join(SEARCHES)}")
        return cls(
            trial_id=str(reader.string("trial_id")),
            config=dict(reader.mapping("config")),
            search=search,
            bracket=reader.integer("bracket", optional=search == RANDOM_SEARCH),
            rung=int(reader.integer("rung") or 0),
            epochs=int(reader.integer("epochs") or 0),
            max_epochs=int(reader.integer("max_epochs") or 0),
            resume_from=reader.string("resume_from", optional=True),
        )


@dataclass(frozen=True)
class Resources:
    """The limits the trial's task ran under (as the pipeline set them; empty when not set)."""

    cpu: str = ""
    memory: str = ""
    accelerator_type: str = ""
    accelerator_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "accelerator_type": self.accelerator_type,
            "accelerator_count": self.accelerator_count,
        }

    @classmethod
    def from_json(cls, data: object, *, source: str, where: str = "resources") -> Resources:
        reader = _Reader(data, source, where)
        return cls(
            cpu=str(reader.string("cpu", optional=True) or ""),
            memory=str(reader.string("memory", optional=True) or ""),
            accelerator_type=str(reader.string("accelerator_type", optional=True) or ""),
            accelerator_count=int(reader.integer("accelerator_count") or 0),
        )


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class TrialRecord:
    """What one trial reported: its item, final metrics, per-epoch history, checkpoint and resources.

    ``epochs_trained`` counts the epochs *this* trial ran (a resumed trial continues from its checkpoint, so it is
    ``epochs`` minus the epochs it resumed at). ``checkpoint`` is the checkpoint's artifact URI in a pipeline and
    its path in the in-process driver; :func:`expforge.tune.promotion.promote` pairs records with checkpoints by it.
    """

    item: TrialItem
    metrics: dict[str, float | None] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    epochs_trained: int = 0
    checkpoint: str | None = None
    resources: Resources | None = None

    @property
    def trial_id(self) -> str:
        return self.item.trial_id

    def metric(self, name: str) -> float | None:
        """The final value of metric ``name``; ``None`` when missing or not finite (a diverged trial)."""
        return _finite(self.metrics.get(name))

    def to_json(self, *, history: bool = True) -> dict[str, Any]:
        """The versioned JSON form (``history=False`` leaves the per-epoch rows out, for artifact metadata)."""
        return {
            "version": RECORD_VERSION,
            "item": self.item.to_json(),
            "metrics": finite_json(self.metrics),
            "history": finite_json(list(self.history)) if history else [],
            "epochs_trained": self.epochs_trained,
            "checkpoint": self.checkpoint,
            "resources": None if self.resources is None else self.resources.to_json(),
        }

    @classmethod
    def from_json(cls, data: object, *, source: str = "trial record") -> TrialRecord:
        """Parse :meth:`to_json`'s form. An unknown ``version`` or a missing field is one error naming
        ``source`` (a file, or a component input) and the field."""
        reader = _Reader(data, source)
        version = reader.get("version")
        if version != RECORD_VERSION:
            raise reader.fail("version", f"{version!r} is not a trial-record version this expforge reads (1)")
        metrics = reader.mapping("metrics")
        for name, value in metrics.items():
            if value is not None and _finite(value) is None:
                raise reader.fail(f"metrics.{name}", f"{value!r} is not a number")
        history = reader.get("history")
        if not isinstance(history, list) or not all(isinstance(row, Mapping) for row in history):
            raise reader.fail("history", "expected a list of per-epoch objects")
        resources = reader.get("resources")
        return cls(
            item=TrialItem.from_json(reader.get("item"), source=source, where="item"),
            metrics={str(name): _finite(value) for name, value in metrics.items()},
            history=tuple(dict(row) for row in history),
            epochs_trained=int(reader.integer("epochs_trained") or 0),
            checkpoint=reader.string("checkpoint", optional=True),
            resources=None if resources is None else Resources.from_json(resources, source=source),
        )

    def summary(self, metric: str = "val_accuracy") -> dict[str, Any]:
        """A flat one-line view (leaderboards, artifact metadata, logs)."""
        return finite_json(
            {
                "trial_id": self.trial_id,
                "search": self.item.search,
                "bracket": self.item.bracket,
                "rung": self.item.rung,
                "epochs": self.item.epochs,
                "config": self.item.config,
                metric: self.metric(metric),
            }
        )


def records_from_json(data: object, *, source: str) -> list[TrialRecord]:
    """A list of records (``records.json``, a collected component input); errors name the list index."""
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise ExpforgeError(f"{source}: expected a list of trial records")
    return [TrialRecord.from_json(item, source=f"{source}[{index}]") for index, item in enumerate(data)]


def write_records(path: Path | str, records: Sequence[TrialRecord]) -> None:
    """Write ``records`` as a JSON list (the caller stages ``path`` when it must appear atomically)."""
    Path(path).write_text(json.dumps([record.to_json() for record in records], indent=1), encoding="utf-8")


def read_records(path: Path | str) -> list[TrialRecord]:
    """Read a ``records.json`` written by :func:`write_records`; bad content is one error naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpforgeError(f"{path}: trial records file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpforgeError(f"{path}: cannot read trial records ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ExpforgeError(f"{path}: not valid JSON (line {exc.lineno})") from None
    return records_from_json(data, source=str(path))
