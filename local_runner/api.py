"""The programmatic entry point: ``run_pipeline(spec, params, ...) -> RunResult``.

Everything that can be checked before a task starts is checked here and raised as one
:class:`~expforge.errors.ExpforgeError` line (bad YAML, unknown or mistyped parameters, a missing image, Docker
not running, a GPU request on a host without one), so a bad invocation never leaves a half-made run behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.local_runner.artifacts import LocalStorage, RuntimeArtifact, content_digest
from expforge.local_runner.backends import Backend, select_backend
from expforge.local_runner.cache import TaskCache
from expforge.local_runner.context import Outcome, RunContext
from expforge.local_runner.devmode import code_record, dev_backend
from expforge.local_runner.progress import ProgressReporter
from expforge.local_runner.reaper import reap_dead_runs
from expforge.local_runner.record import RunJournal, TaskState, now_iso
from expforge.local_runner.resources import (
    Admission,
    ResourceRequest,
    UnresolvedResource,
    check_requests_fit,
    default_max_parallel,
    host_capacity,
    host_gpu_count,
    resource_request,
)
from expforge.local_runner.scheduler import Scheduler, Scope
from expforge.local_runner.spec import PipelineSpecFile, load_pipeline_spec
from expforge.local_runner.tracking import PipelineRunTracker
from expforge.local_runner.values import resolve_pipeline_inputs
from expforge.local_runner.workspace import prepare_workspace
from expforge.task_env import TaskEnvironment, warn_unknown_variables

CACHE_DIR_NAME = ".cache"
TRACKING_DIR_NAME = ".tracking"
REGISTRY_DIR_NAME = "registry"
ALERTS_DIR_NAME = ".alerts"  # expforge.alerts.publish.ALERTS_DIR
TRACKING_CHOICES = ("local", "gcp", "off")


def default_parallelism() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers and CI)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run; ``record`` is the content of ``run.json``."""

    run_id: str
    run_dir: Path
    state: str
    pipeline_outputs: dict[str, Any]
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """The pipeline finished and every task that had to run succeeded."""
        return self.state == "SUCCEEDED"

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Per-task records, keyed like ``run.json``."""
        return self.record["tasks"]

    @property
    def record_path(self) -> Path:
        """Where ``run.json`` is."""
        return self.run_dir / "run.json"


def _new_run_id(pipeline_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline_name).strip("-") or "pipeline"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _static_request(container: Any) -> ResourceRequest | None:
    """A container's resources when they are constants; ``None`` when one is set from a pipeline parameter
    (checked when the task starts) or is malformed (the task reports it)."""
    try:
        return resource_request(container)
    except (UnresolvedResource, ValueError):
        return None


def _check_accelerators(spec: PipelineSpecFile, gpu_count: int, allow_cpu_fallback: bool) -> None:
    """Fail early for GPU requests this host cannot honour (``--allow-cpu-fallback`` runs them without a GPU
    when the host has none; each such task then warns as it starts)."""
    wanting = []
    for label, executor in sorted(spec.deployment.executors.items()):
        if executor.HasField("container"):
            request = _static_request(executor.container)
            if request is not None and request.accelerator_count > gpu_count:
                wanting.append(f"{label.removeprefix('exec-')} ({request.describe()})")
    if not wanting:
        return
    if gpu_count == 0:
        if allow_cpu_fallback:
            return
        raise ExpforgeError(
            f"{', '.join(wanting)} requests a GPU but this host has none (nvidia-smi lists no GPU); "
            "pass --allow-cpu-fallback to run without it"
        )
    raise ExpforgeError(f"{', '.join(wanting)} requests more GPUs than this host has ({gpu_count})")


def task_environment(
    root_dir: Path, run_id: str, pipeline: str, tracking: str, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], tuple[Path, ...]]:
    """The environment every task of a run gets, and the host directories tasks share.

    Components find their tracking backend and registry through these variables (the same names Vertex
    tasks get from a compiled ``--env``); under Docker the shared directories are mounted at the same path.
    ``extra`` (e.g. the endpoints of the Google Cloud stand-ins) overrides the defaults.
    """
    if tracking not in TRACKING_CHOICES:
        raise ExpforgeError(f"--tracking: unknown tracking backend {tracking!r}; expected one of local, gcp, off")
    tracking_dir = root_dir / TRACKING_DIR_NAME
    registry_dir = root_dir / REGISTRY_DIR_NAME
    # Alerts that drift-check/evaluate raise land in <root>/.alerts/alerts.jsonl: shared (and under Docker
    # mounted) like the tracking store, so an alert written inside a container reaches `expforge alerts list`.
    alerts_dir = root_dir / ALERTS_DIR_NAME
    env = TaskEnvironment(
        run_id=run_id,
        pipeline=pipeline,
        tracking=tracking,
        tracking_db=str(tracking_dir / "runs.sqlite"),
        tracking_spool=str(tracking_dir / "spool"),
        registry_root=str(registry_dir),
        alerts_root=str(root_dir),
    ).to_env()
    env.update(extra or {})
    TaskEnvironment.from_env(env)  # the overrides too: a malformed value fails the run before any task starts
    warn_unknown_variables(env, where="the run's task environment")
    return env, (tracking_dir, registry_dir, alerts_dir)


def task_read_paths(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Host files the task environment names that a container must see (e.g. the TLS roots bundle that
    trusts the Vertex AI stand-in, ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``); mounted read-only at the same path."""
    paths = []
    for key in ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",):
        value = env.get(key)
        if value and Path(value).is_file():
            paths.append(Path(value).parent)
    return tuple(paths)


def _root_artifacts(spec: PipelineSpecFile, given: Mapping[str, str]) -> dict[str, list[RuntimeArtifact]]:
    storage = LocalStorage()
    artifacts = {}
    for name, uri in given.items():
        if "://" not in uri:
            uri = str(Path(uri).expanduser().absolute())
        schema = spec.root.input_definitions.artifacts[name].artifact_type
        digest = content_digest(storage.local_path(uri))
        artifacts[name] = [RuntimeArtifact.of_type(name, uri, schema, digest=digest)]
    return artifacts


def _pipeline_outputs(outcome: Outcome) -> dict[str, Any]:
    outputs: dict[str, Any] = dict(outcome.parameters)
    for name, items in outcome.artifacts.items():
        outputs[name] = [artifact.uri for artifact in items]
    return outputs


def run_pipeline(
    spec_path: Path | str,
    params: Mapping[str, Any] | None = None,
    *,
    backend: str | Backend = "auto",
    root: Path | str = "runs",
    max_parallel: int | None = None,
    use_cache: bool = True,
    allow_cpu_fallback: bool = False,
    progress: ProgressReporter | None = None,
    run_id: str | None = None,
    tracking: str = "local",
    task_env: Mapping[str, str] | None = None,
    dev: bool = False,
) -> RunResult:
    """Execute a compiled pipeline YAML locally and return its result (``run.json`` is written as it goes).

    ``params`` maps pipeline parameter names to values; strings are parsed by the declared type (as from the
    command line), other values are type-checked. ``backend`` is ``"auto"``, ``"docker"``, ``"subprocess"``
    or a :class:`~expforge.local_runner.backends.Backend` instance. ``tracking`` (``local`` SQLite under
    ``root``, ``gcp`` or ``off``) and ``task_env`` configure what the tasks report to. Raises
    :class:`ExpforgeError` for bad input; a failing *task* is not an exception but a ``FAILED`` result.
    ``dev`` runs Docker tasks with the working tree's code mounted into their images (:mod:`.devmode`).
    """
    spec = load_pipeline_spec(spec_path)
    parameters, artifact_inputs = resolve_pipeline_inputs(spec.root, dict(params or {}))
    if max_parallel is not None and max_parallel < 1:
        raise ExpforgeError(f"--max-parallel must be at least 1, got {max_parallel}")
    containers = [e.container for e in spec.deployment.executors.values() if e.HasField("container")]
    wants_gpu = any(c.HasField("resources") and c.resources.HasField("accelerator") for c in containers)
    gpu_count = host_gpu_count() if wants_gpu else 0
    _check_accelerators(spec, gpu_count, allow_cpu_fallback)
    capacity = host_capacity(gpu_count)
    executors = {k: e.container for k, e in spec.deployment.executors.items() if e.HasField("container")}
    check_requests_fit(executors, parameters, capacity)
    slots = max_parallel or default_max_parallel(capacity)
    root_artifacts = _root_artifacts(spec, artifact_inputs)
    root_dir = Path(root).expanduser().absolute()
    run_id = run_id or _new_run_id(spec.name)
    run_dir = root_dir / run_id
    environment, shared_dirs = task_environment(root_dir, run_id, spec.name, tracking, task_env)

    cache = TaskCache(root_dir / CACHE_DIR_NAME) if use_cache else None  # checks EXPFORGE_CACHE_VERIFY
    runner = select_backend(backend, max_parallel=slots) if isinstance(backend, str) else backend
    try:
        if dev:
            runner = dev_backend(runner, root_dir)
        runner.check_images(spec.container_images())
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise ExpforgeError(f"cannot create run directory {run_dir} ({exc.strerror or exc})") from exc
        workspace = prepare_workspace(spec.workspace, run_dir)
        header = {
            "run_id": run_id,
            "pipeline": spec.name,
            "pipeline_file": str(Path(spec_path).absolute()),
            "backend": runner.name,
            "code": code_record(runner),
            "max_parallel": slots,
            "host": {"cpus": capacity.cpus, "memory": capacity.memory, "gpus": capacity.gpus},
            "cache": use_cache,
            "tracking": tracking,
            "parameters": parameters,
            "started": now_iso(),
        }
        ctx = RunContext(
            spec=spec,
            run_id=run_id,
            run_dir=run_dir,
            backend=runner,
            storage=LocalStorage(),
            cache=cache,
            record=RunJournal(run_dir / "run.json", header),
            progress=progress or ProgressReporter(),
            slots=Admission(slots, capacity),
            create_time_utc=now_iso(),
            gpu_count=gpu_count,
            allow_cpu_fallback=allow_cpu_fallback,
            task_env=environment,
            shared_dirs=shared_dirs + ((workspace,) if workspace else ()),
            read_paths=task_read_paths(environment),
            workspace=workspace,
        )
        return _run(ctx, Scope(parameters, root_artifacts))
    finally:
        runner.close()


def _image_digests(ctx: RunContext) -> dict[str, str]:
    digests = {}
    for image in ctx.spec.container_images():
        try:
            digests[image] = ctx.backend.environment_digest(image)
        except Exception:  # noqa: BLE001 - provenance only; the task itself reports a missing image
            continue
    return digests


def _run(ctx: RunContext, scope: Scope) -> RunResult:
    """Execute the root DAG, then finalize ``run.json`` and the progress view."""
    ctx.record.on_write_error = functools.partial(_stop_run, ctx)
    ctx.record.write()
    ctx.progress.start(ctx.run_id, str(ctx.run_dir), ctx.backend.name)
    for note in reap_dead_runs(ctx.run_dir.parent, ctx.backend, skip=ctx.run_dir):
        ctx.warn(note)
    tracking = PipelineRunTracker(ctx.task_env, ctx.run_id, ctx.spec.name)
    tracking.start(scope.parameters, _image_digests(ctx))
    if tracking.problem:
        ctx.warn(tracking.problem)
    for note in ctx.spec.ignored_platform_settings:
        ctx.warn(f"platform spec: {note} are ignored by the local runner")
    try:
        outcome = _execute(ctx, scope)
    finally:
        ctx.record.set_header("warnings", list(ctx.warnings))
    state = {TaskState.SUCCEEDED: "SUCCEEDED", TaskState.CANCELLED: "CANCELLED"}.get(outcome.state, "FAILED")
    ctx.record.finish(state, _pipeline_outputs(outcome) if state == "SUCCEEDED" else {}, outcome.error)
    state = ctx.record.state  # FAILED when the record itself could not be written
    tracking.finish(state, ctx.record.to_json()["pipeline_outputs"])
    if tracking.problem:
        ctx.warn(tracking.problem)
        ctx.record.set_header("warnings", list(ctx.warnings))
    ctx.progress.stop(state, str(ctx.run_dir))
    document = ctx.record.to_json()
    return RunResult(ctx.run_id, ctx.run_dir, state, document["pipeline_outputs"], document, list(ctx.warnings))


def _stop_run(ctx: RunContext, reason: str) -> None:
    """The run record cannot be written (a full disk): stop every task; the run ends FAILED with ``reason``."""
    ctx.progress.warn(reason)
    ctx.cancel.set()
    threading.Thread(target=ctx.backend.cancel_all, name="expforge:stop", daemon=True).start()


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) reached the runner: handled exactly like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """While the run executes, SIGTERM and SIGHUP cancel it as Ctrl-C does (only possible in the main thread;
    elsewhere the caller's handlers stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _ignoring_termination() -> Iterator[None]:
    """A second SIGTERM during the clean-up must not cut it short (a second Ctrl-C still can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _execute(ctx: RunContext, scope: Scope) -> Outcome:
    """Run the root DAG in a worker thread so that Ctrl-C (and SIGTERM) reach the main thread and cancel
    cleanly: running tasks are stopped, containers removed, and the run ends CANCELLED."""
    box: list[Outcome] = []
    done = threading.Event()

    def run_root() -> None:
        try:
            box.append(Scheduler(ctx).run_dag(ctx.spec.root, scope))
        finally:
            done.set()

    worker = threading.Thread(target=run_root, name="expforge:root", daemon=True)
    worker.start()
    try:
        with _terminate_like_interrupt():
            # Event.wait, not Thread.join: a join interrupted by Ctrl-C may report the thread finished too early.
            while not done.wait(0.2):
                pass
    except KeyboardInterrupt as exc:
        reason = f"terminated ({exc.args[0]})" if isinstance(exc, Terminated) else "interrupted"
        with _ignoring_termination():
            ctx.cancel.set()
            ctx.backend.cancel_all()
            done.wait()
        box[:] = [Outcome(TaskState.CANCELLED, error=reason)]
    return box[0] if box else Outcome(TaskState.FAILED, error="internal error: the scheduler stopped unexpectedly")
