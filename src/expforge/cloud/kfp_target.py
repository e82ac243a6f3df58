"""``expforge submit --target kfp``: run the compiled YAML on a self-hosted Kubeflow Pipelines cluster.

Through ``kfp.Client``: the YAML is uploaded as a new version of the pipeline of the same name (the pipeline is
created on first upload), the experiment is found or created, and a run of that version starts with the
typed parameters. The cluster must be able to pull the images the YAML names (compile with ``--images``
naming a registry the cluster reaches), and its pipeline root must be storage it can write. The host is
probed first (``/apis/v2beta1/healthz``, 5 s), so a host that does not answer is one line, not minutes of
client retries. ``kfp.Client`` prints links on stdout; they go to stderr so stdout carries the result only.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.cloud.wait import Snapshot
from expforge.errors import ExpforgeError

_DONE = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dataclass
class KfpSubmitResult:
    """The run that was started on the cluster."""

    host: str
    pipeline: str
    pipeline_id: str
    version_id: str
    run_id: str
    experiment_id: str | None = None
    parameter_values: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The run in the KFP UI."""
        return f"{self.host}/#/runs/details/{self.run_id}"


def check_host(host: str | None, timeout_s: float = 5.0) -> str:
    """``host`` (an http(s) URL) when ``GET /apis/v2beta1/healthz`` answers; else one line naming ``--host``."""
    if not host or not host.startswith(("http://", "https://")):
        raise ExpforgeError(f"--host: {host!r}: expected the KFP API URL, e.g. http://localhost:8888")
    host = host.rstrip("/")
    try:
        with urllib.request.urlopen(f"{host}/apis/v2beta1/healthz", timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise ExpforgeError(
            f"--host {host}: not a Kubeflow Pipelines v2 API (healthz answered HTTP {exc.code})"
        ) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExpforgeError(f"--host {host}: no answer from Kubeflow Pipelines ({reason})") from None
    return host


def _api_error(exc: Exception, what: str) -> ExpforgeError:
    body = getattr(exc, "body", "") or ""
    status = getattr(exc, "status", "")
    text = " ".join(str(body).split())[:300] or str(exc)
    return ExpforgeError(f"{what}: HTTP {status} {text}".strip())


def submit_kfp(
    pipeline: str | Path,
    *,
    host: str | None,
    namespace: str | None = None,
    experiment: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    enable_caching: bool | None = None,
    display_name: str | None = None,
    images: Path | None = None,
) -> KfpSubmitResult:
    """Upload ``pipeline`` as a pipeline version and start a run of it (see the module docstring)."""
    from expforge.cloud.submit import _parameter_values, compile_for_submit

    host = check_host(host)
    with tempfile.TemporaryDirectory(prefix="expforge-kfp-") as tmp:
        template, name = compile_for_submit(pipeline, images, Path(tmp))
        values = _parameter_values(template, parameters or {})
        import kfp
        import kfp_server_api

        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S-%f")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                client = kfp.Client(host=host, namespace=namespace or "kubeflow")
                pipeline_id = client.get_pipeline_id(name)
                if pipeline_id is None:
                    created = client.upload_pipeline(str(template), pipeline_name=name, namespace=namespace)
                    pipeline_id = created.pipeline_id
                    versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
                    version_id = versions.pipeline_versions[0].pipeline_version_id
                else:
                    version = client.upload_pipeline_version(
                        str(template), pipeline_version_name=f"{name}-{stamp}", pipeline_id=pipeline_id
                    )
                    version_id = version.pipeline_version_id
                experiment_id = None
                if experiment:
                    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
                run = client.run_pipeline(
                    experiment_id=experiment_id,
                    job_name=display_name or f"{name}-{stamp}",
                    params=values,
                    pipeline_id=pipeline_id,
                    version_id=version_id,
                    enable_caching=enable_caching,
                )
        except kfp_server_api.ApiException as exc:
            raise _api_error(exc, f"--host {host}: Kubeflow Pipelines refused the request") from None
    return KfpSubmitResult(host, name, pipeline_id, version_id, run.run_id, experiment_id, values)


def kfp_poller(host: str, run_id: str, namespace: str | None = None) -> Callable[[], Snapshot]:
    """A poll function over ``GET /apis/v2beta1/runs/{id}`` (one request per call)."""
    import kfp

    with contextlib.redirect_stdout(sys.stderr):
        client = kfp.Client(host=host, namespace=namespace or "kubeflow")

    def poll() -> Snapshot:
        run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        tasks = {}
        for detail in (run.run_details.task_details if run.run_details else None) or []:
            message = detail.error.message if detail.error else ""
            tasks[detail.display_name] = (str(detail.state), message or "")
        error = run.error.message if run.error else ""
        return Snapshot(state, state in _DONE, tasks, error or "")

    return poll
