"""File operations on paths a task could have written, safe for a runner running as root.

A task owns its own directory while it runs, so anything in it may have been swapped for a symlink to a host
file (``log.txt -> /etc/shadow``, ``.parameters -> /etc``). Every runner access to such a path goes through
here: opened with ``O_NOFOLLOW`` (the last component must not be a link) relative to a directory descriptor
opened the same way, walked with ``lstat`` (links are recorded, never followed), and chmod/chown'ed through
descriptors, never through a path. A link where a regular file or directory is expected is refused with
:class:`UnsafePath` instead of being followed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FICLONE = 0x40049409  # linux/fs.h: share a file's extents (reflink) where the filesystem supports it
_CHUNK = 1 << 20


class UnsafePath(OSError):
    """A path that is a symlink (or another non-regular file) where the runner expects a file or directory."""


def _open_parent(path: Path, anchor: Path) -> int:
    """A descriptor of ``path``'s parent, walking from ``anchor`` without following any link below it."""
    relative = path.parent.relative_to(anchor)
    fd = os.open(anchor, _DIR_FLAGS)
    try:
        for part in relative.parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(exc.errno, f"{path}: a component is not a real directory") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_nofollow(path: Path, flags: int, anchor: Path | None = None, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink at ``path`` (and, with ``anchor``, at any directory below ``anchor``);
    the result must be a regular file."""
    anchor = anchor or path.parent
    parent = _open_parent(path, anchor)
    try:
        fd = os.open(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(exc.errno, f"{path} is a symlink; refusing to follow it") from None
        raise
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(errno.EINVAL, f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_bytes(path: Path, anchor: Path | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit``), never through a symlink."""
    fd = open_nofollow(path, os.O_RDONLY, anchor)
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if limit is None else handle.read(limit)


def read_text(path: Path, anchor: Path | None = None) -> str:
    """UTF-8 text of a regular file, never through a symlink."""
    return read_bytes(path, anchor).decode("utf-8")


def read_tail(path: Path, size: int, anchor: Path | None = None) -> bytes:
    """The last ``size`` bytes of a regular file, never through a symlink."""
    fd = open_nofollow(path, os.O_RDONLY, anchor)
    with os.fdopen(fd, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, end - size))
        return handle.read()


def open_append(path: Path, anchor: Path | None = None) -> int:
    """A descriptor for appending to ``path`` (created 0644 if missing); a symlink there is refused."""
    return open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, anchor)


def walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under ``root`` (not ``root`` itself) with its ``lstat``; symlinked directories are entries,
    never descended into. Sorted, so digests over the walk are stable."""
    try:
        names = sorted(os.listdir(root))
    except NotADirectoryError:
        return
    for name in names:
        path = root / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        yield path, info
        if stat.S_ISDIR(info.st_mode):
            yield from walk(path)


def set_tree_owner_and_modes(
    root: Path, uid: int | None, gid: int | None, dir_mode: int | None, *, files: bool = False
) -> None:
    """``chown``/``chmod`` ``root`` and every real directory under it; with ``files``, regular files get the
    owner too and lose group/other write. Walks with directory descriptors (``os.fwalk``), so a directory that a
    running task swaps for a symlink mid-walk is skipped, never followed; ``None`` leaves that attribute alone."""
    owner_gid = gid if gid is not None else -1
    for _, _, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        info = os.fstat(dirfd)
        if uid is not None and (info.st_uid != uid or (gid is not None and info.st_gid != gid)):
            os.fchown(dirfd, uid, owner_gid)
        if dir_mode is not None and stat.S_IMODE(info.st_mode) != dir_mode:
            os.fchmod(dirfd, dir_mode)
        if not files:
            continue
        for name in filenames:
            try:
                entry = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(entry.st_mode):
                continue  # links (never followed), FIFOs, sockets
            if uid is not None and (entry.st_uid != uid or (gid is not None and entry.st_gid != gid)):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, uid, owner_gid, dir_fd=dirfd, follow_symlinks=False)
            if entry.st_mode & 0o022:
                with contextlib.suppress(OSError):
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
                    try:
                        if stat.S_ISREG(os.fstat(fd).st_mode):
                            os.fchmod(fd, stat.S_IMODE(entry.st_mode) & ~0o022)
                    finally:
                        os.close(fd)


def copy_file(source: Path, target: Path, mode: int) -> None:
    """Copy one regular file (a reflink where the filesystem can share extents, else bytes); never follows a
    link at either end; ``target`` must not exist."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.ioctl(dst, _FICLONE, src)
            except OSError:
                size = os.fstat(src).st_size
                offset = 0
                while offset < size:
                    sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
                    if sent == 0:
                        break
                    offset += sent
            os.fchmod(dst, mode)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_tree(source: Path, target: Path, *, file_mode: int = 0o644, dir_mode: int = 0o755) -> None:
    """Copy a file or a directory tree to ``target`` (which must not exist): regular files are copied with
    ``file_mode`` (plus execute bits where the source had them), directories created with ``dir_mode``, symlinks
    re-created as symlinks (their text, never their target), anything else (FIFOs, devices) skipped.
    Modification times are kept, so a copy's manifest matches its source's."""
    info = os.lstat(source)
    _copy_entry(source, target, info, file_mode, dir_mode)
    if stat.S_ISDIR(info.st_mode):
        for path, entry in walk(source):
            _copy_entry(path, target / path.relative_to(source), entry, file_mode, dir_mode)
        for path, entry in [*reversed(list(walk(source))), (source, info)]:
            if stat.S_ISDIR(entry.st_mode):
                os.utime(target / path.relative_to(source), ns=(entry.st_atime_ns, entry.st_mtime_ns))


def _copy_entry(source: Path, target: Path, info: os.stat_result, file_mode: int, dir_mode: int) -> None:
    kind = stat.S_IFMT(info.st_mode)
    if kind == stat.S_IFDIR:
        os.mkdir(target, 0o700)
        os.chmod(target, dir_mode)
    elif kind == stat.S_IFREG:
        executable = (file_mode >> 2) & 0o111 if info.st_mode & 0o100 else 0  # r-- → r-x for owner/group/other
        copy_file(source, target, file_mode | executable)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    elif kind == stat.S_IFLNK:
        os.symlink(os.readlink(source), target)
