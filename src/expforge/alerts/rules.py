"""Alert rules: ``METRIC OP THRESHOLD`` (``accuracy<0.9``, ``drift_share>0.3``), parsed before a step does work.

A rule is checked against the metric names the step will produce, so a typo (``acuracy<0.9``) or an operator
the grammar lacks (``accuracy=>0.9``) fails the step up front as one line naming the rule, instead of a rule
that silently never fires.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from expforge.errors import ExpforgeError

#: Operators, longest first so ``<=`` is not read as ``<``.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RULE = re.compile(rf"^\s*([A-Za-z_][\w.]*)\s*([^\w\s.+-]+)\s*({_NUMBER})\s*$")


@dataclass(frozen=True)
class AlertRule:
    """One rule: it *fires* when ``value OP threshold`` holds."""

    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def fires(self, value: float) -> bool:
        """Whether ``value`` breaks the rule (a NaN value always does: a metric that cannot be computed is news)."""
        return math.isnan(value) or OPERATORS[self.op](value, self.threshold)


def parse_rule(text: str, metrics: Collection[str], *, flag: str = "--alert") -> AlertRule:
    """Parse ``text``; ``metrics`` are the names the step produces (an unknown one is refused)."""
    match = _RULE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ExpforgeError(
            f"{flag}: rule {text!r} does not parse; expected METRIC OP NUMBER, e.g. 'accuracy<0.9' "
            f"(operators: {' '.join(OPERATORS)})"
        )
    metric, op, number = match.groups()
    if op not in OPERATORS:
        raise ExpforgeError(f"{flag}: rule {text!r} has unknown operator {op!r}; expected one of {' '.join(OPERATORS)}")
    if metric not in metrics:
        raise ExpforgeError(
            f"{flag}: rule {text!r} names unknown metric {metric!r}; this step reports {', '.join(sorted(metrics))}"
        )
    return AlertRule(metric, op, float(number))


def parse_rules(texts: Iterable[str] | None, metrics: Collection[str], *, flag: str = "--alert") -> list[AlertRule]:
    """Every rule of ``texts`` (``None``: no rules)."""
    if texts is None:
        return []
    if isinstance(texts, str):
        raise ExpforgeError(f"{flag}: expected a list of rules, got the string {texts!r}")
    return [parse_rule(text, metrics, flag=flag) for text in texts]


def fired(rules: Iterable[AlertRule], values: Mapping[str, float | None]) -> list[tuple[AlertRule, float]]:
    """The rules that fire on ``values``, each with the value that made it fire (a metric the step could not
    compute this time — missing, or ``None`` as an undefined AUC is — counts as NaN, which fires)."""
    pairs = [(rule, _as_number(values.get(rule.metric))) for rule in rules]
    return [(rule, value) for rule, value in pairs if rule.fires(value)]


def _as_number(value: float | None) -> float:
    return math.nan if value is None else float(value)
