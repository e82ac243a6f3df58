"""One container task, end to end: cache lookup, attempts with retry/backoff, outputs, cache store.

A task directory holds everything about the task: ``log.txt`` (every attempt, with a header per attempt),
``executor_input.json`` (what the container was given), ``executor_output.json`` (what it reported), the
output-parameter files under ``.parameters/`` and one path per output artifact (``<task-dir>/<name>``).

An attempt fails when the process exits non-zero, or exits zero without producing a declared output
parameter (a silent failure is still a failure). A failed attempt is retried per the task's retry policy
(``set_retry``: count, backoff duration, factor, cap); each attempt starts from empty output locations.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from expforge.local_runner import safefs, values
from expforge.local_runner.artifacts import RuntimeArtifact, content_digest
from expforge.local_runner.backends import Launch, LaunchResult
from expforge.local_runner.cache import CacheEntry, cache_key, component_fingerprint
from expforge.local_runner.context import Outcome, RunContext
from expforge.local_runner.placeholders import CommandResolver, PlaceholderError, build_executor_input
from expforge.local_runner.record import TaskState, now_iso
from expforge.local_runner.resources import (
    ResourceRequest,
    UnresolvedResource,
    exceeds_host,
    resource_request,
    thread_env,
)
from expforge.local_runner.spec import ComponentSpec, ContainerSpec, TaskSpec
from expforge.spec.task_env_injection import container_environment

LOG_NAME = "log.txt"
EXECUTOR_OUTPUT = "executor_output.json"
EXECUTOR_INPUT = "executor_input.json"
PARAMETERS_DIR = ".parameters"
_KEEP = {LOG_NAME}


class OutputError(RuntimeError):
    """The process exited 0 but its outputs are missing or malformed."""


def retry_delays(task: TaskSpec) -> list[float]:
    """Seconds to wait before each retry: ``duration · factor^(n-1)``, capped (an empty list: no retries)."""
    policy = task.retry_policy
    if not task.HasField("retry_policy") or policy.max_retry_count <= 0:
        return []
    base = policy.backoff_duration.ToTimedelta().total_seconds()
    factor = policy.backoff_factor or 2.0
    cap = policy.backoff_max_duration.ToTimedelta().total_seconds() if policy.HasField("backoff_max_duration") else 3600
    return [min(base * factor**n, cap or 3600) for n in range(policy.max_retry_count)]


def _last_log_line(log_path: Path) -> str | None:
    try:
        tail = safefs.read_tail(log_path, 4096).decode("utf-8", errors="replace")
    except OSError:  # includes a log the task swapped for a symlink: never read through it
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("=== attempt")]
    return lines[-1][:300] if lines else None


def append_log(log_path: Path, text: str) -> None:
    """Append a runner line to a task's log; a log the task replaced by a symlink is removed, not followed."""
    try:
        fd = safefs.open_append(log_path)
    except safefs.UnsafePath:
        log_path.unlink()
        fd = safefs.open_append(log_path)
    with os.fdopen(fd, "a", encoding="utf-8") as log:
        log.write(text)


class ContainerTask:
    """Runs one container task instance (one loop iteration is one instance)."""

    def __init__(
        self,
        ctx: RunContext,
        key: str,
        task_name: str,
        task: TaskSpec,
        component: ComponentSpec,
        container: ContainerSpec,
    ) -> None:
        self.ctx = ctx
        self.key = key
        self.task_name = task_name
        self.task = task
        self.component = component
        self.container = container
        self.task_dir = ctx.run_dir / key
        self.log_path = self.task_dir / LOG_NAME
        self._runtime_s = 0.0  # time the process/container itself ran, summed over attempts

    # --- inputs and output locations ------------------------------------------------------------------------

    def _output_locations(self) -> tuple[dict[str, str], dict[str, list[RuntimeArtifact]]]:
        definitions = self.component.output_definitions
        parameter_files = {name: str(self.task_dir / PARAMETERS_DIR / name) for name in definitions.parameters}
        artifacts = {
            name: [
                RuntimeArtifact.of_type(name, self.ctx.storage.artifact_uri(self.task_dir, name), spec.artifact_type)
            ]
            for name, spec in definitions.artifacts.items()
        }
        return parameter_files, artifacts

    def _reset_outputs(self) -> None:
        """Empty the task directory (except the log) so an attempt never sees a previous attempt's outputs."""
        self.task_dir.mkdir(parents=True, exist_ok=True)
        for entry in self.task_dir.iterdir():
            if entry.name in _KEEP and entry.is_file() and not entry.is_symlink():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (self.task_dir / PARAMETERS_DIR).mkdir()

    def _resources(self, parameters: dict[str, Any]) -> ResourceRequest:
        """The task's resources, with quantities set from pipeline parameters resolved; a request this host
        cannot honour raises ``ValueError`` (the task fails with that message)."""
        try:
            request = resource_request(self.container, parameters)
        except UnresolvedResource as exc:
            raise ValueError(f"resources: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"resources: {exc}") from None
        if request.accelerator_count > self.ctx.gpu_count:
            if self.ctx.gpu_count == 0 and self.ctx.allow_cpu_fallback:
                self.ctx.warn(f"{self.task_name}: no GPU on this host; running without it ({request.describe()})")
                request = request.without_accelerator()
            else:
                raise ValueError(
                    f"requests {request.describe()} but this host has {self.ctx.gpu_count} GPU(s); "
                    "pass --allow-cpu-fallback to run without it"
                )
        too_big = exceeds_host(request, self.ctx.slots.capacity)
        if too_big:
            raise ValueError(f"requests {too_big}")
        if request.has_limits and not self.ctx.backend.enforces_limits:
            self.ctx.warn(
                f"{self.task_name}: resource limits ({request.describe()}) are not enforced by the "
                f"{self.ctx.backend.name} backend"
            )
        return request

    def _extra_read_paths(self, artifacts: dict[str, list[RuntimeArtifact]]) -> tuple[Path, ...]:
        paths = []
        for items in artifacts.values():
            for artifact in items:
                local = self.ctx.storage.local_path(artifact.uri)
                if local is not None:
                    paths.append(local)
        return tuple(paths)

    # --- outputs --------------------------------------------------------------------------------------------

    def _collect_outputs(self) -> tuple[dict[str, Any], dict[str, list[RuntimeArtifact]]]:
        definitions = self.component.output_definitions
        reported: dict[str, Any] = {}
        output_file = self.task_dir / EXECUTOR_OUTPUT
        if os.path.lexists(output_file):
            try:
                reported = json.loads(safefs.read_text(output_file) or "{}")
            except safefs.UnsafePath as exc:
                raise OutputError(f"{EXECUTOR_OUTPUT}: {exc.strerror}") from None
            except (OSError, ValueError) as exc:
                raise OutputError(f"{EXECUTOR_OUTPUT} is not valid JSON ({exc})") from None
            if not isinstance(reported, dict):
                raise OutputError(f"{EXECUTOR_OUTPUT} is not a JSON object")
        reported_parameters = reported.get("parameterValues") or {}
        parameters: dict[str, Any] = {}
        for name, spec in definitions.parameters.items():
            if name in reported_parameters:
                raw = reported_parameters[name]
            else:
                path = self.task_dir / PARAMETERS_DIR / name
                try:
                    text = safefs.read_text(path, anchor=self.task_dir)
                except FileNotFoundError:
                    raise OutputError(f"output parameter {name!r} was not written") from None
                except safefs.UnsafePath as exc:
                    raise OutputError(f"output parameter {name!r}: {exc.strerror}") from None
                except (OSError, UnicodeDecodeError) as exc:
                    raise OutputError(f"output parameter {name!r} cannot be read ({exc})") from None
                try:
                    raw = values.parse_text(text, spec.parameter_type)
                except ValueError as exc:
                    raise OutputError(f"output parameter {name!r}: {exc}") from None
            try:
                parameters[name] = values.coerce(raw, spec.parameter_type)
            except (TypeError, ValueError) as exc:
                kind = values.type_name(spec.parameter_type)
                raise OutputError(f"output parameter {name!r} ({kind}): {exc}") from None
        _, defaults = self._output_locations()
        reported_artifacts = reported.get("artifacts") or {}
        artifacts: dict[str, list[RuntimeArtifact]] = {}
        for name, spec in definitions.artifacts.items():
            items = (reported_artifacts.get(name) or {}).get("artifacts") or []
            if not items:
                artifacts[name] = defaults[name]
                continue
            artifacts[name] = [
                RuntimeArtifact.of_type(
                    item.get("name") or name,
                    self._contained_uri(name, item.get("uri") or defaults[name][0].uri),
                    spec.artifact_type,
                    metadata=dict(item.get("metadata") or {}),
                )
                for item in items
            ]
        for name, items in artifacts.items():
            for artifact in items:
                self._contained_uri(name, artifact.uri)
        return parameters, self._with_digests(artifacts)

    def _contained_uri(self, name: str, uri: Any) -> str:
        """A reported artifact URI, checked to lie inside this task's directory: a task must not point the
        runner (which hashes, stores and mounts artifacts, possibly as root) at a host path or another task's
        outputs. Remote URIs (``gs://...``) are not local paths and pass unchanged."""
        if not isinstance(uri, str) or not uri:
            raise OutputError(f"output artifact {name!r}: {EXECUTOR_OUTPUT} gives no URI")
        local = self.ctx.storage.local_path(uri)
        if local is None:
            return uri
        task_dir = os.path.realpath(self.task_dir)
        resolved = os.path.realpath(os.path.join(task_dir, local))
        inside = os.path.commonpath([task_dir, resolved]) == task_dir and resolved != task_dir
        if not local.is_absolute() or not inside or os.path.normpath(local) != str(local):
            raise OutputError(
                f"output artifact {name!r}: URI {uri[:200]!r} lies outside the task's output directory "
                f"{self.task_dir}; refused"
            )
        return uri

    def _with_digests(self, artifacts: dict[str, list[RuntimeArtifact]]) -> dict[str, list[RuntimeArtifact]]:
        return {
            name: [
                RuntimeArtifact(
                    a.name,
                    a.uri,
                    a.schema_title,
                    a.schema_version,
                    a.metadata,
                    content_digest(self.ctx.storage.local_path(a.uri)),
                )
                for a in items
            ]
            for name, items in artifacts.items()
        }

    # --- cache ----------------------------------------------------------------------------------------------

    def _cache_key(self, parameters: dict[str, Any], artifacts: dict[str, list[RuntimeArtifact]]) -> str | None:
        if self.ctx.cache is None or not self.task.caching_options.enable_cache:
            return None
        environment = self.ctx.backend.environment_digest(self.container.image)
        return cache_key(component_fingerprint(self.component, self.container), environment, parameters, artifacts)

    def _materialize(self, entry: CacheEntry) -> dict[str, list[RuntimeArtifact]]:
        """Copy a cache entry's (verified) artifacts into this task's directory and point URIs there: the copy
        is the run's own, readable by every task user (files 0644, directories 0755)."""
        self._reset_outputs()
        artifacts: dict[str, list[RuntimeArtifact]] = {}
        for name, items in entry.artifacts.items():
            placed = []
            for index, artifact in enumerate(items):
                source = self.ctx.storage.local_path(artifact.uri)
                if source is None:
                    placed.append(artifact)
                    continue
                target_uri = self.ctx.storage.artifact_uri(self.task_dir, name if index == 0 else f"{name}-{index}")
                if os.path.lexists(source):
                    safefs.copy_tree(source, Path(target_uri))
                placed.append(artifact.with_uri(target_uri))
            artifacts[name] = placed
        append_log(self.log_path, f"=== cached {now_iso()}: outputs of task {entry.task} in run {entry.run_id} ===\n")
        return artifacts

    # --- the task -------------------------------------------------------------------------------------------

    def run(self, parameters: dict[str, Any], artifacts: dict[str, list[RuntimeArtifact]]) -> Outcome:
        """Execute with caching and retries; never raises for task-level failures."""
        record = self.ctx.record
        self.task_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        record.update(
            self.key,
            started=now_iso(),
            log=str(self.log_path),
            inputs={
                "parameters": parameters,
                "artifacts": {name: [a.uri for a in items] for name, items in artifacts.items()},
            },
        )
        key = self._cache_key(parameters, artifacts)
        if key is not None:
            entry, problem = self.ctx.cache.lookup(key)  # type: ignore[union-attr]
            if problem:
                self.ctx.warn(f"{self.key}: {problem}")
            if entry is not None:
                placed = self._materialize(entry)
                return self._succeeded(entry.parameters, placed, started, attempts=0, key=key, cached_from=entry)

        delays = retry_delays(self.task)
        try:
            resources = self._resources(parameters)
        except ValueError as exc:
            return self._finish(TaskState.FAILED, started, 0, error=str(exc))
        attempt = 0
        failure = "not run"
        while True:
            attempt += 1
            if self.ctx.cancel.is_set():
                return self._finish(TaskState.CANCELLED, started, attempt - 1, error="cancelled")
            try:
                result, failure = self._attempt(attempt, len(delays) + 1, parameters, artifacts, resources)
            except PlaceholderError as exc:
                return self._finish(TaskState.FAILED, started, attempt, error=str(exc))
            if result is not None:
                outputs, produced = result
                return self._succeeded(outputs, produced, started, attempts=attempt, key=key)
            if attempt > len(delays) or self.ctx.cancel.is_set():
                break
            delay = delays[attempt - 1]
            self.ctx.progress.task_retry(self.key, attempt, delay, failure)
            if self.ctx.cancel.wait(delay):
                break
        if self.ctx.cancel.is_set():
            return self._finish(TaskState.CANCELLED, started, attempt, error="cancelled")
        last = _last_log_line(self.log_path)
        error = f"{failure}" + (f"; last log line: {last}" if last else "") + f" (log: {self.log_path})"
        return self._finish(TaskState.FAILED, started, attempt, error=error)

    def _attempt(
        self,
        attempt: int,
        max_attempts: int,
        parameters: dict[str, Any],
        artifacts: dict[str, list[RuntimeArtifact]],
        resources: ResourceRequest,
    ) -> tuple[tuple[dict[str, Any], dict[str, list[RuntimeArtifact]]] | None, str]:
        """One attempt: ``((parameters, artifacts), "")`` on success, ``(None, why)`` on failure."""
        self._reset_outputs()
        parameter_files, output_artifacts = self._output_locations()
        executor_input = build_executor_input(
            parameters, artifacts, output_artifacts, parameter_files, str(self.task_dir / EXECUTOR_OUTPUT)
        )
        fd = safefs.open_nofollow(self.task_dir / EXECUTOR_INPUT, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(executor_input, indent=2))
        resolver = CommandResolver(executor_input, self.ctx.job(self.task_name), self.ctx.storage)
        command = resolver.resolve(list(self.container.command))
        args = resolver.resolve(list(self.container.args))
        launch = Launch(
            task_key=self.key,
            image=self.container.image,
            command=command,
            args=args,
            env=container_environment(
                {**self.ctx.task_env, "EXPFORGE_TASK_KEY": self.key, **thread_env(resources)},
                {env.name: env.value for env in self.container.env},
            ),
            task_dir=self.task_dir,
            run_dir=self.ctx.run_dir,
            log_path=self.log_path,
            resources=resources,
            extra_read_paths=self._extra_read_paths(artifacts) + self.ctx.read_paths,
            shared_dirs=self.ctx.shared_dirs,
        )
        where = f"{self.ctx.backend.name}: {launch.image}"
        append_log(self.log_path, f"=== attempt {attempt}/{max_attempts} {now_iso()} ({where}) ===\n")
        with self.ctx.slots.admit(self.key, resources):
            if self.ctx.cancel.is_set():
                return None, "cancelled"
            self.ctx.record.update(self.key, state=TaskState.RUNNING, attempts=attempt)
            self.ctx.progress.task_started(self.key, attempt)
            result: LaunchResult = self.ctx.backend.run(launch)
        self._runtime_s += result.runtime_s
        if os.path.lexists(self.log_path) and not stat.S_ISREG(os.lstat(self.log_path).st_mode):
            # The task swapped its log for a link (perhaps to a host file): remove it, so neither the runner nor
            # someone reading the log later follows it.
            append_log(self.log_path, f"expforge: the task replaced {LOG_NAME} by a link; removed\n")
        self.ctx.record.update(self.key, runtime_s=round(self._runtime_s, 3))
        if not result.succeeded:
            return None, result.describe()
        try:
            return self._collect_outputs(), ""
        except OutputError as exc:
            append_log(self.log_path, f"expforge: {exc}\n")
            return None, str(exc)

    def _succeeded(
        self,
        parameters: dict[str, Any],
        artifacts: dict[str, list[RuntimeArtifact]],
        started: float,
        *,
        attempts: int,
        key: str | None,
        cached_from: CacheEntry | None = None,
    ) -> Outcome:
        if key is not None and cached_from is None:
            entry = CacheEntry(key, self.ctx.run_id, self.key, parameters, artifacts)
            try:
                self.ctx.cache.store(entry, self.ctx.run_dir)  # type: ignore[union-attr]
            except OSError as exc:  # e.g. a full disk: the task still succeeded, it is just not cached
                self.ctx.warn(f"{self.key}: outputs not cached ({exc.strerror or exc})")
        self.ctx.record.update(
            self.key,
            parameters=parameters,
            artifacts={name: [a.uri for a in items] for name, items in artifacts.items()},
            artifact_metadata={name: [a.metadata for a in items] for name, items in artifacts.items()},
            cached=cached_from is not None,
            cached_from=f"{cached_from.run_id}/{cached_from.task}" if cached_from else None,
            cache_key=key,
        )
        self._finish(TaskState.SUCCEEDED, started, attempts, cached=cached_from is not None)
        return Outcome(TaskState.SUCCEEDED, parameters, artifacts)

    def _finish(
        self, state: TaskState, started: float, attempts: int, *, error: str | None = None, cached: bool = False
    ) -> Outcome:
        duration = time.monotonic() - started
        self.ctx.record.update(
            self.key, state=state, attempts=attempts, finished=now_iso(), duration_s=round(duration, 3), error=error
        )
        self.ctx.progress.task_finished(self.key, state, cached=cached, attempts=attempts, duration_s=duration)
        return Outcome(state, error=f"{self.key}: {error}" if error else None)
