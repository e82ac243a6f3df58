"""Run each task's executor command as a local process, for machines without Docker.

The command is exactly the one in the spec (``sh -ec ... python3 -m kfp.dsl.executor_main ...``); only the
environment differs from a container: this interpreter's ``bin`` directory goes first on ``PATH`` so that
``python3`` is the virtualenv that has kfp and expforge installed. CPU/memory limits cannot be enforced here;
the scheduler warns once when a task sets them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from expforge.local_runner import safefs
from expforge.local_runner.backends import Launch, LaunchResult, signal_reason
from expforge.local_runner.custom_path import CustomPathError, adopt_from_host

_TERMINATE_GRACE_S = 5.0


def _interpreter_bin() -> str:
    # Not resolved: a venv's python is a symlink to the base interpreter, and resolving it would lose the venv.
    return str(Path(sys.executable).parent)


_CONTAINERIZED_COMMAND = ["python3", "-m", "kfp.dsl.executor_main"]


def prepare_containerized_component(argv: list[str], task_dir: Path) -> None:
    """Give a containerized Python component the ``kfp_config.ini`` its image would have.

    Such a component's command names only ``--function_to_execute``; inside its image, KFP's executor finds the
    module through ``kfp_config.ini`` in the working directory (written by the image recipe). Here the task's
    directory is the working directory, so the same file is written there for the installed expforge module.
    """
    if argv[:3] != _CONTAINERIZED_COMMAND or "--component_module_path" in argv:
        return
    if "--function_to_execute" not in argv or argv.index("--function_to_execute") + 1 >= len(argv):
        return
    function = argv[argv.index("--function_to_execute") + 1]
    from expforge.executor_config import write_kfp_config

    step = function.replace("_", "-")
    with contextlib.suppress(SystemExit):  # not an expforge component: let KFP's executor report it
        write_kfp_config([step], task_dir)


class SubprocessBackend:
    """Executes tasks as child processes of the runner, each in its own process group."""

    name = "subprocess"
    enforces_limits = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._cancelled = False
        self._code: dict[str, Any] | None = None

    def check_images(self, images: dict[str, list[str]]) -> None:
        """Images are not used by this backend."""

    def environment_digest(self, image: str) -> str:
        """The interpreter, the kfp version and the code the tasks run stand in for an image ID.

        Tasks here run this interpreter's ``expforge``; when that is a checkout (an editable install), its
        content hash is part of the digest, so an edit misses the cache exactly as ``--dev`` does under Docker.
        """
        try:
            kfp_version = metadata.version("kfp")
        except metadata.PackageNotFoundError:
            kfp_version = "none"
        return f"subprocess:{sys.prefix}:{sys.version.split()[0]}:kfp-{kfp_version}:{self._code_identity()}"

    def code_record(self) -> dict[str, Any]:
        """``run.json``'s ``code``: the checkout the tasks import expforge from (``mode: tree`` with its content
        hash) or the installed package. Worked out once per backend, i.e. once per run, for both the record and
        the cache key, so the two always agree."""
        if self._code is None:
            from expforge.local_runner.devmode import interpreter_code

            self._code = interpreter_code()
        return self._code

    def _code_identity(self) -> str:
        code = self.code_record()
        return f"tree:{code['tree_hash']}" if code["mode"] == "tree" else f"installed:{code.get('version')}"

    def _environment(self, launch: Launch) -> dict[str, str]:
        env = dict(os.environ)
        env.update(launch.env)
        env["PATH"] = _interpreter_bin() + os.pathsep + env.get("PATH", os.defpath)
        env["VIRTUAL_ENV"] = sys.prefix
        env.pop("PYTHONHOME", None)
        return env

    def run(self, launch: Launch) -> LaunchResult:
        """Run one attempt; the exit status of a signalled process is reported as 128+N like a shell does."""
        argv = [*launch.command, *launch.args]
        if not argv:
            return LaunchResult(127, 0.0, "the container spec has neither command nor args")
        prepare_containerized_component(argv, launch.task_dir)
        started = time.monotonic()
        with os.fdopen(safefs.open_append(launch.log_path), "ab") as log:  # never through a planted link
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=launch.task_dir,
                    env=self._environment(launch),
                    start_new_session=True,
                )
            except OSError as exc:
                log.write(f"cannot start {argv[0]!r}: {exc}\n".encode())
                return LaunchResult(127, 0.0, f"cannot start {argv[0]!r}: {exc.strerror}")
            with self._lock:
                self._running[process.pid] = process
                cancelled = self._cancelled
            if cancelled:
                self._terminate(process)
            try:
                returncode = process.wait()
            finally:
                with self._lock:
                    self._running.pop(process.pid, None)
        runtime = time.monotonic() - started
        exit_code = 128 - returncode if returncode < 0 else returncode
        if exit_code == 0:
            try:
                adopt_from_host(launch.task_dir)  # outputs written to an Artifact.set_path location
            except (CustomPathError, OSError) as exc:
                with launch.log_path.open("a", encoding="utf-8") as log:
                    log.write(f"expforge: {exc}\n")
                return LaunchResult(1, runtime, f"the task exited 0 but {exc}")
        return LaunchResult(exit_code, runtime, signal_reason(exit_code))

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=_TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def cancel_all(self) -> None:
        """Terminate every running task's process group (SIGTERM, then SIGKILL after a grace period)."""
        with self._lock:
            self._cancelled = True
            processes = list(self._running.values())
        threads = [threading.Thread(target=self._terminate, args=(p,), daemon=True) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def close(self) -> None:
        """Nothing to release."""
