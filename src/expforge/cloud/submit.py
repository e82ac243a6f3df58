"""Submit a compiled pipeline to Vertex AI Pipelines (``make pipeline-submit`` / ``expforge submit``).

The compiled YAML is the contract (DESIGN.md): a pipeline given by name is compiled here with the same image
map the images were built with (``build/images.json`` when present, or ``--images``), then handed unchanged
to ``aiplatform.PipelineJob(...).submit(experiment=..., service_account=...)``. Everything that Vertex would
reject late (a missing project/region/bucket, a bad label, an unknown parameter, an experiment name Vertex
cannot store) is rejected here first with one line naming the flag.

``dry_run`` builds the very ``CreatePipelineJobRequest`` the SDK would send (from the SDK's own PipelineJob
object) without touching the network or needing credentials, so it can be inspected or diffed in CI.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.cloud.labels import check_labels
from expforge.errors import ExpforgeError
from expforge.gcloud_clients import anonymous_credentials, init_aiplatform, is_local_endpoint
from expforge.spec.task_env_injection import Variables, as_variables, inject_task_environment
from expforge.task_env import TaskEnvironment, warn_unknown_variables

DEFAULT_IMAGES_JSON = Path("build/images.json")
CONSOLE_URL = "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job_id}?project={project}"

_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PROJECT_NUMBER = re.compile(r"[0-9]{1,20}")
_REGION = re.compile(r"[a-z]+(?:-[a-z]+)+[0-9]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_EXPERIMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_JOB_ID = re.compile(r"[a-z][-a-z0-9]{0,127}")


@dataclass
class SubmitResult:
    """What was (or, for a dry run, would be) submitted."""

    project: str
    region: str
    job_id: str
    pipeline_root: str
    pipeline: str  # the pipeline's name
    request: dict[str, Any]  # the CreatePipelineJobRequest, as JSON (camelCase, like the REST API)
    dry_run: bool
    experiment: str | None = None
    job_name: str = ""  # the created job's resource name (empty for a dry run)
    parameter_values: dict[str, Any] = field(default_factory=dict)
    template: Path | None = None  # the compiled YAML, when it was given or kept (``template_out``)
    warnings: list[str] = field(default_factory=list)

    @property
    def console_url(self) -> str:
        """Where the run shows up in the Google Cloud console."""
        return CONSOLE_URL.format(region=self.region, job_id=self.job_id, project=self.project)

    def request_json(self) -> str:
        """The request as indented JSON text (what ``--dry-run`` prints)."""
        return json.dumps(self.request, indent=2, sort_keys=True)


def _required(value: str | None, flag: str, what: str) -> str:
    if value is None or not value.strip():
        raise ExpforgeError(f"{flag}: required ({what})")
    return value.strip()


def check_target(project: str | None, region: str | None, bucket: str | None) -> tuple[str, str, str]:
    """Validate project, region and bucket (``name`` or ``gs://name``); return them (bucket without ``gs://``)."""
    project = _required(project, "--project", "the Google Cloud project ID to submit to, e.g. my-project")
    region = _required(region, "--region", "the Vertex AI region, e.g. us-central1")
    bucket = _required(bucket, "--bucket", "the Cloud Storage bucket for the pipeline root, e.g. my-bucket")
    if not (_PROJECT_ID.fullmatch(project) or _PROJECT_NUMBER.fullmatch(project)):
        raise ExpforgeError(
            f"--project: {project!r} is not a project ID (6-30 lowercase letters, digits, hyphens) or number"
        )
    if not _REGION.fullmatch(region):
        raise ExpforgeError(f"--region: {region!r} is not a Google Cloud region such as us-central1")
    name = bucket.removeprefix("gs://").rstrip("/")
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise ExpforgeError(f"--bucket: {bucket!r} is not a bucket name (lowercase letters, digits, '-', '_', '.')")
    return project, region, name


def compile_for_submit(pipeline: str | Path, images: Path | None, workdir: Path) -> tuple[Path, str]:
    """The compiled YAML and the pipeline's name: a file as given, a name compiled, a template URI downloaded."""
    return _template(pipeline, images, workdir)


def _template(pipeline: str | Path, images: Path | None, workdir: Path) -> tuple[Path, str]:
    """The compiled YAML to submit and the pipeline's name (compiling by name when it is not a file)."""
    from expforge.pipelines import PIPELINES

    if str(pipeline).startswith("https://"):  # a pushed template (expforge templates push)
        from expforge.cloud.templates import fetch_template

        fetched, ref = fetch_template(str(pipeline), workdir)
        return fetched, ref.package
    path = Path(pipeline)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path, path.stem
    name = str(pipeline)
    if name not in PIPELINES:
        raise ExpforgeError(
            f"PIPELINE: {name!r} is neither a compiled pipeline file nor a pipeline name "
            f"(known: {', '.join(sorted(PIPELINES))})"
        )
    from expforge.pipelines.compile import compile_pipeline, read_image_map

    image_file = images if images is not None else (DEFAULT_IMAGES_JSON if DEFAULT_IMAGES_JSON.is_file() else None)
    image_map = read_image_map(image_file) if image_file is not None else None
    return compile_pipeline(name, workdir / f"{name}.yaml", image_map), name


def _with_task_environment(template: Path, task_env: Variables, workdir: Path) -> Path:
    """A copy of ``template`` in ``workdir`` with ``task_env`` on every container (a given file is never
    rewritten); a malformed ``EXPFORGE_*`` value is one line naming it, an unknown name one warning."""
    variables = as_variables(task_env)
    TaskEnvironment.from_env(variables)
    warn_unknown_variables(variables, where="the submitted task environment")
    copy = workdir / f"{template.stem}-task-env{template.suffix}"
    copy.write_bytes(template.read_bytes())
    inject_task_environment(copy, variables)
    return copy


def _parameter_values(template: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """Given parameters typed by the pipeline's declared inputs (strings from the command line are parsed)."""
    from expforge.spec.parameters import typed_parameter_values

    return typed_parameter_values(template, given, flag="--param")


def _unpullable_images(template: Path) -> list[str]:
    """Images of the compiled spec that name no registry host (local tags such as ``expforge/x:hash``)."""
    from expforge.spec.parameters import spec_images

    local = []
    for image in spec_images(template):
        first = image.split("/", 1)[0]
        if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
            local.append(image)
    return local


def _is_local(endpoint: str | None) -> bool:
    return is_local_endpoint(endpoint)


@contextlib.contextmanager
def _without_sdk_bucket_check(skip: bool) -> Iterator[None]:
    """Skip the SDK's "create the pipeline-root bucket if missing" step when ``skip``.

    Why: ``PipelineJob.submit`` checks the pipeline-root bucket through the *global* Cloud Storage and Resource
    Manager endpoints, not through ``api_endpoint``. Against a local stand-in that means minutes of retries
    against hosts it cannot reach, then a logged traceback (the SDK ignores the failure). Nothing else of the
    submission depends on it, so for a local endpoint it is replaced by "use the directory as given".
    """
    if not skip:
        yield
        return
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform.utils import gcs_utils

    original = gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist

    def as_given(
        output_artifacts_gcs_dir: str | None = None,
        service_account: str | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: Credentials | None = None,
    ) -> str | None:
        """The SDK function's signature; only the directory matters here."""
        del service_account, project, location, credentials
        return output_artifacts_gcs_dir

    gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist = as_given
    try:
        yield
    finally:
        gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist = original


def submit_pipeline(
    pipeline: str | Path,
    *,
    project: str | None,
    region: str | None,
    bucket: str | None,
    experiment: str | None = None,
    service_account: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    enable_caching: bool | None = None,
    labels: Mapping[str, str] | None = None,
    display_name: str | None = None,
    job_id: str | None = None,
    images: Path | None = None,
    dry_run: bool = False,
    api_endpoint: str | None = None,
    credentials: Any | None = None,
    template_out: Path | None = None,
    task_env: Variables | None = None,
) -> SubmitResult:
    """Compile (when given a name) and submit a pipeline to Vertex AI Pipelines; see the module docstring.

    ``pipeline``: a compiled ``.yaml``/``.json`` file or a pipeline name. ``enable_caching``: None keeps the
    compiled per-task settings. ``api_endpoint``: another Vertex endpoint (a local stand-in is reached with
    anonymous credentials). ``credentials``: default: application default credentials (anonymous for a dry run
    or a local endpoint). ``template_out``: keep the compiled YAML there (default: a temporary file).
    ``task_env``: variables set on every task (e.g. ``TaskEnvironment(tracking="gcp", gcp_project=...)``), laid
    over the template's containers as ``expforge compile --env`` does.
    """
    project, region, bucket_name = check_target(project, region, bucket)
    labels = check_labels(labels or {})
    if experiment is not None and not _EXPERIMENT.fullmatch(experiment):
        raise ExpforgeError(f"--experiment: {experiment!r}: expected lowercase letters, digits and '-' (at most 128)")
    if job_id is not None and not _JOB_ID.fullmatch(job_id):
        raise ExpforgeError(f"--job-id: {job_id!r}: expected [a-z][-a-z0-9]{{0,127}}")
    if service_account is not None and "@" not in service_account:
        raise ExpforgeError(f"--service-account: {service_account!r} is not a service account e-mail address")
    pipeline_root = f"gs://{bucket_name}/pipeline-root"

    with tempfile.TemporaryDirectory(prefix="expforge-submit-") as tmp:
        template, name = _template(pipeline, images, Path(tmp))
        if task_env:
            template = _with_task_environment(template, task_env, Path(tmp))
        values = _parameter_values(template, parameters or {})

        from google.cloud import aiplatform, aiplatform_v1
        from google.cloud.aiplatform import initializer

        if credentials is None and dry_run:
            credentials = anonymous_credentials()  # (a dry run sends nothing; a local endpoint is anonymous anyway)
        init_aiplatform(project, region, endpoint=api_endpoint, credentials=credentials)
        if api_endpoint is None:
            initializer.global_config._api_endpoint = None  # (aiplatform.init never clears a previous endpoint)
        try:
            job = aiplatform.PipelineJob(
                display_name=display_name or name,
                template_path=str(template),
                job_id=job_id,
                pipeline_root=pipeline_root,
                parameter_values=values,
                enable_caching=enable_caching,
                labels=labels or None,
                project=project,
                location=region,
                credentials=credentials,
            )
        except ValueError as exc:  # the SDK's own checks (job id, labels) are user errors too
            raise ExpforgeError(f"PIPELINE {name}: {exc}") from None
        if service_account:
            job._gca_resource.service_account = service_account  # (what submit() does first)
        if str(pipeline).startswith("https://"):  # (what the SDK records for an Artifact Registry template_path)
            from expforge.cloud.templates import parse_template

            job._gca_resource.template_uri = parse_template(str(pipeline)).uri
        request = aiplatform_v1.CreatePipelineJobRequest(
            parent=job._parent, pipeline_job=job._gca_resource, pipeline_job_id=job.job_id
        )
        result = SubmitResult(
            project=project,
            region=region,
            job_id=job.job_id,
            pipeline_root=pipeline_root,
            pipeline=name,
            request=json.loads(
                aiplatform_v1.CreatePipelineJobRequest.to_json(
                    request, use_integers_for_enums=False, always_print_fields_with_no_presence=False
                )
            ),
            dry_run=dry_run,
            experiment=experiment,
            parameter_values=values,
        )
        if template == Path(pipeline):
            result.template = template
        elif template_out is not None:
            from expforge.atomic import staged_file

            with staged_file(Path(template_out)) as staging:
                Path(staging).write_bytes(template.read_bytes())
            result.template = Path(template_out)
        local_images = _unpullable_images(template)
        if local_images and not _is_local(api_endpoint):
            result.warnings.append(
                f"{len(local_images)} image(s) name no registry host (e.g. {local_images[0]}): Vertex AI will look "
                "for them on Docker Hub; for images built here, pass --images with pushed references "
                "(Cloud Build writes build/cloudbuild/images.json)"
            )
        if dry_run:
            return result
        with _without_sdk_bucket_check(_is_local(api_endpoint)):
            job.submit(service_account=service_account, experiment=experiment)
        result.job_name = job.resource_name
        result.job_id = job.resource_name.rsplit("/", 1)[-1]
        return result
