"""How to train the digit CNN, as one validated dataclass that JSON, YAML, TOML, the CLI and checkpoints share.

The config is everything about *how* to train and nothing about data or budget, so a checkpoint can compare
the config it was trained with against the one a resume asks for, field by field, and Hyperband can sample it
from a search space (``expforge.tune.space``) and pass it on unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expforge.errors import ExpforgeError
from expforge.train.digit_cnn import CNNSpec

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("cosine", "constant", "onecycle")


def or_list(names: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: the expected values in an error line."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


#: Fields added after the first checkpoints were written, with the value those checkpoints trained with.
LATER_FIELDS: dict[str, Any] = {"cpu_bf16": False}

#: ``cpu_bf16``: ``"auto"`` (bfloat16 autocast where the CPU has native bfloat16 units), or an explicit bool.
CPU_BF16_AUTO = "auto"

_INT_FIELDS = ("width", "depth", "hidden", "batch_size", "seed")
_FLOAT_FIELDS = ("dropout", "lr", "weight_decay", "momentum", "label_smoothing")
_BOOL_FIELDS = ("augment", "amp", "nesterov")
_STR_FIELDS = ("optimizer", "lr_schedule")


@dataclass
class TorchTrainConfig:
    """Everything about *how* to train, independent of data and budget (``epochs`` is an argument).

    ``schedule_epochs`` is the LR-schedule horizon (per stage in a sequential curriculum); ``None`` means
    ``epochs``. Set it to the largest budget when a run will be resumed to more epochs later (Hyperband rungs).
    ``amp`` is mixed precision on a GPU. ``cpu_bf16`` is bfloat16 autocast on a CPU with native bfloat16 units
    (AMX, AVX512-BF16): about twice the images per second there, still deterministic and exactly resumable, with
    real-test accuracy within seed noise of float32 (bench/reference/trainer-throughput.json). ``"auto"`` (the
    default) uses it where those units exist (float32 elsewhere, where torch would emulate bfloat16 slower than
    float32); ``False`` is always float32; ``True`` asks for it (still ignored without the units). A run records
    what it resolved to (``resolve_cpu_bf16``) and the precision it used. Invalid values raise at construction.
    """

    width: int = 32
    depth: int = 2
    dropout: float = 0.25
    hidden: int = 128
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    batch_size: int = 128
    lr_schedule: str = "cosine"
    schedule_epochs: int | None = None
    augment: bool = True
    label_smoothing: float = 0.0
    amp: bool = True
    seed: int = 0
    nesterov: bool = True
    cpu_bf16: bool | str = CPU_BF16_AUTO

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, labels: Mapping[str, str] | None = None) -> TorchTrainConfig:
        """Raise a one-line error naming the first invalid field (``labels`` maps fields to CLI flag names)."""

        def name(key: str) -> str:
            return (labels or {}).get(key, f"config.{key}")

        if self.optimizer not in OPTIMIZERS:
            raise ExpforgeError(
                f"{name('optimizer')}: unknown optimizer {self.optimizer!r}; expected {or_list(OPTIMIZERS)}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ExpforgeError(
                f"{name('lr_schedule')}: unknown schedule {self.lr_schedule!r}; expected {or_list(LR_SCHEDULES)}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ExpforgeError(f"{name('lr')}: {self.lr} is not a positive learning rate")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ExpforgeError(f"{name('weight_decay')}: {self.weight_decay} is not a weight decay ≥ 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ExpforgeError(f"{name('momentum')}: {self.momentum} is not in [0, 1)")
        if self.batch_size < 1:
            raise ExpforgeError(f"{name('batch_size')}: {self.batch_size} is not a positive batch size")
        if self.schedule_epochs is not None and self.schedule_epochs < 1:
            raise ExpforgeError(f"{name('schedule_epochs')}: {self.schedule_epochs} is not a positive number of epochs")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ExpforgeError(f"{name('label_smoothing')}: {self.label_smoothing} is not in [0, 1)")
        if self.seed < 0:
            raise ExpforgeError(f"{name('seed')}: {self.seed} is negative; expected an integer ≥ 0")
        if not (isinstance(self.cpu_bf16, bool) or self.cpu_bf16 == CPU_BF16_AUTO):
            raise ExpforgeError(f"{name('cpu_bf16')}: {self.cpu_bf16!r} is not true, false or {CPU_BF16_AUTO!r}")
        self.spec().validate(name)
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> TorchTrainConfig:
        """Build from a JSON/YAML/TOML mapping: unknown keys and wrongly typed or invalid values are one-line
        errors. Numbers written as strings (YAML reads ``1e-3`` as text) are accepted for float fields."""
        if not isinstance(values, Mapping):
            raise ExpforgeError(f"config: expected a mapping of settings, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]

        def name(key: str) -> str:
            return (labels or {}).get(key, f"config.{key}")

        for key in values:
            if key not in known:
                raise ExpforgeError(f"config: unknown key {key!r}; expected some of {', '.join(known)}")
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            if key in _INT_FIELDS or (key == "schedule_epochs" and value is not None):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not an integer")
            elif key in _FLOAT_FIELDS:
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        raise ExpforgeError(f"{name(key)}: {value!r} is not a number") from None
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not a number")
                value = float(value)
            elif key in _BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not true or false")
            elif key == "cpu_bf16" and not (isinstance(value, bool) or value == CPU_BF16_AUTO):
                raise ExpforgeError(f"{name(key)}: {value!r} is not true, false or {CPU_BF16_AUTO!r}")
            elif key in _STR_FIELDS and not isinstance(value, str):
                raise ExpforgeError(f"{name(key)}: {value!r} is not a string")
            coerced[key] = value
        config = cls.__new__(cls)
        for field in dataclasses.fields(cls):
            default = field.default
            setattr(config, field.name, coerced.get(field.name, default))
        return config.validate(labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, the inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    def spec(self) -> CNNSpec:
        """The network these settings describe."""
        return CNNSpec(width=self.width, depth=self.depth, hidden=self.hidden, dropout=self.dropout)

    def resolve_cpu_bf16(self, device: torch.device, checkpoint: Mapping[str, Any] | None = None) -> TorchTrainConfig:
        """A copy with ``cpu_bf16`` decided: an explicit bool stays; ``"auto"`` becomes whether bfloat16 autocast
        runs on ``device``, or, when resuming, what the ``checkpoint`` config trained with: a resume continues one
        run and must not switch precision half way (say, a float32 checkpoint from before this default)."""
        if isinstance(self.cpu_bf16, bool):
            return self
        if checkpoint is not None:
            decided = bool({**LATER_FIELDS, **checkpoint}["cpu_bf16"])
        else:
            from expforge.train.device import cpu_has_bf16_units

            decided = device.type == "cpu" and cpu_has_bf16_units()
        return dataclasses.replace(self, cpu_bf16=decided)

    def horizon(self, epochs: int) -> int:
        """LR-schedule horizon in epochs (per stage): ``schedule_epochs``, else ``epochs``."""
        return self.schedule_epochs if self.schedule_epochs is not None else epochs
