"""Cron expressions as Vertex AI schedules accept them (unix-cron, five fields, optional time zone prefix).

Why parse here: Vertex rejects a bad cron only when the schedule is created, with a message about the request;
``expforge schedule create --cron`` checks it first and names the field that is wrong. The Vertex stand-in
uses the same check, so a test that passes locally does not send a cron Vertex would refuse.
"""

from __future__ import annotations

import re
import zoneinfo

from expforge.errors import ExpforgeError

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+")


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ValueError(f"field {name}: {text!r} is not a number{' or name' if names else ''}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"field {name}: {number} is outside {low}-{high}")
    return number


def _check_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise ValueError(f"field {name}: step {step!r} is not a positive number")
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        first = _value(start, name, low, high, names)
        if dash and _value(end, name, low, high, names) < first:
            raise ValueError(f"field {name}: range {base!r} runs backwards")


def cron_problem(cron: str) -> str | None:
    """What is wrong with ``cron`` (one phrase), or None when it is a valid unix-cron expression."""
    text = cron.strip()
    match = _PREFIX.match(text)
    if match:
        try:
            zoneinfo.ZoneInfo(match.group(1))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"time zone {match.group(1)!r} is not an IANA time zone"
        text = text[match.end() :]
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    try:
        for value, (name, low, high, names) in zip(fields, FIELDS, strict=True):
            _check_field(value, name, low, high, names)
    except ValueError as exc:
        return str(exc)
    return None


def check_cron(cron: str, flag: str = "--cron") -> str:
    """``cron`` stripped, or one ExpforgeError naming the flag and what is wrong."""
    problem = cron_problem(cron)
    if problem:
        raise ExpforgeError(f"{flag} {cron!r}: {problem}")
    return cron.strip()
