"""The pipeline run in the tracking store: one parent run per ``expforge run``, its tasks as child runs.

Components track themselves (see ``expforge.components._tracking``); the runner adds what only it knows:
the pipeline's parameters, the exact image digests of every task, the command line and the git state of the
checkout it was started from, and the final state and outputs. A tracking failure here never fails a run:
the problem becomes a warning in ``run.json`` (the tasks' own tracking fails loudly instead).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

PIPELINE_STEP = "pipeline"


class PipelineRunTracker:
    """Start the pipeline's run when the run starts; end it with the run's state and numeric outputs."""

    def __init__(self, env: Mapping[str, str], run_id: str, pipeline: str) -> None:
        self.env = dict(env)
        self.run_id = run_id
        self.pipeline = pipeline
        self.tracker: Any = None
        self.problem: str | None = None

    def start(self, parameters: Mapping[str, Any], image_digests: Mapping[str, str]) -> None:
        """Open the configured tracker and record the run's provenance; remember any problem as a warning."""
        from expforge.tracking.facade import component_start
        from expforge.tracking.select import TrackingConfig, open_tracker

        try:
            config = TrackingConfig.from_env(self.env)
            if config.backend == "off":
                return
            env = {k: v for k, v in self.env.items() if k not in ("EXPFORGE_RUN_ID", "EXPFORGE_TASK_KEY")}
            start = component_start(PIPELINE_STEP, parameters, run_id=self.run_id, env=env)
            start = replace(start, command=list(sys.argv), image_digests=dict(image_digests), pipeline=self.pipeline)
            tracker = open_tracker(config)
            tracker.start_run(start)
            self.tracker = tracker
        except Exception as exc:  # noqa: BLE001 - tracking never fails a run (sqlite3 errors, a full disk, ...)
            self.problem = f"tracking: the pipeline run was not recorded ({exc})"

    def finish(self, state: str, outputs: Mapping[str, Any]) -> None:
        """End the run with ``state``; numeric pipeline outputs become its final metrics."""
        if self.tracker is None:
            return
        try:
            numeric = {
                k: float(v) for k, v in outputs.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
            if numeric:
                self.tracker.log_metrics(self.run_id, numeric)
            artifacts = {k: v[0] for k, v in outputs.items() if isinstance(v, list) and v and isinstance(v[0], str)}
            if artifacts:
                self.tracker.log_artifacts(self.run_id, artifacts)
            self.tracker.end_run(self.run_id, state if state in ("SUCCEEDED", "FAILED", "CANCELLED") else "FAILED")
            self.tracker.close()
        except Exception as exc:  # noqa: BLE001 - tracking never fails a run (sqlite3 errors, a full disk, ...)
            self.problem = f"tracking: the pipeline run's end was not recorded ({exc})"
