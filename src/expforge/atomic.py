"""Write outputs to a temporary sibling and rename, so a failed step never leaves half-written results — and
never destroy what the step did not create.

Two promises, both checked here so every step keeps them the same way:

* **Nothing half-written.** A step writes into a staging directory (or file) beside the target and renames it
  into place only when the block succeeds; a failure, a full disk included, removes the staging copy.
* **Nothing clobbered.** An existing non-empty output directory, a file where a directory goes (or the
  reverse), a symbolic link, and a new output inside one of the step's inputs are refused unless the caller
  asks to ``overwrite`` (the CLI's ``--overwrite``). An output that *is* or *contains* an input, or that
  already exists inside one, is refused always: replacing it would delete or change the data the step is
  reading. Device files, FIFOs and sockets are never replaced. Paths are compared after resolving symbolic
  links, so ``data/../data`` or a link to the input is the input. An existing *empty* directory is taken over:
  that is what a KFP orchestrator prepares for an output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from expforge.errors import ExpforgeError

#: Write errors that mean "the file system cannot take this", reported as one line rather than a traceback.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}

InputPaths = Iterable[Path | str | None]


def _ensure_writable_parent(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExpforgeError(f"{target}: cannot create parent directory ({exc.strerror})") from exc
    if not parent.is_dir():
        raise ExpforgeError(f"{target}: parent {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise ExpforgeError(f"{target}: parent directory {parent} is not writable")
    return parent


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device file"


def check_inputs_apart(target: Path | str, inputs: InputPaths, *, overwrite: bool = False, flag: str = "") -> None:
    """Refuse an output that is or contains one of ``inputs``, that exists inside one, or (without ``overwrite``)
    that would be created inside one."""
    target = Path(target)
    label = f"{flag} {target}" if flag else str(target)
    real_target = _real(target)
    for given in inputs:
        if given is None or str(given) == "" or "://" in str(given):
            continue
        real_input = _real(given)
        if real_target == real_input or real_input.is_relative_to(real_target):
            raise ExpforgeError(
                f"{label}: is or contains the input {given}; writing there would delete that input "
                "(choose another output path)"
            )
        if real_target.is_relative_to(real_input):
            if os.path.lexists(target):
                raise ExpforgeError(
                    f"{label}: lies inside the input {given} and exists; replacing it would change that input "
                    "(choose another output path)"
                )
            if not overwrite:
                raise ExpforgeError(
                    f"{label}: lies inside the input {given}; choose a path outside it (or pass --overwrite to add "
                    "it there anyway)"
                )


def check_output(
    target: Path | str,
    *,
    directory: bool,
    inputs: InputPaths = (),
    overwrite: bool = False,
    flag: str = "",
) -> Path:
    """Validate an output path before any work starts (see the module docstring); return it as a ``Path``.

    Steps call this first, so a refused output costs nothing; the staged writers check again when they commit,
    in case something appeared there meanwhile.
    """
    target = Path(target)
    label = f"{flag} {target}" if flag else str(target)
    check_inputs_apart(target, inputs, overwrite=overwrite, flag=flag)
    try:
        info = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):  # a missing parent is reported when it is created
        return target
    except OSError as exc:
        raise ExpforgeError(f"{label}: cannot inspect ({exc.strerror})") from None
    mode = info.st_mode
    hint = "pass --overwrite to replace it"
    if stat.S_ISLNK(mode):
        if not overwrite:
            raise ExpforgeError(f"{label}: is a symbolic link; {hint} (the link is replaced, not what it points to)")
        return target
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise ExpforgeError(f"{label}: is a {_kind(mode)}; expected a path for a new {_wanted(directory)}")
    if directory:
        if stat.S_ISDIR(mode):
            if not overwrite and _has_entries(target):
                raise ExpforgeError(f"{label}: output directory already exists and is not empty; {hint}")
        elif not overwrite:
            raise ExpforgeError(f"{label}: is a regular file where an output directory goes; {hint}")
    else:
        if stat.S_ISDIR(mode):
            raise ExpforgeError(f"{label}: is a directory; expected a file path")
        if not overwrite:
            raise ExpforgeError(f"{label}: file already exists; {hint}")
    return target


def _wanted(directory: bool) -> str:
    return "directory" if directory else "file"


def _has_entries(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError as exc:
        raise ExpforgeError(f"{directory}: cannot list ({exc.strerror})") from None


def _storage_error(target: Path, exc: OSError) -> ExpforgeError | None:
    if exc.errno in _STORAGE_ERRNOS:
        return ExpforgeError(
            f"{target}: writing failed ({exc.strerror or os.strerror(exc.errno)}); nothing was written"
        )
    return None


def _remove(path: Path) -> None:
    """Remove ``path`` itself (a link is unlinked, never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_directory(
    target: Path | str, *, overwrite: bool = False, inputs: InputPaths = (), flag: str = ""
) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` only if the block succeeds.

    The staging directory lives beside ``target`` (same file system) so the final step is a rename. What may
    already be at ``target`` is decided by :func:`check_output` (``directory=True``), before the block runs and
    again before the rename.
    """
    target = Path(target)
    inputs = [p for p in inputs if p is not None]
    check_output(target, directory=True, inputs=inputs, overwrite=overwrite, flag=flag)
    parent = _ensure_writable_parent(target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=parent))
    except OSError as exc:
        raise _storage_error(target, exc) or exc from None
    try:
        yield staging
        check_output(target, directory=True, inputs=inputs, overwrite=overwrite, flag=flag)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        error = _storage_error(target, exc)
        if error is None:
            raise
        raise error from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink():
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
        os.rename(target, backup / "old")
        os.rename(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        if os.path.lexists(target):
            _remove(target)
        os.rename(staging, target)


@contextlib.contextmanager
def staged_file(
    target: Path | str, *, overwrite: bool = True, inputs: InputPaths = (), flag: str = ""
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it is renamed over ``target`` when the block succeeds.

    The temporary name keeps ``target``'s suffix, for writers that insist on one (KFP's compiler does).
    ``overwrite`` defaults to true here because internal writers (checkpoints, caches, compiled YAML) rewrite
    their own files; steps writing a user's output pass the CLI's ``--overwrite`` instead.
    """
    target = Path(target)
    inputs = [p for p in inputs if p is not None]
    check_output(target, directory=False, inputs=inputs, overwrite=overwrite, flag=flag)
    parent = _ensure_writable_parent(target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix, dir=parent)
    except OSError as exc:
        raise _storage_error(target, exc) or exc from None
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        check_output(target, directory=False, inputs=inputs, overwrite=overwrite, flag=flag)
        if target.is_symlink():
            target.unlink()
        os.replace(staging, target)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        error = _storage_error(target, exc)
        if error is None:
            raise
        raise error from None
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
