"""Search spaces for hyperparameter tuning, declared in YAML or TOML and sampled deterministically.

A space is a mapping of parameter name → distribution::

    lr:        {distribution: log-uniform, low: 1.0e-4, high: 1.0e-2}
    width:     {distribution: choice, values: [16, 32, 64]}
    dropout:   {distribution: uniform, low: 0.0, high: 0.5}
    depth:     {distribution: int, low: 1, high: 3}          # inclusive on both ends

Parameter names are the trainer's config fields (for the digit CNN: ``TorchTrainConfig`` of
``expforge.train.torch_trainer``), so a sampled configuration is passed to the trainer unchanged.

Sampling is deterministic: the same ``(seed, salt)`` gives the same configurations on every machine and Python
version (NumPy's ``SeedSequence`` fed with a SHA-256 of the salt, never Python's salted ``hash``), while
different salts — one per Hyperband bracket, one for random search — give independent streams. That is what
lets a pipeline sample a bracket's configurations inside a container and still be reproducible.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from expforge.errors import ExpforgeError

DISTRIBUTIONS = ("choice", "uniform", "log-uniform", "int")
_RANGE_KEYS = frozenset({"distribution", "low", "high"})
_CHOICE_KEYS = frozenset({"distribution", "values"})

# The default space of the digit CNN (keys are TorchTrainConfig fields). Kept in code so the pipeline can use
# it as a compile-time default without reading package data; default_space.yaml is the same space as a file
# (tests check they agree) for `expforge sample-configs --space` and for users to copy.
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"distribution": "log-uniform", "low": 3.0e-4, "high": 1.0e-2},
    "weight_decay": {"distribution": "log-uniform", "low": 1.0e-5, "high": 1.0e-2},
    "width": {"distribution": "choice", "values": [8, 16, 32]},
    "dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5},
    "batch_size": {"distribution": "choice", "values": [64, 128, 256]},
    "optimizer": {"distribution": "choice", "values": ["adamw", "sgd"]},
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Parameter:
    """One tunable parameter: a distribution and its bounds (or its choices)."""

    name: str
    distribution: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value as a plain Python value (JSON- and TOML-safe: no NumPy scalars)."""
        if self.distribution == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.distribution == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))  # type: ignore[arg-type]
        if self.distribution == "uniform":
            return float(rng.uniform(self.low, self.high))  # type: ignore[arg-type]
        # log-uniform: uniform in log space, so each decade is equally likely (learning rates, weight decay).
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The declaration this parameter was parsed from (normalised)."""
        if self.distribution == "choice":
            return {"distribution": "choice", "values": list(self.values)}
        return {"distribution": self.distribution, "low": self.low, "high": self.high}


def _parse_parameter(name: str, spec: object, source: str) -> Parameter:
    where = f"{source}: {name}"
    if not isinstance(spec, Mapping):
        raise ExpforgeError(f"{where}: expected a mapping like {{distribution: uniform, low: 0, high: 1}}")
    distribution = spec.get("distribution")
    if distribution not in DISTRIBUTIONS:
        shown = "missing" if distribution is None else repr(distribution)
        raise ExpforgeError(f"{where}.distribution: {shown} is not one of {', '.join(DISTRIBUTIONS)}")
    allowed = _CHOICE_KEYS if distribution == "choice" else _RANGE_KEYS
    unknown = sorted(str(key) for key in spec if key not in allowed)
    if unknown:
        expected = ", ".join(sorted(allowed - {"distribution"}))
        raise ExpforgeError(f"{where}: unknown key(s) {', '.join(unknown)} for {distribution}; expected {expected}")
    if distribution == "choice":
        values = spec.get("values")
        if not isinstance(values, Sequence) or isinstance(values, str | bytes):
            raise ExpforgeError(f"{where}.values: expected a list of choices")
        if not values:
            raise ExpforgeError(f"{where}.values: empty; a choice needs at least one value")
        for value in values:
            if not isinstance(value, str | int | float | bool):
                raise ExpforgeError(f"{where}.values: {value!r} is not a string, number or boolean")
        # Pipeline parameters travel as protobuf Struct values, where every number is a double: 16 arrives as 16.0.
        return Parameter(name, "choice", values=tuple(_integral(value) for value in values))
    for key in ("low", "high"):
        if key not in spec:
            raise ExpforgeError(f"{where}.{key}: missing; {distribution} needs low and high")
        if not _is_number(spec[key]):
            raise ExpforgeError(f"{where}.{key}: {spec[key]!r} is not a finite number")
    low, high = spec["low"], spec["high"]
    if distribution == "int":
        for key, value in (("low", low), ("high", high)):
            if not float(value).is_integer():
                raise ExpforgeError(f"{where}.{key}: {value!r} is not an integer; int needs integer bounds")
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if low >= high:
        raise ExpforgeError(f"{where}.low {low:g} ≥ {name}.high {high:g}; low must be below high")
    if distribution == "log-uniform" and low <= 0:
        raise ExpforgeError(f"{where}.low: {low:g} is not positive; log-uniform needs 0 < low < high")
    return Parameter(name, distribution, low=low, high=high)


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _salt_words(salt: str) -> list[int]:
    digest = hashlib.sha256(salt.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, len(digest), 4)]


@dataclass(frozen=True)
class SearchSpace:
    """Parameters in name order (the sampling order); ``source`` (a file name) prefixes every error message."""

    parameters: tuple[Parameter, ...]
    source: str = "search space"

    @classmethod
    def from_dict(cls, data: object, *, source: str = "search space") -> SearchSpace:
        """Parse and validate a ``{name: {distribution: ...}}`` mapping (one clear error per problem)."""
        if not isinstance(data, Mapping):
            raise ExpforgeError(f"{source}: expected a mapping of parameter name to distribution")
        if not data:
            raise ExpforgeError(f"{source}: no parameters; declare at least one (e.g. lr: {{distribution: ...}})")
        parameters = []
        for name, spec in data.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ExpforgeError(f"{source}: parameter name {name!r} is not an identifier")
            parameters.append(_parse_parameter(name, spec, source))
        # Sampling order is by name, not declaration: a space that went through a pipeline parameter (a protobuf
        # Struct, which does not keep key order) must draw the same configurations as the file it came from.
        return cls(tuple(sorted(parameters, key=lambda parameter: parameter.name)), source)

    @classmethod
    def load(cls, path: Path | str) -> SearchSpace:
        """Read a ``.yaml``/``.yml`` or ``.toml`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ExpforgeError(f"{path}: search space file not found") from None
        except OSError as exc:
            raise ExpforgeError(f"{path}: cannot read search space ({exc.strerror})") from None
        if path.suffix in (".yaml", ".yml"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f" at line {mark.line + 1}" if mark is not None else ""
                raise ExpforgeError(f"{path}: not valid YAML{line}") from None
        elif path.suffix == ".toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ExpforgeError(f"{path}: not valid TOML ({exc})") from None
        else:
            raise ExpforgeError(f"{path}: a search space must be a .yaml, .yml or .toml file")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def default(cls) -> SearchSpace:
        """The digit CNN's default space (:data:`DEFAULT_SEARCH_SPACE`)."""
        return cls.from_dict(DEFAULT_SEARCH_SPACE, source="default search space")

    @property
    def names(self) -> list[str]:
        """Parameter names (sorted: the order values are drawn in)."""
        return [parameter.name for parameter in self.parameters]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The normalised declaration (what a pipeline parameter carries)."""
        return {parameter.name: parameter.to_dict() for parameter in self.parameters}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration: a value for every parameter, drawn in name order."""
        return {parameter.name: parameter.sample(rng) for parameter in self.parameters}

    def sample_configurations(self, n: int, seed: int, salt: str = "") -> list[dict[str, Any]]:
        """``n`` configurations; the same ``(seed, salt)`` always gives the same list, each salt its own stream.

        The list for ``n`` is a prefix of the list for ``n + 1``, so asking for more trials never changes the
        ones already sampled.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ExpforgeError(f"count: {n!r} is not a non-negative integer")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ExpforgeError(f"seed: {seed!r} is not a non-negative integer")
        rng = np.random.default_rng(np.random.SeedSequence([seed, *_salt_words(salt)]))
        return [self.sample(rng) for _ in range(n)]


def trial_id(prefix: str, index: int, count: int) -> str:
    """``b2-c05``: the id a configuration keeps through every rung it is promoted to (zero-padded, sortable)."""
    width = max(2, len(str(max(count - 1, 0))))
    return f"{prefix}-c{index:0{width}d}" if prefix else f"c{index:0{width}d}"


def sample_trials(space: SearchSpace, count: int, seed: int, salt: str, id_prefix: str) -> list[dict[str, Any]]:
    """``[{"trial_id": ..., "config": {...}}, ...]``: the loop items of a bracket's first rung (or random search)."""
    configs = space.sample_configurations(count, seed, salt)
    return [{"trial_id": trial_id(id_prefix, i, count), "config": config} for i, config in enumerate(configs)]


def bracket_salt(bracket: int) -> str:
    """The sampling salt of Hyperband bracket ``s`` (independent streams per bracket)."""
    return f"hyperband/bracket-{bracket}"


def bracket_prefix(bracket: int) -> str:
    """The trial-id prefix of Hyperband bracket ``s`` (``b2``)."""
    return f"b{bracket}"


RANDOM_SEARCH_SALT = "random-search"
RANDOM_SEARCH_PREFIX = "rs"
