"""Google Cloud label rules (Vertex AI pipeline jobs, models, ...), checked before a request is sent.

Why here: a bad label is rejected by Vertex only after the pipeline was compiled and uploaded; checking it up
front gives one clear line naming the label. The same rules serve the Vertex stand-in, so a test that passes
locally does not send a request Vertex would refuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from expforge.errors import ExpforgeError

MAX_LABELS = 64
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def label_problem(labels: Mapping[str, str]) -> str | None:
    """What is wrong with ``labels`` (one phrase), or None when Vertex would accept them."""
    if len(labels) > MAX_LABELS:
        return f"{len(labels)} labels; at most {MAX_LABELS} are allowed"
    for key, value in labels.items():
        if not _KEY.fullmatch(key):
            return (
                f"label key {key!r}: expected a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"
            )
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            return f"label {key}={value!r}: values are up to 63 lowercase letters, digits, '_' or '-'"
    return None


def check_labels(labels: Mapping[str, str], *, flag: str = "--label") -> dict[str, str]:
    """Return ``labels`` as a dict, or raise ExpforgeError naming ``flag`` and the offending label."""
    problem = label_problem(labels)
    if problem:
        raise ExpforgeError(f"{flag}: {problem}")
    return dict(labels)
