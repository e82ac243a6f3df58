"""Serve the TensorBoard event files of pipeline runs: every training task (every Hyperband trial) is one run name.

A pipeline run keeps each task's outputs under ``<root>/<run id>/<task key>/``, so a trainer's event files sit in
``<root>/<run id>/<task key>/tensorboard/``. TensorBoard is pointed at them with ``--logdir_spec name:path,...``
(no copies, no symlink farm that TensorBoard's directory walk would not follow): the name is the task key within
one run, or ``<run id>/<task key>`` across runs. The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from expforge.errors import ExpforgeError
from expforge.train.tensorboard_log import TENSORBOARD_DIR

EVENT_FILE_PREFIX = "events.out.tfevents."


def _has_events(directory: Path) -> bool:
    return any(child.name.startswith(EVENT_FILE_PREFIX) for child in directory.iterdir() if child.is_file())


def find_logdirs(root: Path | str, run: str | None = None) -> dict[str, Path]:
    """Run name → event-file directory, for one pipeline run (``run``) or every run under ``root``.

    Names are relative paths with ``,`` and ``:`` replaced (they separate entries of a logdir spec); hidden
    folders (``.alerts``, caches) are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise ExpforgeError(f"--root: {root} is not a directory of pipeline runs")
    base = root
    if run is not None:
        base = (root / run).resolve()
        if not base.is_relative_to(root.resolve()) or run in ("", ".", ".."):
            raise ExpforgeError(f"--run: {run!r} is not a run under {root}")
        if not base.is_dir():
            raise ExpforgeError(f"--run: no run {run!r} under {root}")
    found: dict[str, Path] = {}
    for directory in sorted(base.rglob(TENSORBOARD_DIR)):
        relative = directory.parent.relative_to(base)
        if any(part.startswith(".") for part in relative.parts) or not directory.is_dir():
            continue
        if _has_events(directory):
            name = relative.as_posix().replace(",", "_").replace(":", "_") or "."
            found[name] = directory
    return found


def logdir_spec(logdirs: dict[str, Path]) -> str:
    """TensorBoard's ``--logdir_spec``: ``name:path`` entries joined by commas."""
    for name, path in logdirs.items():
        if "," in str(path):
            raise ExpforgeError(f"tensorboard: log directory {path} (run {name}) has a comma in its path")
    return ",".join(f"{name}:{path.resolve()}" for name, path in logdirs.items())


def tensorboard_command(logdirs: dict[str, Path], host: str = "127.0.0.1", port: int = 6006) -> list[str]:
    """The command that serves ``logdirs`` (TensorBoard from this interpreter's environment)."""
    if not logdirs:
        raise ExpforgeError("tensorboard: no TensorBoard event files found (train with train-sklearn/torch/lm first)")
    if not 0 < port < 65536:
        raise ExpforgeError(f"--port: {port} is not a TCP port (1-65535)")
    return [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir_spec",
        logdir_spec(logdirs),
        "--host",
        host,
        "--port",
        str(port),
    ]
