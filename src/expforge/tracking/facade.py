"""What component code calls: ``with component_run("train", params) as run: run.log_metrics(...)``.

Why a façade: every component reports the same way whatever the backend, in a few lines, and the rules that
must never be forgotten live here once — the run is ended with the right state when the body fails, and the
end of the run waits until every row was delivered (or raises, naming the spool where they are kept).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from expforge.errors import ExpforgeError
from expforge.task_env import TaskEnvironment
from expforge.tracking.base import RunStart, Tracker
from expforge.tracking.select import TrackingConfig, open_tracker


class ActiveRun:
    """The run a ``with`` block reports to (see :class:`~expforge.tracking.base.Tracker` for the semantics)."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        """False when tracking is off (callers may skip expensive metric computations)."""
        return self.tracker.backend != "off"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge parameters into the run."""
        self.tracker.log_params(self.run_id, params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Final metrics (``step=None``) or one point of each metric's per-epoch series."""
        self.tracker.log_metrics(self.run_id, metrics, step)

    def log_artifacts(self, artifacts: Mapping[str, str]) -> None:
        """Name → URI of artifacts the run produced."""
        self.tracker.log_artifacts(self.run_id, artifacts)


def _final_state(exc: BaseException | None) -> str:
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "SUCCEEDED"
    if isinstance(exc, KeyboardInterrupt):
        return "CANCELLED"
    return "FAILED"


@contextlib.contextmanager
def tracked_run(tracker: Tracker, start: RunStart, *, close: bool = True) -> Iterator[ActiveRun]:
    """Start ``start`` on ``tracker``, yield it, end it with the block's outcome and deliver everything.

    A failing block ends the run ``FAILED`` and re-raises its own exception (a tracking problem at that point
    is attached as a note, not raised instead). A successful block raises :class:`ExpforgeError` if rows could
    not be delivered — the message names the spool file that keeps them.
    """
    tracker.start_run(start)
    try:
        yield ActiveRun(tracker, start.run_id)
    except BaseException as exc:
        try:
            tracker.end_run(start.run_id, _final_state(exc))
            tracker.close() if close else tracker.flush()
        except ExpforgeError as problem:
            exc.add_note(f"tracking: {problem}")
            print(f"expforge: tracking: {problem}", file=sys.stderr, flush=True)
        raise
    tracker.end_run(start.run_id, "SUCCEEDED")
    if close:
        tracker.close()
    else:
        tracker.flush()


def component_run_id(step: str, env: Mapping[str, str] | None = None) -> str:
    """``<EXPFORGE_RUN_ID>/<EXPFORGE_TASK_KEY or step>``; standalone (no pipeline run): ``<step>-<time>-<hex>``."""
    task_env = TaskEnvironment.from_env(env)
    pipeline_run = task_env.run_id
    task = task_env.task_key or step
    if pipeline_run:
        return f"{pipeline_run}/{task}"
    return f"{task}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def component_start(
    step: str,
    params: Mapping[str, Any] | None = None,
    *,
    datasets: Sequence[str] = (),
    run_id: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, str] | None = None,
    note: str = "",
    env: Mapping[str, str] | None = None,
) -> RunStart:
    """The :class:`RunStart` of a component run, provenance captured from this process and ``env``."""
    from expforge.tracking.context import capture

    env = os.environ if env is None else env
    task_env = TaskEnvironment.from_env(env)
    pipeline = task_env.pipeline or ""
    digest = task_env.image_digest
    return RunStart(
        run_id=run_id or component_run_id(step, env),
        experiment=experiment or task_env.experiment or pipeline or "default",
        pipeline=pipeline,
        step=step,
        parent_run_id=task_env.run_id,
        datasets=[str(d) for d in datasets],
        image_digests={step: digest} if digest else {},
        params=dict(params or {}),
        tags=dict(tags or {}),
        note=note,
        **capture(env=env).start_fields(),
    )


@contextlib.contextmanager
def component_run(
    step: str,
    params: Mapping[str, Any] | None = None,
    *,
    datasets: Sequence[str] = (),
    run_id: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, str] | None = None,
    note: str = "",
    env: Mapping[str, str] | None = None,
    tracker: Tracker | None = None,
) -> Iterator[ActiveRun]:
    """Track one component execution with the configured backend (see :mod:`expforge.tracking.select`).

    ``with component_run("train", {"lr": 0.1}, datasets=[dataset_id]) as run:`` then
    ``run.log_metrics({"val_loss": x}, step=epoch)`` per epoch and ``run.log_metrics({"accuracy": a})`` at the
    end. With tracking off this costs nothing (no provenance is captured).
    """
    env = os.environ if env is None else env
    if tracker is None:
        tracker = open_tracker(TrackingConfig.from_env(env))
    if tracker.backend == "off":
        yield ActiveRun(tracker, run_id or step)
        return
    start = component_start(
        step, params, datasets=datasets, run_id=run_id, experiment=experiment, tags=tags, note=note, env=env
    )
    with tracked_run(tracker, start) as run:
        yield run
