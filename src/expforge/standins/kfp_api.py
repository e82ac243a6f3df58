"""A stand-in for the Kubeflow Pipelines v2beta1 REST API, as ``kfp.Client`` speaks to it.

Served: healthz, pipelines (list with a display_name filter, upload, upload_version, versions), experiments
(list with a filter, create), runs (create, get). Like a KFP cluster it validates an upload as a compiled
pipeline spec and a run's parameters against the version's declared inputs. Runs live a scripted life, one
step per ``GET /runs/{id}`` (tasks of the root DAG in dependency order, see
:mod:`expforge.standins.vertex_progress`), so ``submit --target kfp --wait`` sees every state without sleeps.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from expforge.standins.http_base import Captured, HttpStandin, Reply, error, serve
from expforge.standins.kfp_registry import _multipart
from expforge.standins.vertex_progress import task_order

API = "/apis/v2beta1"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunLife:
    """How runs end: ``outcome`` SUCCEEDED/FAILED/CANCELED; ``failing_task`` fails with ``error``."""

    outcome: str = "SUCCEEDED"
    failing_task: str | None = None
    error: str = "failed with exit code 1"


def _equals_filter(request: Captured) -> tuple[str, str] | None:
    """(key, value) of a ``{"predicates": [{"operation": EQUALS, ...}]}`` filter, if any."""
    text = request.query.get("filter")
    if not text:
        return None
    predicates = json.loads(text).get("predicates", [])
    for predicate in predicates:
        if predicate.get("operation") in (1, "EQUALS"):
            value = predicate.get("string_value", predicate.get("stringValue"))
            return str(predicate.get("key")), str(value)
    return None


@dataclass
class KfpApi:
    """In-memory pipelines, versions, experiments and runs."""

    life: RunLife = field(default_factory=RunLife)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # pipeline id -> versions
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _frames: dict[str, list[tuple[str, dict[str, tuple[str, str]]]]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _counter: Any = field(default_factory=lambda: itertools.count(1))

    def healthz(self, request: Captured, match: Any) -> Reply:
        return Reply(200, {"commit_sha": "expforge-standin", "tag_name": "2.5.0", "multi_user": False})

    def list_pipelines(self, request: Captured, match: Any) -> Reply:
        wanted = _equals_filter(request)
        with self._lock:
            found = [p for p in self.pipelines.values() if wanted is None or p.get(wanted[0]) == wanted[1]]
        return Reply(200, {"pipelines": found, "total_size": len(found)} if found else {})

    def _spec(self, request: Captured) -> dict[str, Any] | Reply:
        content = _multipart(request).get("uploadfile")
        if not content:
            return error(400, "expected a multipart file 'uploadfile'")
        try:
            spec = next(iter(yaml.safe_load_all(content)), None)
        except yaml.YAMLError as exc:
            return error(400, f"the pipeline file is not YAML: {exc}")
        if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
            return error(400, "the pipeline file is not a compiled pipeline spec (root, pipelineInfo)")
        return spec

    def _add_version(self, pipeline_id: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "created_at": _now(),
            "pipeline_spec": spec,
        }
        self.versions.setdefault(pipeline_id, []).append(version)
        return version

    def upload(self, request: Captured, match: Any) -> Reply:
        spec = self._spec(request)
        if isinstance(spec, Reply):
            return spec
        name = request.query.get("name") or request.query.get("display_name") or spec["pipelineInfo"]["name"]
        with self._lock:
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return error(409, f"a pipeline named {name} already exists")
            pipeline_id = str(uuid.uuid4())
            pipeline = {
                "pipeline_id": pipeline_id,
                "display_name": name,
                "name": name,
                "created_at": _now(),
                "namespace": request.query.get("namespace", ""),
            }
            self.pipelines[pipeline_id] = pipeline
            self._add_version(pipeline_id, name, spec)
        return Reply(200, pipeline)

    def upload_version(self, request: Captured, match: Any) -> Reply:
        spec = self._spec(request)
        if isinstance(spec, Reply):
            return spec
        pipeline_id = request.query.get("pipelineid", "")
        with self._lock:
            if pipeline_id not in self.pipelines:
                return error(404, f"pipeline {pipeline_id} not found")
            name = request.query.get("name") or f"{self.pipelines[pipeline_id]['display_name']}-v"
            if any(v["display_name"] == name for v in self.versions[pipeline_id]):
                return error(409, f"a version named {name} already exists")
            return Reply(200, self._add_version(pipeline_id, name, spec))

    def list_versions(self, request: Captured, match: Any) -> Reply:
        with self._lock:
            found = list(self.versions.get(match.group(1), []))
        if request.query.get("sort_by", "").endswith(" desc"):
            found.reverse()
        return Reply(200, {"pipeline_versions": found, "total_size": len(found)} if found else {})

    def list_experiments(self, request: Captured, match: Any) -> Reply:
        wanted = _equals_filter(request)
        with self._lock:
            found = [e for e in self.experiments.values() if wanted is None or e.get(wanted[0]) == wanted[1]]
        return Reply(200, {"experiments": found, "total_size": len(found)} if found else {})

    def create_experiment(self, request: Captured, match: Any) -> Reply:
        body = request.json() or {}
        if not body.get("display_name"):
            return error(400, "experiment.display_name: required")
        with self._lock:
            experiment = {
                "experiment_id": str(uuid.uuid4()),
                "display_name": body["display_name"],
                "description": body.get("description") or "",
                "namespace": body.get("namespace") or "",
                "created_at": _now(),
                "storage_state": "AVAILABLE",
            }
            self.experiments[experiment["experiment_id"]] = experiment
        return Reply(200, experiment)

    def create_run(self, request: Captured, match: Any) -> Reply:
        body = request.json() or {}
        reference = body.get("pipeline_version_reference") or {}
        with self._lock:
            versions = {v["pipeline_version_id"]: v for v in self.versions.get(reference.get("pipeline_id", ""), [])}
            spec = body.get("pipeline_spec") or versions.get(reference.get("pipeline_version_id", ""), {}).get(
                "pipeline_spec"
            )
            if spec is None:
                return error(400, "run: expected pipeline_spec or a pipeline_version_reference that exists")
            if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
                return error(404, f"experiment {body['experiment_id']} not found")
            declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
            given = (body.get("runtime_config") or {}).get("parameters") or {}
            unknown = sorted(set(given) - set(declared))
            if unknown:
                return error(400, f"run: parameter {unknown[0]} is not declared by the pipeline")
            run_id = str(uuid.uuid4())
            run = {
                **body,
                "run_id": run_id,
                "state": "PENDING",
                "created_at": _now(),
                "storage_state": "AVAILABLE",
                "run_details": {"task_details": []},
            }
            self.runs[run_id] = run
            self._frames[run_id] = self._life(spec)
            return Reply(200, run)

    def _life(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
        order = task_order(spec)
        frames: list[tuple[str, dict[str, tuple[str, str]]]] = [("RUNNING", {t: ("PENDING", "") for t in order})]
        for task in order:
            frames.append(("RUNNING", {task: ("RUNNING", "")}))
            if task == self.life.failing_task:
                frames.append(("FAILED", {task: ("FAILED", self.life.error)}))
                return frames
            frames.append(("RUNNING", {task: ("SUCCEEDED", "")}))
        frames.append((self.life.outcome, {}))
        return frames

    def get_run(self, request: Captured, match: Any) -> Reply:
        run_id = match.group(1)
        with self._lock:
            run = self.runs.get(run_id)
            if run is None:
                return error(404, f"run {run_id} not found")
            frames = self._frames.get(run_id) or []
            if frames:
                state, tasks = frames.pop(0)
                run["state"] = state
                details = {t["display_name"]: t for t in run["run_details"]["task_details"]}
                for name, (task_state, message) in tasks.items():
                    detail = details.setdefault(name, {"display_name": name, "task_id": str(uuid.uuid4())})
                    detail["state"] = task_state
                    if message:
                        detail["error"] = {"code": 2, "message": message}
                run["run_details"]["task_details"] = list(details.values())
                if state in ("SUCCEEDED", "FAILED", "CANCELED"):
                    run["finished_at"] = _now()
            return Reply(200, run)

    def routes(self) -> list[tuple[str, str, Any]]:
        """(method, path regex, handler) of every served call."""
        return [
            ("GET", f"{API}/healthz", self.healthz),
            ("GET", f"{API}/pipelines", self.list_pipelines),
            ("POST", f"{API}/pipelines/upload", self.upload),
            ("POST", f"{API}/pipelines/upload_version", self.upload_version),
            ("GET", f"{API}/pipelines/([^/]+)/versions", self.list_versions),
            ("GET", f"{API}/experiments", self.list_experiments),
            ("POST", f"{API}/experiments", self.create_experiment),
            ("POST", f"{API}/runs", self.create_run),
            ("GET", f"{API}/runs/([^/:]+)", self.get_run),
        ]


@dataclass
class KfpApiStandin:
    """The running KFP API stand-in: ``url`` (the ``--host``), its state and recorded requests."""

    http: HttpStandin
    api: KfpApi

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — what ``--host`` takes."""
        return self.http.url


@contextlib.contextmanager
def start_kfp_api_standin() -> Iterator[KfpApiStandin]:
    """A KFP REST stand-in on a free 127.0.0.1 port for the ``with`` block."""
    api = KfpApi()
    http = serve(api.routes())
    try:
        yield KfpApiStandin(http, api)
    finally:
        http.stop()
