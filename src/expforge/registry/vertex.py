"""The Vertex AI Model Registry backend: versions of one parent model, aliases, evaluations attached.

How a registration maps onto Vertex:

1. the model files are uploaded to ``gs://$EXPFORGE_MODEL_BUCKET/[prefix/]models/<name>/<unique>/``;
2. ``UploadModel`` adds a version: a new model (display name = model name) the first time, else a version
   of that parent model (``parent_model``); labels as given, ``metadata`` as the version description (JSON);
3. ``ImportModelEvaluation`` attaches the evaluation: the headline numbers and confusion matrix as
   ``metrics`` (Vertex's classification metrics schema, so the console shows them), the whole evaluation in
   ``metadata`` (as a struct, and as exact JSON that :meth:`VertexRegistry.get` reads back);
4. ``MergeVersionAliases`` gives the requested aliases, taking them from the versions that held them.

Aliases come last on purpose: if upload or import fails, the new version (or the new model) and its files are
deleted again and no alias has moved, so the previous champion is still the champion.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError
from expforge.gcloud_clients import init_aiplatform, storage_client
from expforge.registry.base import (
    DEFAULT_ALIAS,
    ModelRegistry,
    ModelVersion,
    NotRegisteredError,
    Registration,
    check_alias,
    check_model_name,
)

PROJECT_ENV = "EXPFORGE_GCP_PROJECT"
REGION_ENV = "EXPFORGE_GCP_REGION"
ENDPOINT_ENV = "EXPFORGE_VERTEX_ENDPOINT"
BUCKET_ENV = "EXPFORGE_MODEL_BUCKET"
GCS_BUCKET_ENV = "EXPFORGE_GCS_BUCKET"  # the project's general bucket: used when no model bucket is named
SERVING_IMAGE_ENV = "EXPFORGE_SERVING_IMAGE"
CLASSIFICATION_METRICS_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"

log = logging.getLogger(__name__)


def _require_env(name: str, purpose: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ExpforgeError(f"{name}: not set; the Vertex registry needs {purpose}")
    return value


def _api_error(action: str, exc: Exception) -> ExpforgeError:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ExpforgeError(f"Vertex AI {action} failed: {message}")


def parse_bucket(value: str) -> tuple[str, str]:
    """``bucket``, ``gs://bucket`` or ``gs://bucket/prefix`` → (bucket, prefix without slashes)."""
    text = value.strip().removeprefix("gs://").strip("/")
    bucket, _, prefix = text.partition("/")
    if not bucket:
        raise ExpforgeError(f"{BUCKET_ENV} {value!r}: expected a bucket name or gs://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


def classification_metrics(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an expforge evaluation that Vertex's classification metrics schema describes."""
    metrics: dict[str, Any] = {}
    for key, name in (("accuracy", "accuracy"), ("macro_f1", "macroF1"), ("log_loss", "logLoss")):
        value = evaluation.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
    matrix, labels = evaluation.get("confusion_matrix"), evaluation.get("labels")
    if isinstance(matrix, list) and isinstance(labels, list) and len(matrix) == len(labels):
        metrics["confusionMatrix"] = {
            "annotationSpecs": [{"displayName": str(label)} for label in labels],
            "rows": [[float(v) for v in row] for row in matrix],
        }
    return metrics


class VertexRegistry(ModelRegistry):
    """A :class:`~expforge.registry.base.ModelRegistry` on Vertex AI Model Registry (see the module docstring)."""

    kind = "vertex"

    def __init__(
        self,
        *,
        project: str,
        location: str,
        bucket: str,
        serving_image: str,
        api_endpoint: str | None = None,
        credentials: Any = None,
    ) -> None:
        self.project = project
        self.location = location
        self.bucket, self.prefix = parse_bucket(bucket)
        self.serving_image = serving_image
        self.api_endpoint = api_endpoint
        # (a stand-in endpoint on this machine gets anonymous credentials: no Google account involved)
        self.credentials = init_aiplatform(project, location, endpoint=api_endpoint, credentials=credentials)

    @classmethod
    def from_environment(cls, **overrides: Any) -> VertexRegistry:
        """Settings from ``EXPFORGE_GCP_PROJECT``, ``EXPFORGE_GCP_REGION``, ``EXPFORGE_MODEL_BUCKET`` (else
        ``EXPFORGE_GCS_BUCKET``), ``EXPFORGE_SERVING_IMAGE`` and (optional) ``EXPFORGE_VERTEX_ENDPOINT``;
        ``overrides`` win."""
        settings: dict[str, Any] = dict(overrides)
        if "project" not in settings:
            settings["project"] = _require_env(PROJECT_ENV, "the Google Cloud project")
        if "location" not in settings:
            settings["location"] = _require_env(REGION_ENV, "the region of the Model Registry")
        if "bucket" not in settings:
            fallback = os.environ.get(GCS_BUCKET_ENV, "").strip()
            settings["bucket"] = fallback or _require_env(BUCKET_ENV, "a Cloud Storage bucket for the model files")
        if "serving_image" not in settings:
            settings["serving_image"] = _require_env(SERVING_IMAGE_ENV, "a serving container image for versions")
        settings.setdefault("api_endpoint", os.environ.get(ENDPOINT_ENV) or None)
        return cls(**settings)

    # --- Cloud Storage -----------------------------------------------------------------------------------

    def _storage(self) -> Any:
        return storage_client(self.project, credentials=self.credentials)

    def _upload_files(self, source: Path, name: str) -> tuple[str, list[Any]]:
        """Upload a file or a directory tree under a fresh prefix; return its ``gs://`` directory and the blobs."""
        bucket = self._storage().bucket(self.bucket)
        folder = "/".join(p for p in (self.prefix, "models", name, uuid.uuid4().hex) if p)
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        base = source.parent if source.is_file() else source
        blobs: list[Any] = []
        try:
            for file in files:
                blob = bucket.blob(f"{folder}/{file.relative_to(base).as_posix()}")
                blob.upload_from_filename(str(file))
                blobs.append(blob)
        except Exception as exc:
            self._delete_blobs(blobs)
            raise _api_error(f"upload to gs://{self.bucket}/{folder}", exc) from None
        return f"gs://{self.bucket}/{folder}", blobs

    @staticmethod
    def _delete_blobs(blobs: Sequence[Any]) -> None:
        for blob in blobs:
            with contextlib.suppress(Exception):
                blob.delete()

    # --- Vertex lookups ----------------------------------------------------------------------------------

    def _find_model(self, name: str) -> Any | None:
        """The parent model whose display name is ``name`` (the oldest, should there be several)."""
        from google.cloud import aiplatform

        try:
            found = aiplatform.Model.list(
                filter=f'display_name="{name}"',
                order_by="create_time",
                project=self.project,
                location=self.location,
                credentials=self.credentials,
            )
        except Exception as exc:
            raise _api_error(f"ListModels for {name!r}", exc) from None
        return found[0] if found else None

    def _model(self, resource: str) -> Any:
        from google.api_core import exceptions
        from google.cloud import aiplatform

        try:
            return aiplatform.Model(
                resource, project=self.project, location=self.location, credentials=self.credentials
            )
        except exceptions.NotFound:
            raise NotRegisteredError(f"{resource}: no such model version") from None
        except Exception as exc:
            raise _api_error(f"GetModel {resource}", exc) from None

    def _registry(self, model: Any) -> Any:
        from google.cloud.aiplatform import models

        return models.ModelRegistry(model, project=self.project, location=self.location, credentials=self.credentials)

    def _evaluation_of(self, model: Any) -> dict[str, Any]:
        """The evaluation last imported for this version (``metadata.evaluation``), or ``{}``."""
        try:
            pages = model.api_client.list_model_evaluations(parent=model.versioned_resource_name)
            evaluations = list(pages)
        except Exception as exc:
            raise _api_error(f"ListModelEvaluations for {model.versioned_resource_name}", exc) from None
        for evaluation in reversed(evaluations):
            metadata = evaluation.metadata
            text = metadata.get("evaluation_json") if isinstance(metadata, Mapping) else None
            if isinstance(text, str):
                with contextlib.suppress(ValueError):
                    return json.loads(text)
        return {}

    def _to_version(self, name: str, gca: Any, evaluation: dict[str, Any]) -> ModelVersion:
        try:
            metadata = json.loads(gca.version_description) if gca.version_description else {}
        except ValueError:
            metadata = {"description": gca.version_description}
        created = gca.version_create_time
        return ModelVersion(
            name=name,
            version_id=str(gca.version_id),
            aliases=sorted(gca.version_aliases),
            uri=gca.artifact_uri,
            evaluation=evaluation,
            metadata=metadata if isinstance(metadata, dict) else {"description": metadata},
            labels=dict(gca.labels),
            created=created.isoformat() if hasattr(created, "isoformat") else str(created or ""),
            resource=f"{gca.name}@{gca.version_id}",
        )

    # --- the protocol ------------------------------------------------------------------------------------

    def _register(self, request: Registration) -> ModelVersion:
        """Upload the files, add a version, attach the evaluation, then move the aliases (module docstring)."""
        from google.cloud import aiplatform
        from google.cloud.aiplatform_v1.types import ModelEvaluation

        name, source, wanted = request.name, request.source, list(request.aliases)
        checked_evaluation, checked_metadata, checked_labels = request.evaluation, request.metadata, request.labels

        parent = self._find_model(name)
        artifact_uri, blobs = self._upload_files(source, name)
        model = None
        try:
            try:
                model = aiplatform.Model.upload(
                    display_name=name,
                    parent_model=parent.resource_name if parent is not None else None,
                    artifact_uri=artifact_uri,
                    serving_container_image_uri=self.serving_image,
                    is_default_version=parent is None,
                    version_description=json.dumps(checked_metadata, sort_keys=True) if checked_metadata else None,
                    labels=checked_labels or None,
                    project=self.project,
                    location=self.location,
                    credentials=self.credentials,
                    sync=True,
                )
            except Exception as exc:
                raise _api_error(f"UploadModel for {name!r}", exc) from None
            version_name = model.versioned_resource_name
            model_evaluation = ModelEvaluation(
                display_name=f"{name} v{model.version_id}",
                metrics_schema_uri=CLASSIFICATION_METRICS_SCHEMA,
                metrics=classification_metrics(checked_evaluation),
                # ``evaluation`` for people browsing; ``evaluation_json`` read back exactly (a protobuf Value
                # would turn every integer into a float).
                metadata={"evaluation": checked_evaluation, "evaluation_json": json.dumps(checked_evaluation)},
            )
            try:
                model.api_client.import_model_evaluation(parent=version_name, model_evaluation=model_evaluation)
            except Exception as exc:
                raise _api_error(f"ImportModelEvaluation for {version_name}", exc) from None
            if wanted:
                try:
                    self._registry(model).add_version_aliases(wanted, version=model.version_id)
                except Exception as exc:
                    raise _api_error(f"MergeVersionAliases for {version_name}", exc) from None
        except BaseException:
            self._undo(model, first=parent is None)
            self._delete_blobs(blobs)
            raise
        return self.get(name, model.version_id)

    def _undo(self, model: Any, *, first: bool) -> None:
        """Delete a half-registered version (the whole model when it was its first one)."""
        if model is None:
            return
        with contextlib.suppress(Exception):
            if first:
                model.delete(sync=True)
            else:
                self._registry(model).delete_version(model.version_id)

    def get(self, model_name: str, ref: str = DEFAULT_ALIAS) -> ModelVersion:
        name = check_model_name(model_name)
        parent = self._find_model(name)
        if parent is None:
            raise NotRegisteredError(f"model {name!r} is not registered")
        ref = str(ref)
        try:
            model = self._model(f"{parent.resource_name}@{ref}")
        except NotRegisteredError:
            what = "version" if ref.isdigit() else "version with alias"
            raise NotRegisteredError(f"model {name!r} has no {what} {ref!r}") from None
        return self._to_version(name, model.gca_resource, self._evaluation_of(model))

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        name = check_model_name(model_name)
        parent = self._find_model(name)
        if parent is None:
            return []
        try:
            versions = list(parent.api_client.list_model_versions(name=parent.resource_name))
        except Exception as exc:
            raise _api_error(f"ListModelVersions for {parent.resource_name}", exc) from None
        result = []
        for gca in sorted(versions, key=lambda m: int(m.version_id)):
            model = self._model(f"{gca.name}@{gca.version_id}")
            result.append(self._to_version(name, gca, self._evaluation_of(model)))
        return result

    def list_models(self) -> list[str]:
        """Display names of the models in the project and region."""
        from google.cloud import aiplatform

        try:
            found = aiplatform.Model.list(project=self.project, location=self.location, credentials=self.credentials)
        except Exception as exc:
            raise _api_error("ListModels", exc) from None
        return sorted({m.display_name for m in found})

    def lock(self, model_name: str) -> contextlib.AbstractContextManager[None]:
        """Vertex has no locks: two pipelines registering the same model at the same moment may both compare
        with the same champion (the later upload then holds ``champion``). Runs of one pipeline are sequential."""
        check_model_name(model_name)
        return contextlib.nullcontext()

    def set_alias(self, model_name: str, version_id: str, alias: str) -> ModelVersion:
        name = check_model_name(model_name)
        check_alias(alias)
        if not str(version_id).isdigit():
            raise ExpforgeError(f"version {version_id!r}: expected a version number (1, 2, …)")
        version = self.get(name, str(version_id))
        model = self._model(version.resource)
        try:
            self._registry(model).add_version_aliases([alias], version=version.version_id)
        except Exception as exc:
            raise _api_error(f"MergeVersionAliases for {version.resource}", exc) from None
        return self.get(name, version.version_id)

    def remove_alias(self, model_name: str, alias: str) -> None:
        name = check_model_name(model_name)
        check_alias(alias)
        if alias == DEFAULT_ALIAS:
            raise ExpforgeError("alias 'default' cannot be removed; give it to another version instead")
        try:
            holder = self.get(name, alias)
        except NotRegisteredError:
            return
        try:
            self._registry(self._model(holder.resource)).remove_version_aliases([alias], version=holder.version_id)
        except Exception as exc:
            raise _api_error(f"MergeVersionAliases for {holder.resource}", exc) from None
