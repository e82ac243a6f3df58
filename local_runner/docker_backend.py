"""Run each task in its component image through the Docker SDK — the same images Vertex AI runs.

Paths: the run directory is bind-mounted at the *same absolute path* inside the container, so an artifact's
URI (a host path) is valid unchanged in the container, in ``run.json`` and in downstream tasks. Inputs that
live outside the run directory (an importer's file) are mounted read-only at their own paths.

Users: component images run as a non-root user (``expforge``, uid 1000). Two cases keep outputs writable
without ever loosening the image:

* host user is not root → the container runs as the *host* uid:gid (``HOME=/tmp``, since that uid may have no
  home in the image); files it writes belong to the user who started the run, and nothing needs chmod;
* host user is root → the image's own user is kept (tasks must not gain root just because the runner has it),
  resolved to a numeric uid:gid from the image's ``/etc/passwd``; the runner hands the task's *own* directory
  to that uid for the attempt and takes it back afterwards (through descriptors: nothing the task left there,
  such as a symlink, is ever followed). The tracking and registry directories are owned by that uid (0755,
  never world-writable).

Isolation: the run directory is mounted read-only and only the task's own directory read-write on top of it,
so a task cannot touch another task's outputs; containers run with ``no-new-privileges``, every capability
dropped and a pids limit (``EXPFORGE_DOCKER_PIDS_LIMIT``, default 4096).

Network: containers share the host's network (``network_mode="host"``) unless ``EXPFORGE_DOCKER_NETWORK``
names another mode (``bridge``, ``none``). Tasks keep network access as on Vertex; services a run depends on that
listen on the host's 127.0.0.1 (the local Google Cloud stand-ins, a tracking server) are reachable at the same
address from inside the task; and no bridge/veth/iptables setup is paid per container (about 0.25 s per task
measured here). The price is weaker network isolation — acceptable for a development runner that executes your
own images, and one environment variable away from ``bridge``.

Images are never pulled: a missing image is a clear error that names it and points at ``make images``.
Containers are created, started, followed for logs and waited on explicitly (no auto-remove), so the exit
status of a container that fails within milliseconds is never lost; removal happens in the background.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.local_runner import safefs
from expforge.local_runner.backends import Launch, LaunchResult, signal_reason
from expforge.local_runner.custom_path import CustomPathError, adopt_from_container

_PING_TIMEOUT_S = 5
NETWORK_ENV = "EXPFORGE_DOCKER_NETWORK"
DEFAULT_NETWORK = "host"
_NORMAL_MODE = 0o755
PIDS_LIMIT_ENV = "EXPFORGE_DOCKER_PIDS_LIMIT"
DEFAULT_PIDS_LIMIT = 4096
_FALLBACK_TASK_USER = (1000, 1000)  # the uid of the user every expforge image runs as


def docker_client(pool_size: int = 10) -> tuple[Any | None, str | None]:
    """A connected Docker client, or ``(None, why not)``. The ping uses a short timeout; the returned client
    has none, because ``logs(follow=True)`` on a quiet long task must not time out."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return None, "the docker Python package is not installed (pip install 'expforge[runner]')"
    try:
        probe = docker.from_env(timeout=_PING_TIMEOUT_S)
        try:
            probe.ping()
        finally:
            probe.close()
        return docker.from_env(timeout=None, max_pool_size=pool_size), None
    except DockerException as exc:
        return None, str(exc).splitlines()[0][:200]
    except Exception as exc:  # requests' connection errors surface as various types
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def _parse_docker_time(text: str) -> dt.datetime | None:
    """Docker timestamps carry nanoseconds (``...27.441763696Z``); Python parses at most microseconds."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        return dt.datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}+00:00")
    except ValueError:
        return None


def _share_with_task_user(path: Path, owner: tuple[int, int] | None) -> None:
    """Hand a shared directory (and what is in it, e.g. a SQLite database and its WAL) to the task's uid: a root
    runner starts containers as the image's user, not as root. Directories 0755, files 0644 (never 0777/0666);
    symlinks are neither followed nor changed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.getuid() != 0 or owner is None:
        return
    safefs.set_tree_owner_and_modes(path, owner[0], owner[1], _NORMAL_MODE, files=True)


def pids_limit() -> int:
    """Most processes one container may hold (a fork bomb stops there, not at the host's limit)."""
    text = os.environ.get(PIDS_LIMIT_ENV) or str(DEFAULT_PIDS_LIMIT)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 16:
        raise ExpforgeError(f"{PIDS_LIMIT_ENV}: expected a whole number of at least 16, got {text!r}")
    return value


def _passwd_entry(text: str, user: str) -> tuple[int, int] | None:
    """``(uid, gid)`` of ``user`` in an ``/etc/passwd`` text."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    return None


class DockerBackend:
    """Executes tasks as containers; one shared client, containers labelled with their run and task."""

    name = "docker"
    enforces_limits = True

    def __init__(self, client: Any, network_mode: str | None = None) -> None:
        self.client = client
        self.network_mode = network_mode or os.environ.get(NETWORK_ENV) or DEFAULT_NETWORK
        self._image_ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._running: dict[str, Any] = {}
        self._cancelled = False
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="expforge-docker-rm")
        self._removals: list[Future[None]] = []
        self._task_users: dict[str, tuple[int, int]] = {}
        self.pids_limit = pids_limit()

    # --- preflight ------------------------------------------------------------------------------------------

    def check_images(self, images: dict[str, list[str]]) -> None:
        """Every image must already be in the local store; raise one line naming the first missing one."""
        from docker.errors import APIError, ImageNotFound

        for ref, users in sorted(images.items()):
            try:
                self._image_ids[ref] = self.client.images.get(ref).id
            except ImageNotFound:
                raise ExpforgeError(
                    f"image {ref!r} (used by {', '.join(users)}) is not in the local Docker image store; "
                    "build it with `make images` (expforge run never pulls images), or use --backend subprocess"
                ) from None
            except APIError as exc:
                raise ExpforgeError(f"image {ref!r}: Docker error: {exc.explanation or exc}") from None

    def environment_digest(self, image: str) -> str:
        """The image ID (content-addressed): a rebuilt image invalidates cached results."""
        if image not in self._image_ids:
            self._image_ids[image] = self.client.images.get(image).id
        return self._image_ids[image]

    # --- one attempt ----------------------------------------------------------------------------------------

    def image_user(self, image: str) -> tuple[int, int]:
        """The numeric uid:gid the image runs as (its ``User``, a name looked up in the image's own
        ``/etc/passwd``); ``(0, 0)`` for an image that runs as root."""
        if image in self._task_users:
            return self._task_users[image]
        user = (self.client.images.get(image).attrs.get("Config") or {}).get("User") or ""
        name, _, group = user.partition(":")
        if name in ("", "root", "0"):
            resolved = (0, int(group) if group.isdigit() else 0)
        elif name.isdigit():
            resolved = (int(name), int(group) if group.isdigit() else int(name))
        else:
            found = self._lookup_passwd(image, name)
            resolved = found or _FALLBACK_TASK_USER
            if group.isdigit():
                resolved = (resolved[0], int(group))
        self._task_users[image] = resolved
        return resolved

    def _lookup_passwd(self, image: str, name: str) -> tuple[int, int] | None:
        """Read ``/etc/passwd`` out of a created (never started) container of ``image``."""
        import io
        import tarfile

        from docker.errors import DockerException

        container = None
        try:
            container = self.client.containers.create(image, command=["true"], entrypoint=[], network_mode="none")
            stream, _ = container.get_archive("/etc/passwd")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.extractfile(archive.getmembers()[0])
                text = member.read().decode("utf-8", errors="replace") if member else ""
            return _passwd_entry(text, name)
        except (DockerException, tarfile.TarError, IndexError, OSError):
            return None
        finally:
            if container is not None:
                with contextlib.suppress(DockerException):
                    container.remove(force=True)

    def _user_and_env(self, launch: Launch) -> tuple[str | None, dict[str, str]]:
        env = dict(launch.env)
        uid = os.getuid()
        if uid == 0:
            task_uid, task_gid = self.image_user(launch.image)
            return (f"{task_uid}:{task_gid}" if task_uid else None), env
        env.setdefault("HOME", "/tmp")
        return f"{uid}:{os.getgid()}", env

    def _volumes(self, launch: Launch, owner: tuple[int, int] | None) -> dict[str, dict[str, str]]:
        run_dir = str(launch.run_dir.resolve())
        task_dir = str(launch.task_dir.resolve())
        # The run read-only, the task's own directory read-write on top of it: other tasks' outputs (and the
        # runner's run.json) cannot be changed by this task.
        volumes = {run_dir: {"bind": run_dir, "mode": "ro"}, task_dir: {"bind": task_dir, "mode": "rw"}}
        for path in launch.shared_dirs:
            _share_with_task_user(path, owner)
            volumes[str(path.resolve())] = {"bind": str(path.resolve()), "mode": "rw"}
        for path in launch.extra_read_paths:
            resolved = str(path.resolve())
            if path.exists() and not resolved.startswith(run_dir + os.sep):
                volumes[resolved] = {"bind": resolved, "mode": "ro"}
        return volumes

    def _device_requests(self, launch: Launch) -> list[Any] | None:
        if not launch.resources.accelerator_count:
            return None
        from docker.types import DeviceRequest

        return [DeviceRequest(count=launch.resources.accelerator_count, capabilities=[["gpu"]])]

    def run(self, launch: Launch) -> LaunchResult:
        """Create, start, follow logs, wait; report the exit status and the container's own run time."""
        from docker.errors import APIError, DockerException

        user, env = self._user_and_env(launch)
        # A root runner hands the task's directory to the (non-root) task user for the attempt only.
        owner = self.image_user(launch.image) if os.getuid() == 0 else None
        handed = owner is not None and owner[0] != 0
        if handed:
            safefs.set_tree_owner_and_modes(launch.task_dir, owner[0], owner[1], _NORMAL_MODE)  # type: ignore[index]
        resources = launch.resources
        container = None
        try:
            with os.fdopen(safefs.open_append(launch.log_path), "ab") as log:
                try:
                    container = self.client.containers.create(
                        launch.image,
                        entrypoint=launch.command or None,
                        command=launch.args or None,
                        environment=env,
                        user=user,
                        volumes=self._volumes(launch, owner),
                        nano_cpus=int(resources.cpu_limit * 1e9) if resources.cpu_limit else None,
                        mem_limit=resources.memory_limit,
                        device_requests=self._device_requests(launch),
                        network_mode=self.network_mode,
                        security_opt=["no-new-privileges"],
                        cap_drop=["ALL"],
                        pids_limit=self.pids_limit,
                        labels={"expforge.task": launch.task_key, "expforge.run-dir": str(launch.run_dir)},
                        detach=True,
                    )
                    with self._lock:
                        self._running[container.id] = container
                        cancelled = self._cancelled
                    if cancelled:
                        return LaunchResult(130, 0.0, "cancelled")
                    container.start()
                    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                        log.write(chunk)
                        log.flush()
                    status = container.wait()
                except APIError as exc:
                    message = exc.explanation or str(exc)
                    log.write(f"docker: {message}\n".encode())
                    return LaunchResult(125, 0.0, f"docker: {message}")
                except DockerException as exc:
                    log.write(f"docker: {exc}\n".encode())
                    return LaunchResult(125, 0.0, f"docker: {exc}")
            exit_code = int(status.get("StatusCode", -1))
            if exit_code == 0:
                try:  # outputs written to an Artifact.set_path location inside the (exited) container
                    adopt_from_container(container, launch.task_dir)
                except (CustomPathError, OSError) as exc:
                    with os.fdopen(safefs.open_append(launch.log_path), "ab") as log:
                        log.write(f"expforge: {exc}\n".encode())
                    return LaunchResult(1, 0.0, f"the task exited 0 but {exc}")
            return LaunchResult(exit_code, *self._runtime_and_reason(container, exit_code))
        finally:
            if handed:
                # The container has exited, so nothing of the task runs any more: take every real directory
                # back (0755, readable by downstream tasks), without following anything the task left behind.
                safefs.set_tree_owner_and_modes(launch.task_dir, 0, 0, _NORMAL_MODE)
            if container is not None:
                with self._lock:
                    self._running.pop(container.id, None)
                self._removals.append(self._reaper.submit(self._remove, container))

    def _runtime_and_reason(self, container: Any, exit_code: int) -> tuple[float, str | None]:
        from docker.errors import DockerException

        try:
            container.reload()
        except DockerException:
            return 0.0, signal_reason(exit_code)
        state = container.attrs.get("State", {})
        started = _parse_docker_time(state.get("StartedAt", ""))
        finished = _parse_docker_time(state.get("FinishedAt", ""))
        runtime = (finished - started).total_seconds() if started and finished else 0.0
        if state.get("OOMKilled"):
            return runtime, "out of memory: the container exceeded its memory limit"
        return runtime, signal_reason(exit_code)

    @staticmethod
    def _remove(container: Any) -> None:
        from docker.errors import DockerException

        with contextlib.suppress(DockerException):
            container.remove(force=True)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def cancel_all(self) -> None:
        """Kill every running container of this run."""
        from docker.errors import DockerException

        with self._lock:
            self._cancelled = True
            containers = list(self._running.values())
        for container in containers:
            with contextlib.suppress(DockerException):
                container.kill()

    def close(self) -> None:
        """Wait for background removals, then close the client."""
        for future in self._removals:
            future.result()
        self._reaper.shutdown(wait=True)
        self.client.close()
