"""Helpers shared by the Vertex AI stand-in's services: ids, timestamps, pages, resource names.

Vertex names resources ``projects/{project}/locations/{location}/{collection}/{id}`` with numeric ids it
chooses; clients page lists with ``page_token``. These helpers keep each service small and uniform.
"""

from __future__ import annotations

import datetime
import itertools
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from expforge.standins.vertex_grpc import Service, invalid

if TYPE_CHECKING:
    from expforge.standins.vertex_operations import Operations

T = TypeVar("T")

_LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")


class NumericIds:
    """Vertex-style numeric ids (long decimal strings), unique within one stand-in."""

    def __init__(self, start: int = 1_000_000_000_000_000_000) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> str:
        """A fresh id."""
        with self._lock:
            return str(next(self._counter))


def now() -> datetime.datetime:
    """The current UTC time (proto-plus turns it into a Timestamp)."""
    return datetime.datetime.now(datetime.UTC)


def check_location(parent: str, what: str = "parent") -> str:
    """``parent`` must be ``projects/P/locations/L`` (as the SDK sends it); return it."""
    if not _LOCATION.match(parent):
        raise invalid(f"{what}: expected projects/PROJECT/locations/LOCATION, got {parent!r}")
    return parent


def child_id(requested: str, ids: NumericIds) -> str:
    """The id the client asked for (``*_id`` fields) or a fresh numeric one."""
    if requested and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", requested):
        raise invalid(f"resource id {requested!r}: expected lowercase letters, digits and hyphens (at most 128)")
    return requested or ids.next()


def paginate(items: Sequence[T], page_size: int, page_token: str) -> tuple[list[T], str]:
    """One page of ``items`` and the token of the next page ('' when this is the last)."""
    start = int(page_token) if page_token.isdigit() else 0
    size = page_size if page_size > 0 else 100
    page = list(items[start : start + size])
    following = start + size
    return page, str(following) if following < len(items) else ""


def copy_message(message: T) -> T:
    """A deep copy of a proto-plus message (stored state never aliases a request or a response)."""
    cls: Any = type(message)
    return cls.deserialize(cls.serialize(message))


class ResourceService(Service):
    """A service that keeps resources: the stand-in's shared long-running ``Operations``, one re-entrant lock
    (a handler may call another under it) and Vertex-style numeric ids counted from ``first_id``."""

    def __init__(self, operations: Operations, first_id: int) -> None:
        self._operations = operations
        self._lock = threading.RLock()
        self._ids = NumericIds(first_id)
