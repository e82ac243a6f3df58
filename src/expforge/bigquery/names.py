"""Project, dataset and location names as BigQuery accepts them, checked before any request is sent.

Why: BigQuery refuses a bad dataset name only after a round trip, with a message about the request rather
than the flag; checking here gives one line naming the flag and the rule.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from expforge.errors import ExpforgeError


class _NameRule(NamedTuple):
    """A name BigQuery requires: its pattern, what ``required (...)`` asks for, and the form it ``is not``."""

    pattern: re.Pattern[str]
    needed: str
    form: str

    def check(self, value: str | None, flag: str) -> str:
        """``value`` stripped, or one line naming ``flag``."""
        if not value or not value.strip():
            raise ExpforgeError(f"{flag}: required ({self.needed})")
        value = value.strip()
        if not self.pattern.fullmatch(value):
            raise ExpforgeError(f"{flag}: {value!r} is not {self.form}")
        return value


# Project IDs (6-30 chars) and legacy domain-scoped IDs (example.com:my-project).
_PROJECT = _NameRule(
    re.compile(r"(?:[a-z][a-z0-9.-]{0,62}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"),
    "the Google Cloud project ID, e.g. my-project",
    "a project ID (6-30 lowercase letters, digits, hyphens; starts with a letter)",
)
# Dataset names: letters, digits and underscores, at most 1024 (BigQuery's rule).
_DATASET = _NameRule(
    re.compile(r"[A-Za-z0-9_]{1,1024}"),
    "the BigQuery dataset, e.g. expforge",
    "a BigQuery dataset name (letters, digits and underscores, at most 1024)",
)
# Multi-regions (US, EU) and regions (us-central1, europe-west4).
_LOCATION = re.compile(r"(?:US|EU|[a-z]+(?:-[a-z]+)+[0-9]+)", re.IGNORECASE)


def check_project(project: str | None, flag: str = "--project") -> str:
    """``project`` when it is a Google Cloud project ID."""
    return _PROJECT.check(project, flag)


def check_dataset(dataset: str | None, flag: str = "--dataset") -> str:
    """``dataset`` when BigQuery would accept it as a dataset name."""
    return _DATASET.check(dataset, flag)


def check_location(location: str | None, flag: str = "--location") -> str | None:
    """``location`` (US, EU or a region such as us-central1), or None for BigQuery's default."""
    if location is None:
        return None
    if not _LOCATION.fullmatch(location.strip()):
        raise ExpforgeError(f"{flag}: {location!r} is not a BigQuery location (US, EU or a region like us-central1)")
    return location.strip()
