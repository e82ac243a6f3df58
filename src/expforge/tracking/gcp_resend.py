"""Resending the rows of abandoned spools (``expforge runs flush-spool``): what a crashed task left behind."""

from __future__ import annotations

from pathlib import Path

from expforge.errors import ExpforgeError
from expforge.tracking.gcp import GcpTracker
from expforge.tracking.gcp_settings import GcpSettings


def resend_spool(settings: GcpSettings, directory: Path | str) -> tuple[int, int]:
    """Resend the rows of every abandoned spool in ``directory``; returns ``(delivered, still kept)``.

    A spool whose process is still alive is skipped (it is locked). Raises, naming the files, if rows remain.
    """
    from expforge.tracking.spool import adopted_spools

    delivered = remaining = 0
    kept: list[str] = []
    errors: list[str] = []
    with adopted_spools(directory) as spools:
        for spool in spools:
            before = len(spool)
            tracker = GcpTracker(settings, spool=spool)
            try:
                tracker.flush()
            except ExpforgeError as exc:
                errors.append(str(exc))
                kept.append(str(spool.path))
            delivered += before - len(spool)
            remaining += len(spool)
            for sink in tracker.sinks.values():
                sink.close()
    if errors:
        raise ExpforgeError(f"{remaining} rows still undelivered, kept in {', '.join(kept)} ({errors[0]})")
    return delivered, remaining
