"""A write-ahead spool for rows bound for remote tracking sinks (BigQuery, Firestore, Vertex AI).

Why: a tracking outage must not lose metric rows. Every row is appended to a JSONL file *before* it is sent
and is only marked done once the sink acknowledged it, so rows survive a failed send, a stand-in that went
away, and even a crash of the process. The file is append-only — entry lines, then ``{"ack": [...]}`` lines —
so a crash mid-write can at worst cut the last line, never lose an earlier one. A live spool is held under an
exclusive ``flock``; a file nobody holds belongs to a process that died and may be adopted and resent
(``expforge runs flush-spool``). A fully acknowledged spool deletes itself.

Rows a sink refuses for good (a schema violation reported by the server) are moved to
``<spool>.rejected.jsonl`` with the reason, which is still on disk, and reported loudly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from expforge.errors import ExpforgeError

SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected.jsonl"


class Spool:
    """One process's spool file, locked for its lifetime. Entries are dicts; the spool adds ``seq``."""

    def __init__(self, path: Path, handle: IO[str], entries: dict[int, dict[str, Any]]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle
        self._entries = entries
        self._next = max(entries, default=-1) + 1

    @classmethod
    def create(cls, directory: Path | str, prefix: str = "gcp") -> Spool:
        """A new, empty spool file in ``directory`` (created if needed)."""
        directory = Path(directory).expanduser()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExpforgeError(f"EXPFORGE_TRACKING_SPOOL: cannot create {directory} ({exc.strerror})") from exc
        path = directory / f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        handle = path.open("a", encoding="utf-8")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return cls(path, handle, {})

    @classmethod
    def adopt(cls, path: Path) -> Spool | None:
        """Open an existing spool left by another process; ``None`` when that process still holds it (alive)
        or the file is gone."""
        try:
            handle = path.open("a+", encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        handle.seek(0)
        entries = _read_entries(handle.read(), path)
        handle.seek(0, os.SEEK_END)
        return cls(path, handle, entries)

    @property
    def rejected_path(self) -> Path:
        """Where rows refused for good are kept."""
        return self.path.with_name(self.path.name.removesuffix(SUFFIX) + REJECTED_SUFFIX)

    def __len__(self) -> int:
        return len(self._entries)

    def pending(self, sink: str | None = None) -> list[dict[str, Any]]:
        """Unacknowledged entries (of one sink), oldest first."""
        return [e for seq, e in sorted(self._entries.items()) if sink is None or e["sink"] == sink]

    def _write(self, lines: Iterable[dict[str, Any]]) -> None:
        if self._handle is None:
            raise ExpforgeError(f"{self.path}: spool already closed")
        text = "".join(json.dumps(line, sort_keys=True, allow_nan=True, default=str) + "\n" for line in lines)
        self._handle.write(text)
        self._handle.flush()

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append entries (each needs a ``sink`` key) to the file, then remember them as pending."""
        numbered = []
        for entry in entries:
            numbered.append({**entry, "seq": self._next})
            self._next += 1
        self._write(numbered)
        for entry in numbered:
            self._entries[entry["seq"]] = entry

    def done(self, seqs: Iterable[int]) -> None:
        """Mark entries delivered."""
        acked = [s for s in seqs if s in self._entries]
        if acked:
            self._write([{"ack": acked}])
            for seq in acked:
                del self._entries[seq]

    def reject(self, rejected: Iterable[tuple[dict[str, Any], str]]) -> None:
        """Move entries a sink refused for good to :attr:`rejected_path` (with the reason)."""
        items = list(rejected)
        if not items:
            return
        with self.rejected_path.open("a", encoding="utf-8") as handle:
            for entry, reason in items:
                handle.write(json.dumps({**entry, "reason": reason}, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done(entry["seq"] for entry, _ in items)

    def sync(self) -> None:
        """Force the file to disk (called before reporting rows as kept in the spool)."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Release the file: deleted when everything was acknowledged, else kept (and synced) for a resend."""
        if self._handle is None:
            return
        if not self._entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        else:
            self.sync()
        self._handle.close()
        self._handle = None


def _read_entries(text: str, path: Path) -> dict[int, dict[str, Any]]:
    entries: dict[int, dict[str, Any]] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            if number == len(lines):  # a crash cut the last line while it was being written
                break
            raise ExpforgeError(f"{path}:{number}: not a spool line (corrupt JSON)") from None
        if "ack" in item:
            for seq in item["ack"]:
                entries.pop(seq, None)
        else:
            entries[item["seq"]] = item
    return entries


def spool_files(directory: Path | str) -> list[Path]:
    """Spool files in ``directory`` (not the rejected ones), oldest first."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob(f"*{SUFFIX}") if not p.name.endswith(REJECTED_SUFFIX)]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def read_spool(path: Path | str) -> list[dict[str, Any]]:
    """The unacknowledged entries of a spool file (for inspection; does not lock)."""
    path = Path(path)
    return [e for _, e in sorted(_read_entries(path.read_text(encoding="utf-8"), path).items())]


@contextlib.contextmanager
def adopted_spools(directory: Path | str) -> Iterator[list[Spool]]:
    """Every spool in ``directory`` that no live process holds, locked for the block and closed after it."""
    spools = [s for s in (Spool.adopt(p) for p in spool_files(directory)) if s is not None]
    try:
        yield spools
    finally:
        for spool in spools:
            spool.close()
