"""``ModelService`` of the Vertex AI stand-in: the Model Registry's versions, aliases and evaluations.

The rules the registry code relies on, as Vertex applies them:
* ``UploadModel`` without ``parent_model`` makes a model whose version ``1`` is the default; with
  ``parent_model`` it adds the next version number. ``version_aliases`` carry ``default`` when the new version
  becomes the default (the SDK adds it for ``is_default_version=True``).
* An alias names at most one version of a model: giving it to a version takes it from the other one.
  ``MergeVersionAliases`` adds aliases and removes ``-alias`` ones; ``default`` cannot be removed, only moved.
* ``models/ID@2`` and ``models/ID@alias`` name one version; ``models/ID`` names the default version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

from expforge.standins.vertex_filter import compile_filter
from expforge.standins.vertex_grpc import V1, invalid, not_found, rpc
from expforge.standins.vertex_operations import Operations
from expforge.standins.vertex_resources import ResourceService, check_location, child_id, copy_message, now, paginate

_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
DEFAULT_ALIAS = "default"


@dataclass
class _ModelEntry:
    versions: dict[str, types.Model] = field(default_factory=dict)  # version id -> Model
    evaluations: dict[str, types.ModelEvaluation] = field(default_factory=dict)  # name -> evaluation
    evaluation_version: dict[str, str] = field(default_factory=dict)  # evaluation name -> version id
    next_version: int = 1

    def version_with_alias(self, alias: str) -> str | None:
        return next((vid for vid, m in self.versions.items() if alias in m.version_aliases), None)

    def take_alias(self, alias: str, version_id: str) -> None:
        """Give ``alias`` to ``version_id`` (removing it from any other version)."""
        for vid, model in self.versions.items():
            if vid != version_id and alias in model.version_aliases:
                model.version_aliases = [a for a in model.version_aliases if a != alias]
                model.version_update_time = now()
        target = self.versions[version_id]
        if alias not in target.version_aliases:
            target.version_aliases = [*target.version_aliases, alias]


def _check_aliases(aliases: list[str], *, allow_removal: bool) -> None:
    for alias in aliases:
        bare = alias[1:] if allow_removal and alias.startswith("-") else alias
        if not _ALIAS.fullmatch(bare) or bare.isdigit():
            raise invalid(
                f"version alias {alias!r}: expected [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9] (not a version number)"
            )


class Models(ResourceService):
    """In-memory Model Registry answering the ``ModelService`` RPCs the SDK uses."""

    SERVICE = f"{V1}.ModelService"

    def __init__(self, operations: Operations) -> None:
        super().__init__(operations, 7_000_000_000_000_000_000)
        self._models: dict[str, _ModelEntry] = {}  # model resource name (no version) -> entry

    # --- names -------------------------------------------------------------------------------------------

    def _resolve(self, name: str) -> tuple[str, _ModelEntry, str]:
        """(model name, entry, version id) for ``models/ID``, ``models/ID@VERSION`` or ``models/ID@ALIAS``."""
        base, _, suffix = name.partition("@")
        entry = self._models.get(base)
        if entry is None or not entry.versions:
            raise not_found(f"Model {base}")
        if not suffix:
            version = entry.version_with_alias(DEFAULT_ALIAS)
        elif suffix in entry.versions:
            version = suffix
        else:
            version = entry.version_with_alias(suffix)
        if version is None:
            raise not_found(f"Model {name}")
        return base, entry, version

    # --- RPCs --------------------------------------------------------------------------------------------

    @rpc(types.UploadModelRequest, operations_pb2.Operation)
    def upload_model(self, request: types.UploadModelRequest) -> operations_pb2.Operation:
        """Register a new model or a new version of ``parent_model``; answer a done operation."""
        check_location(request.parent)
        model = copy_message(request.model)
        if not model.display_name:
            raise invalid("model.display_name is required")
        aliases = list(dict.fromkeys(model.version_aliases))
        _check_aliases(aliases, allow_removal=False)
        with self._lock:
            if request.parent_model:
                base, entry, _ = self._resolve(request.parent_model.partition("@")[0])
            else:
                base = f"{request.parent}/models/{child_id(request.model_id, self._ids)}"
                if base in self._models:
                    raise invalid(f"model id {request.model_id!r} already exists in {request.parent}")
                entry = self._models[base] = _ModelEntry()
                if DEFAULT_ALIAS not in aliases:
                    aliases.append(DEFAULT_ALIAS)  # a model's first version is its default
            version_id = str(entry.next_version)
            entry.next_version += 1
            stamp = now()
            model.name = base
            model.version_id = version_id
            model.version_aliases = []
            model.version_create_time = stamp
            model.version_update_time = stamp
            first = next(iter(entry.versions.values()), None)
            model.create_time = first.create_time if first is not None else stamp
            model.update_time = stamp
            entry.versions[version_id] = model
            for alias in aliases:
                entry.take_alias(alias, version_id)
            response = types.UploadModelResponse(model=base, model_version_id=version_id)
        metadata = types.UploadModelOperationMetadata()
        return self._operations.finished(base, response, metadata)

    @rpc(types.GetModelRequest, types.Model)
    def get_model(self, request: types.GetModelRequest) -> types.Model:
        """One version (the default one when the name has no ``@`` suffix)."""
        with self._lock:
            _, entry, version = self._resolve(request.name)
            return copy_message(entry.versions[version])

    @rpc(types.ListModelsRequest, types.ListModelsResponse)
    def list_models(self, request: types.ListModelsRequest) -> types.ListModelsResponse:
        """The default version of every model in a location, filtered."""
        check_location(request.parent)
        keep = compile_filter(request.filter)
        with self._lock:
            found = []
            for base, entry in self._models.items():
                if not base.startswith(f"{request.parent}/models/") or not entry.versions:
                    continue
                default = entry.versions[entry.version_with_alias(DEFAULT_ALIAS) or max(entry.versions, key=int)]
                if keep(types.Model.to_dict(default, preserving_proto_field_name=True)):
                    found.append(copy_message(default))
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListModelsResponse(models=page, next_page_token=token)

    @rpc(types.ListModelVersionsRequest, types.ListModelVersionsResponse)
    def list_model_versions(self, request: types.ListModelVersionsRequest) -> types.ListModelVersionsResponse:
        """Every version of one model, oldest first."""
        keep = compile_filter(request.filter)
        with self._lock:
            base, entry, _ = self._resolve(request.name.partition("@")[0])
            found = [
                copy_message(model)
                for _, model in sorted(entry.versions.items(), key=lambda item: int(item[0]))
                if keep(types.Model.to_dict(model, preserving_proto_field_name=True))
            ]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListModelVersionsResponse(models=page, next_page_token=token)

    @rpc(types.MergeVersionAliasesRequest, types.Model)
    def merge_version_aliases(self, request: types.MergeVersionAliasesRequest) -> types.Model:
        """Add aliases to one version (moving them from others); ``-alias`` removes one."""
        aliases = list(request.version_aliases)
        _check_aliases(aliases, allow_removal=True)
        with self._lock:
            _, entry, version = self._resolve(request.name)
            model = entry.versions[version]
            for alias in aliases:
                if alias.startswith("-"):
                    if alias[1:] == DEFAULT_ALIAS:
                        raise invalid("the default alias cannot be removed; give it to another version instead")
                    model.version_aliases = [a for a in model.version_aliases if a != alias[1:]]
                else:
                    entry.take_alias(alias, version)
            model.version_update_time = now()
            return copy_message(model)

    @rpc(types.UpdateModelRequest, types.Model)
    def update_model(self, request: types.UpdateModelRequest) -> types.Model:
        """Update the fields named in ``update_mask`` of one version (labels, description, display name)."""
        mask: field_mask_pb2.FieldMask = request.update_mask
        with self._lock:
            _, entry, version = self._resolve(request.model.name)
            model = entry.versions[version]
            for path in mask.paths:
                if path not in type(model).meta.fields:
                    raise invalid(f"update_mask: unknown field {path!r}")
                setattr(model, path, getattr(request.model, path))
            model.update_time = now()
            return copy_message(model)

    @rpc(types.DeleteModelRequest, operations_pb2.Operation)
    def delete_model(self, request: types.DeleteModelRequest) -> operations_pb2.Operation:
        """Delete a model with all its versions."""
        with self._lock:
            base, _, _ = self._resolve(request.name.partition("@")[0])
            del self._models[base]
        return self._operations.finished(base, None, types.DeleteOperationMetadata())

    @rpc(types.DeleteModelVersionRequest, operations_pb2.Operation)
    def delete_model_version(self, request: types.DeleteModelVersionRequest) -> operations_pb2.Operation:
        """Delete one version; the default version cannot be deleted (as in Vertex)."""
        with self._lock:
            base, entry, version = self._resolve(request.name)
            if DEFAULT_ALIAS in entry.versions[version].version_aliases:
                raise invalid(f"{request.name} is the default version; move the default alias first")
            del entry.versions[version]
        return self._operations.finished(base, None, types.DeleteOperationMetadata())

    @rpc(types.ImportModelEvaluationRequest, types.ModelEvaluation)
    def import_model_evaluation(self, request: types.ImportModelEvaluationRequest) -> types.ModelEvaluation:
        """Attach an evaluation to one model version."""
        with self._lock:
            base, entry, version = self._resolve(request.parent)
            evaluation = copy_message(request.model_evaluation)
            evaluation.name = f"{base}/evaluations/{self._ids.next()}"
            evaluation.create_time = now()
            entry.evaluations[evaluation.name] = evaluation
            entry.evaluation_version[evaluation.name] = version
            return copy_message(evaluation)

    @rpc(types.GetModelEvaluationRequest, types.ModelEvaluation)
    def get_model_evaluation(self, request: types.GetModelEvaluationRequest) -> types.ModelEvaluation:
        """One evaluation by name."""
        with self._lock:
            base = request.name.split("/evaluations/")[0].partition("@")[0]
            entry = self._models.get(base)
            if entry is None or request.name not in entry.evaluations:
                raise not_found(f"ModelEvaluation {request.name}")
            return copy_message(entry.evaluations[request.name])

    @rpc(types.ListModelEvaluationsRequest, types.ListModelEvaluationsResponse)
    def list_model_evaluations(self, request: types.ListModelEvaluationsRequest) -> types.ListModelEvaluationsResponse:
        """Evaluations of one version (the default one without an ``@`` suffix), oldest first."""
        keep = compile_filter(request.filter)
        with self._lock:
            _, entry, version = self._resolve(request.parent)
            found = [
                copy_message(evaluation)
                for name, evaluation in entry.evaluations.items()
                if entry.evaluation_version[name] == version
                and keep(types.ModelEvaluation.to_dict(evaluation, preserving_proto_field_name=True))
            ]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListModelEvaluationsResponse(model_evaluations=page, next_page_token=token)
