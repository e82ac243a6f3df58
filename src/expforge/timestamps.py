"""The one timestamp format of run records, tracking rows and task logs.

UTC with microseconds and a ``Z`` (``2026-12-01T09:30:00.123456Z``): it sorts correctly as text, and BigQuery,
Firestore and ``datetime.fromisoformat`` all read it. The runner's ``run.json`` and the tracking store used to
define it separately; one definition keeps them comparable.
"""

from __future__ import annotations

import datetime as dt

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    """The current UTC time in :data:`ISO_FORMAT`."""
    return dt.datetime.now(dt.UTC).strftime(ISO_FORMAT)
