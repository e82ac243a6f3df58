"""Project, dataset and location names as BigQuery accepts them, checked before any request is sent.

Why: BigQuery refuses a bad dataset name only after a round trip, with a message about the request rather
than the flag; checking here gives one line naming the flag and the rule.
"""

from __future__ import annotations

import re

from expforge.errors import ExpforgeError

# Project IDs (6-30 chars) and legacy domain-scoped IDs (example.com:my-project).
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]{0,62}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
# Dataset names: letters, digits and underscores, at most 1024 (BigQuery's rule).
_DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}")
# Multi-regions (US, EU) and regions (us-central1, europe-west4).
_LOCATION = re.compile(r"(?:US|EU|[a-z]+(?:-[a-z]+)+[0-9]+)", re.IGNORECASE)


def check_project(project: str | None, flag: str = "--project") -> str:
    """``project`` when it is a Google Cloud project ID."""
    if not project or not project.strip():
        raise ExpforgeError(f"{flag}: required (the Google Cloud project ID, e.g. my-project)")
    project = project.strip()
    if not _PROJECT.fullmatch(project):
        raise ExpforgeError(
            f"{flag}: {project!r} is not a project ID (6-30 lowercase letters, digits, hyphens; starts with a letter)"
        )
    return project


def check_dataset(dataset: str | None, flag: str = "--dataset") -> str:
    """``dataset`` when BigQuery would accept it as a dataset name."""
    if not dataset or not dataset.strip():
        raise ExpforgeError(f"{flag}: required (the BigQuery dataset, e.g. expforge)")
    dataset = dataset.strip()
    if not _DATASET.fullmatch(dataset):
        raise ExpforgeError(
            f"{flag}: {dataset!r} is not a BigQuery dataset name (letters, digits and underscores, at most 1024)"
        )
    return dataset


def check_location(location: str | None, flag: str = "--location") -> str | None:
    """``location`` (US, EU or a region such as us-central1), or None for BigQuery's default."""
    if location is None:
        return None
    if not _LOCATION.fullmatch(location.strip()):
        raise ExpforgeError(f"{flag}: {location!r} is not a BigQuery location (US, EU or a region like us-central1)")
    return location.strip()
