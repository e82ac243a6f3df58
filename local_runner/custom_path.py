"""Output artifacts written to a path the component chose (``Artifact.set_path`` → ``custom_path``).

KFP's executor reports such an output as ``{"uri": <the usual URI>, "custom_path": "/tmp/out"}`` in
``executor_output.json``; on Kubeflow the launcher, which runs *inside the task's container*, then uploads the
bytes from that path to the artifact's URI, so consumers find them where the URI says. Here the same happens
right after the task exits, before its outputs are collected: the bytes at ``custom_path`` are placed at the
artifact's local path (``<task-dir>/<output name>``), and the URI stays the usual one.

Where ``custom_path`` is read depends on the backend, because it is a path *in the task's filesystem*:

* Docker: from the container itself (``get_archive``, before the container is removed) — never the host path
  of the same name;
* subprocess: from the host, where the task ran with the runner's own rights (so the runner reads nothing the
  task could not have read itself); a symlink at ``custom_path`` is refused, and links inside a directory are
  copied as links, never followed.

Only outputs with a plain name are adopted, and the destination is always inside the task directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any

EXECUTOR_OUTPUT = "executor_output.json"
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MAX_REPORT_BYTES = 16 << 20


class CustomPathError(RuntimeError):
    """A reported ``custom_path`` that cannot be adopted (the attempt fails with this message)."""


def reported_custom_paths(task_dir: Path) -> dict[str, str]:
    """``{output name: custom_path}`` from the task's ``executor_output.json`` (empty when there is none)."""
    report = task_dir / EXECUTOR_OUTPUT
    try:
        info = os.lstat(report)
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_REPORT_BYTES:
        return {}  # the runner's own output collection reports a malformed file
    try:
        with open(report, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
            document = json.loads(handle.read() or b"{}")
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    artifacts = document.get("artifacts") if isinstance(document, dict) else None
    for name, group in (artifacts or {}).items() if isinstance(artifacts, dict) else ():
        items = group.get("artifacts") if isinstance(group, dict) else None
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            continue
        custom = items[0].get("custom_path")
        if isinstance(custom, str) and custom:
            if not _PLAIN_NAME.match(str(name)):
                raise CustomPathError(f"output {name!r} with a custom_path has an unusable name")
            if not custom.startswith("/"):
                raise CustomPathError(f"output {name!r}: custom_path {custom!r} is not an absolute path")
            found[str(name)] = custom
    return found


def _clear(destination: Path) -> None:
    if destination.is_symlink() or destination.is_file():
        destination.unlink()
    elif destination.is_dir():
        shutil.rmtree(destination)


def adopt_from_host(task_dir: Path) -> None:
    """Subprocess backend: copy each reported ``custom_path`` on the host to ``<task-dir>/<name>``."""
    for name, custom in reported_custom_paths(task_dir).items():
        source = Path(custom)
        destination = task_dir / name
        if source == destination:
            continue
        try:
            info = os.lstat(source)
        except FileNotFoundError:
            raise CustomPathError(f"output {name!r}: custom_path {custom} was not written") from None
        if stat.S_ISLNK(info.st_mode):
            raise CustomPathError(f"output {name!r}: custom_path {custom} is a symlink (refused)")
        _clear(destination)
        if stat.S_ISDIR(info.st_mode):
            shutil.copytree(source, destination, symlinks=True)
        elif stat.S_ISREG(info.st_mode):
            shutil.copy2(source, destination, follow_symlinks=False)
        else:
            raise CustomPathError(f"output {name!r}: custom_path {custom} is not a regular file or directory")


def adopt_from_container(container: Any, task_dir: Path) -> None:
    """Docker backend: copy each reported ``custom_path`` out of the (stopped) container to ``<task-dir>/<name>``.

    The archive Docker returns is unpacked with tarfile's ``data`` filter (no absolute paths, no links out, no
    devices), into a staging directory inside the task directory, then renamed into place.
    """
    from docker.errors import DockerException, NotFound

    for name, custom in reported_custom_paths(task_dir).items():
        destination = task_dir / name
        with tempfile.TemporaryDirectory(dir=task_dir, prefix=".custom-path-") as staging:
            archive = Path(staging) / "archive.tar"
            try:
                chunks, _ = container.get_archive(custom)
                with archive.open("wb") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
            except NotFound:
                raise CustomPathError(f"output {name!r}: custom_path {custom} was not written") from None
            except DockerException as exc:
                raise CustomPathError(f"output {name!r}: cannot copy custom_path {custom} ({exc})") from None
            unpacked = Path(staging) / "unpacked"
            unpacked.mkdir()
            try:
                with tarfile.open(archive) as tar:
                    members = tar.getmembers()
                    tar.extractall(unpacked, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise CustomPathError(f"output {name!r}: cannot unpack custom_path {custom} ({exc})") from None
            tops = {Path(member.name).parts[0] for member in members if member.name}
            if len(tops) != 1:
                raise CustomPathError(f"output {name!r}: custom_path {custom} is empty")
            top = unpacked / tops.pop()
            if top.is_symlink():
                raise CustomPathError(f"output {name!r}: custom_path {custom} is a symlink (refused)")
            _clear(destination)
            top.rename(destination)
