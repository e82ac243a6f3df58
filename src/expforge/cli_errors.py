"""The one policy for bad input at every entry point: one line on stderr, exit status 2.

Every front door — the ``expforge`` commands and their area sub-groups, the runner's ``run`` command, and each
component's executor inside its container — reports an :class:`~expforge.errors.ExpforgeError` the same way:
``expforge: error: <message>`` and status 2, never a traceback that buries the message in a task log. It lives
here, below every CLI module and the component adapter, so none of them has to import upward to use it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from expforge.errors import ExpforgeError

#: The exit status of bad input (usage errors), as for argument errors of the command-line parser.
EXIT_BAD_INPUT = 2

F = TypeVar("F", bound=Callable[..., Any])


def report(exc: ExpforgeError) -> None:
    """Print ``exc`` as the one ``expforge: error: ...`` line on stderr."""
    print(f"expforge: error: {exc}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def bad_input_exits() -> Iterator[None]:
    """Within the block, an ExpforgeError is reported as one line and ends the process with status 2."""
    try:
        yield
    except ExpforgeError as exc:
        report(exc)
        raise SystemExit(EXIT_BAD_INPUT) from None


def one_line_errors(func: F) -> F:
    """``func`` with :func:`bad_input_exits` around every call."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with bad_input_exits():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
