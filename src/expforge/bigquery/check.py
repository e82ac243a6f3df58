"""What the tracker says when the dashboard tables are missing: run ``expforge bigquery setup``.

Why a module of its own with no expforge imports but ``errors``: the tracking layer (below ``cloud`` and
``bigquery``) calls it, so it must not pull the setup code (or anything above tracking) in.
"""

from __future__ import annotations

import re

from expforge.errors import ExpforgeError

_TABLE = re.compile(r"[Tt]able[: ]+`?([\w.-]+)")


def missing_tables_error(project: str, dataset: str, detail: str = "") -> ExpforgeError:
    """The one-line error for a missing dataset/table, naming the command that creates them (short enough to
    survive the tracker's summary of undelivered rows)."""
    found = _TABLE.search(detail)
    what = f"table {found.group(1)}" if found else f"dataset {project}.{dataset} or its tables"
    return ExpforgeError(
        f"run `expforge bigquery setup --project {project} --dataset {dataset}` first: BigQuery {what} "
        "does not exist (the tracker creates nothing)"
    )
