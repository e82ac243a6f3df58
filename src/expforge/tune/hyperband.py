"""The Hyperband schedule (Li et al., 2018): brackets of successive halving, computed once, ahead of time.

Given the most epochs one configuration may get (``R``, the *max resource*), the fewest worth measuring (the
*min resource*) and the reduction factor ``η``, Hyperband runs ``s_max + 1`` brackets,
``s_max = ⌊log_η(R / min)⌋``. Bracket ``s`` starts ``n = ⌈(s_max+1)/(s+1) · η^s⌉`` configurations at
``r = R·η^(−s)`` epochs; after each rung only the best ``⌊n_i/η⌋`` go on, with ``η`` times the epochs, until the
last rung trains its survivors for ``R`` epochs. Aggressive brackets try many configurations briefly; bracket 0
is plain random search at full budget — the hedge that makes Hyperband robust to misleading early results.

Because the schedule is fixed in advance it can be unrolled into a pipeline graph at compile time
(``expforge.pipelines.hpo``): one ``ParallelFor`` per rung. Epochs are integers: ``r_i = round(R·η^(i−s))``,
which is at least the min resource, strictly increasing within a bracket and exactly ``R`` at the last rung,
and depends only on ``s − i``, so every bracket trains to the same epoch levels.

Promoted trials are warm-started from their previous rung's checkpoint, so a rung costs ``n_i·(r_i − r_{i−1})``
epochs instead of Katib-style ``n_i·r_i``: :meth:`HyperbandSchedule.total_epochs` reports both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from expforge.errors import ExpforgeError


@dataclass(frozen=True)
class Rung:
    """One round of successive halving: ``configs`` trials trained up to ``epochs``; the best ``keep`` go on."""

    index: int
    configs: int
    epochs: int
    keep: int  # 0 on a bracket's final rung: nothing is promoted past R
    previous_epochs: int  # epochs a promoted trial already has (0 at rung 0)

    def cost(self, *, warm_start: bool = True) -> int:
        """Epochs this rung trains: with warm start only the new ones, ``configs·(epochs − previous_epochs)``."""
        return self.configs * (self.epochs - self.previous_epochs if warm_start else self.epochs)


@dataclass(frozen=True)
class Bracket:
    """Bracket ``s``: ``s + 1`` rungs of successive halving."""

    s: int
    rungs: tuple[Rung, ...]

    @property
    def configs(self) -> int:
        """Configurations sampled for this bracket (its first rung)."""
        return self.rungs[0].configs

    def total_epochs(self, *, warm_start: bool = True) -> int:
        """Epochs the bracket trains in all."""
        return sum(rung.cost(warm_start=warm_start) for rung in self.rungs)


@dataclass(frozen=True)
class HyperbandSchedule:
    """The brackets, most aggressive (largest ``s``) first — the order the driver runs them."""

    max_resource: int
    eta: int
    min_resource: int
    brackets: tuple[Bracket, ...]

    @property
    def s_max(self) -> int:
        """Index of the most aggressive bracket."""
        return self.brackets[0].s

    def bracket(self, s: int) -> Bracket:
        """Bracket ``s``."""
        for bracket in self.brackets:
            if bracket.s == s:
                return bracket
        raise KeyError(s)

    @property
    def configurations(self) -> int:
        """Distinct configurations tried over all brackets."""
        return sum(bracket.configs for bracket in self.brackets)

    @property
    def trials(self) -> int:
        """Trial runs (one per configuration per rung it reaches) — the number of trial tasks in a pipeline."""
        return sum(rung.configs for bracket in self.brackets for rung in bracket.rungs)

    def total_epochs(self, *, warm_start: bool = True) -> int:
        """Epochs the whole schedule trains; ``warm_start=False`` counts promoted trials restarting from scratch."""
        return sum(bracket.total_epochs(warm_start=warm_start) for bracket in self.brackets)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for the CLI, run records and benchmark reports)."""
        return {
            "max_resource": self.max_resource,
            "eta": self.eta,
            "min_resource": self.min_resource,
            "s_max": self.s_max,
            "configurations": self.configurations,
            "trials": self.trials,
            "total_epochs": self.total_epochs(warm_start=True),
            "total_epochs_without_warm_start": self.total_epochs(warm_start=False),
            "brackets": [
                {
                    "s": bracket.s,
                    "configs": bracket.configs,
                    "total_epochs": bracket.total_epochs(warm_start=True),
                    "rungs": [
                        {"rung": r.index, "configs": r.configs, "epochs": r.epochs, "keep": r.keep}
                        for r in bracket.rungs
                    ],
                }
                for bracket in self.brackets
            ],
        }

    def table(self) -> str:
        """A plain-text table of every rung and the epoch budget, for people."""
        lines = [
            f"Hyperband: R={self.max_resource} epochs, η={self.eta}, min={self.min_resource} "
            f"→ {len(self.brackets)} bracket(s), {self.configurations} configurations, {self.trials} trials",
            f"{'bracket':>7} {'rung':>4} {'configs':>7} {'epochs':>6} {'keep':>4} {'new epochs':>10}",
        ]
        for bracket in self.brackets:
            for rung in bracket.rungs:
                lines.append(
                    f"{bracket.s:>7} {rung.index:>4} {rung.configs:>7} {rung.epochs:>6} {rung.keep:>4} "
                    f"{rung.cost(warm_start=True):>10}"
                )
        lines.append(
            f"epoch budget: {self.total_epochs(warm_start=True)} with warm start "
            f"({self.total_epochs(warm_start=False)} if promoted trials restarted from scratch)"
        )
        return "\n".join(lines)


def _check_integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ExpforgeError(f"{name}: {value!r} is not an integer")
    return value


def validate_schedule_inputs(
    max_resource: object,
    eta: object,
    min_resource: object,
    *,
    names: Sequence[str] = ("max_resource", "eta", "min_resource"),
) -> tuple[int, int, int]:
    """Check R, η and the min resource; ``names`` are what errors call them (CLI flags, pipeline arguments)."""
    r_name, eta_name, min_name = names
    max_resource = _check_integer(max_resource, r_name)
    eta = _check_integer(eta, eta_name)
    min_resource = _check_integer(min_resource, min_name)
    if eta < 2:
        raise ExpforgeError(f"{eta_name}: {eta} is below 2; Hyperband needs η ≥ 2")
    if min_resource < 1:
        raise ExpforgeError(f"{min_name}: {min_resource} is below 1; a trial trains at least one epoch")
    if max_resource < min_resource:
        raise ExpforgeError(
            f"{r_name}: {max_resource} is smaller than {min_name} {min_resource}; R must be at least the min resource"
        )
    return max_resource, eta, min_resource


def _log_floor(ratio: Fraction, eta: int) -> int:
    """``⌊log_η(ratio)⌋`` exactly (floating-point logs misround exact powers such as log_3(243))."""
    s = 0
    while Fraction(eta) ** (s + 1) <= ratio:
        s += 1
    return s


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def hyperband_schedule(max_resource: int, eta: int = 3, min_resource: int = 1) -> HyperbandSchedule:
    """The Hyperband brackets for max resource ``R`` (epochs), reduction factor ``η`` and the min resource."""
    max_resource, eta, min_resource = validate_schedule_inputs(max_resource, eta, min_resource)
    s_max = _log_floor(Fraction(max_resource, min_resource), eta)
    brackets = []
    for s in range(s_max, -1, -1):
        n = math.ceil(Fraction(s_max + 1, s + 1) * eta**s)
        rungs = []
        previous = 0
        for i in range(s + 1):
            configs = n // eta**i
            epochs = _round_half_up(Fraction(max_resource, eta ** (s - i)))
            keep = configs // eta if i < s else 0
            rungs.append(Rung(index=i, configs=configs, epochs=epochs, keep=keep, previous_epochs=previous))
            previous = epochs
        # Invariants the pipeline builder relies on (they follow from n ≥ η^s and r_{i+1} ≥ 2·r_i ≥ r_i + 1).
        assert rungs[-1].epochs == max_resource and rungs[0].epochs >= min_resource
        assert all(a.epochs < b.epochs and a.keep == b.configs >= 1 for a, b in zip(rungs, rungs[1:], strict=False))
        brackets.append(Bracket(s=s, rungs=tuple(rungs)))
    return HyperbandSchedule(max_resource, eta, min_resource, tuple(brackets))
