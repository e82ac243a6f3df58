"""Refuse anything but a regular file where a step reads one (a model, an image), before it is opened.

Why before opening: opening a FIFO blocks forever, and a directory or a device gives a traceback (or hangs)
instead of a line. Each caller words its refusals for what it reads (a model file, an image listed in a
manifest); the check itself is the same everywhere, so it is written once here.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from expforge.errors import ExpforgeError


@dataclass(frozen=True)
class Refusals:
    """What each refusal says after ``<path>: ``; ``unreadable`` is followed by `` (<the OS's reason>)``."""

    missing: str
    unreadable: str
    directory: str
    special: str


def require_regular_file(path: Path | str, refusals: Refusals, *, shown: Path | str | None = None) -> None:
    """Raise a one-line :class:`ExpforgeError` unless ``path`` is (a link to) a regular file; ``shown`` is the
    name the message gives (default: ``path``, e.g. the listed name of a resolved path)."""
    where = path if shown is None else shown
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ExpforgeError(f"{where}: {refusals.missing}") from None
    except OSError as exc:
        raise ExpforgeError(f"{where}: {refusals.unreadable} ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ExpforgeError(f"{where}: {refusals.directory}")
    if not stat.S_ISREG(mode):
        raise ExpforgeError(f"{where}: {refusals.special}")
