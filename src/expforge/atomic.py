"""Write outputs to a temporary sibling and rename, so a failed step never leaves half-written results."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from expforge.errors import ExpforgeError


def _ensure_writable_parent(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExpforgeError(f"{target}: cannot create parent directory ({exc.strerror})") from exc
    if not os.access(parent, os.W_OK):
        raise ExpforgeError(f"{target}: parent directory {parent} is not writable")
    return parent


@contextlib.contextmanager
def staged_directory(target: Path | str, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` only if the block succeeds.

    The staging directory lives beside ``target`` (same filesystem) so the final step is a rename.
    An existing ``target`` is replaced when ``replace`` is true, else it is an error. An existing but
    empty ``target`` (e.g. a KFP output directory prepared by the orchestrator) is always replaced.
    """
    target = Path(target)
    parent = _ensure_writable_parent(target)
    if target.exists() and not replace and any(target.iterdir()):
        raise ExpforgeError(f"{target}: output directory already exists and is not empty")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink():
        backup = parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, backup)
        os.rename(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        if target.exists():
            target.unlink()
        os.rename(staging, target)


@contextlib.contextmanager
def staged_file(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it is renamed over ``target`` when the block succeeds.

    The temporary name keeps ``target``'s suffix, for writers that insist on one (KFP's compiler does).
    """
    target = Path(target)
    parent = _ensure_writable_parent(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, target)
