"""``MetadataService`` of the Vertex AI stand-in: what Vertex Experiments is built on.

The Experiments SDK keeps everything as ML Metadata: an experiment is a ``system.Experiment`` context, a run
a ``system.ExperimentRun`` context (child of the experiment) plus, for parameters/metrics, its metadata; a
pipeline job's ``system.PipelineRun`` context becomes a child of the experiment when submitted with
``experiment=``. The stand-in keeps contexts, executions and artifacts per metadata store, context
membership (``AddContextArtifactsAndExecutions``), parent/child contexts and execution events, and answers the
filters the SDK lists with (``schema_title=...``, ``in_context(...)``, ``parent_contexts:...``).

Updates merge ``metadata`` key by key (what the SDK computes client side anyway), so two writers logging
different keys of one run never erase each other's values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import proto
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import struct_pb2

from expforge.standins.vertex_filter import compile_filter
from expforge.standins.vertex_grpc import V1, already_exists, invalid, not_found, rpc
from expforge.standins.vertex_operations import Operations
from expforge.standins.vertex_resources import ResourceService, check_location, child_id, copy_message, now, paginate

_MUTABLE = ("display_name", "labels", "schema_title", "schema_version", "description", "state", "uri")


@dataclass
class _Store:
    store: types.MetadataStore
    nodes: dict[str, Any] = field(default_factory=dict)  # resource name -> Context | Execution | Artifact
    members: dict[str, set[str]] = field(default_factory=dict)  # context -> artifact/execution names
    events: list[types.Event] = field(default_factory=list)
    schemas: dict[str, types.MetadataSchema] = field(default_factory=dict)


def _store_of(name: str) -> str:
    """``projects/P/locations/L/metadataStores/S`` of any resource inside it."""
    parts = name.split("/")
    if len(parts) < 6 or parts[4] != "metadataStores":
        raise invalid(f"{name!r}: expected projects/P/locations/L/metadataStores/STORE/...")
    return "/".join(parts[:6])


def _merge_update(stored: Any, update: Any, mask: list[str]) -> None:
    """Apply an Update* request: masked fields, or every mutable field; metadata merged key by key."""
    fields = type(stored).meta.fields
    paths = mask or [f for f in (*_MUTABLE, "metadata") if f in fields]
    for path in paths:
        top = path.split(".", 1)[0]
        if top not in fields or top in ("name", "create_time", "update_time", "etag"):
            raise invalid(f"update_mask: field {path!r} cannot be updated")
        if top == "metadata":
            merged = struct_pb2.Struct()
            merged.update(type(stored).pb(stored).metadata)
            merged.MergeFrom(type(update).pb(update).metadata)
            type(stored).pb(stored).metadata.CopyFrom(merged)
        elif mask or top in ("schema_title", "schema_version") or getattr(update, top):
            setattr(stored, top, getattr(update, top))
    stored.update_time = now()


class Metadata(ResourceService):
    """In-memory ML Metadata: stores, contexts, executions, artifacts, events and lineage queries."""

    SERVICE = f"{V1}.MetadataService"

    def __init__(self, operations: Operations) -> None:
        super().__init__(operations, 3_000_000_000_000_000_000)
        self._stores: dict[str, _Store] = {}

    # --- internals ---------------------------------------------------------------------------------------

    def _store(self, name: str, *, create: bool = True) -> _Store:
        """The store named (or containing) ``name``; Vertex creates the ``default`` store on first use."""
        store_name = _store_of(name)
        if store_name not in self._stores:
            if not create:
                raise not_found(f"MetadataStore {store_name}")
            stamp = now()
            store = types.MetadataStore(name=store_name, create_time=stamp, update_time=stamp)
            self._stores[store_name] = _Store(store)
        return self._stores[store_name]

    def _node(self, name: str, kind: type[proto.Message]) -> Any:
        node = self._store(name).nodes.get(name)
        if not isinstance(node, kind):
            raise not_found(f"{kind.__name__} {name}")
        return node

    def _create(self, parent: str, node: Any, node_id: str, collection: str) -> Any:
        with self._lock:
            store = self._store(parent)
            if parent != store.store.name:
                raise invalid(f"parent: expected a metadata store name, got {parent!r}")
            node = copy_message(node)
            node.name = f"{parent}/{collection}/{child_id(node_id, self._ids)}"
            if node.name in store.nodes:
                raise already_exists(f"{type(node).__name__} {node.name}")
            if not node.schema_title:
                raise invalid(f"{type(node).__name__}.schema_title is required")
            node.create_time = node.update_time = now()
            node.etag = "1"
            store.nodes[node.name] = node
            return copy_message(node)

    def _functions(self, store: _Store) -> dict[str, Callable[[Any, list[str]], bool]]:
        def in_context(record: Any, args: list[str]) -> bool:
            return any(record.get("name") in store.members.get(c, set()) for c in args)

        return {"in_context": in_context}

    def _list(
        self, parent: str, kind: type[proto.Message], filter_text: str, page_size: int, page_token: str
    ) -> tuple[list, str]:
        with self._lock:
            store = self._store(parent)
            keep = compile_filter(filter_text, self._functions(store))
            found = [
                copy_message(node)
                for node in store.nodes.values()
                if isinstance(node, kind) and keep(kind.to_dict(node, preserving_proto_field_name=True))
            ]
        return paginate(found, page_size, page_token)

    def _update(self, update: Any, kind: type[proto.Message], mask: Any, allow_missing: bool, collection: str) -> Any:
        with self._lock:
            store = self._store(update.name)
            if update.name not in store.nodes and allow_missing:
                parent, _, node_id = update.name.rpartition(f"/{collection}/")
                return self._create(parent, update, node_id, collection)
            stored = self._node(update.name, kind)
            _merge_update(stored, update, list(mask.paths))
            stored.etag = str(int(stored.etag or "0") + 1)
            return copy_message(stored)

    def _delete(self, name: str, kind: type[proto.Message]) -> operations_pb2.Operation:
        with self._lock:
            store = self._store(name)
            self._node(name, kind)
            del store.nodes[name]
            store.members.pop(name, None)
            for members in store.members.values():
                members.discard(name)
            for node in store.nodes.values():
                if isinstance(node, types.Context) and name in node.parent_contexts:
                    node.parent_contexts = [p for p in node.parent_contexts if p != name]
            store.events = [e for e in store.events if name not in (e.artifact, e.execution)]
        return self._operations.finished(name, None, types.DeleteOperationMetadata())

    def _purge(self, parent: str, kind: type[proto.Message], filter_text: str, force: bool) -> tuple[list[str], int]:
        with self._lock:
            store = self._store(parent)
            keep = compile_filter(filter_text, self._functions(store))
            names = [
                n
                for n, node in store.nodes.items()
                if isinstance(node, kind) and keep(kind.to_dict(node, preserving_proto_field_name=True))
            ]
            if force:
                for name in names:
                    self._delete(name, kind)
        return names[:100], len(names)

    def _subgraph(self, store: _Store, artifacts: set[str], executions: set[str]) -> types.LineageSubgraph:
        events = [e for e in store.events if e.execution in executions or e.artifact in artifacts]
        artifacts |= {e.artifact for e in events}
        executions |= {e.execution for e in events}
        return types.LineageSubgraph(
            artifacts=[copy_message(store.nodes[n]) for n in sorted(artifacts) if n in store.nodes],
            executions=[copy_message(store.nodes[n]) for n in sorted(executions) if n in store.nodes],
            events=[copy_message(e) for e in events],
        )

    def create_context(self, parent: str, context: types.Context, context_id: str = "") -> types.Context:
        """Create a context directly (how the pipeline service records a ``system.PipelineRun``)."""
        return self._create(parent, context, context_id, "contexts")

    def add_context_children(self, parent_context: str, children: list[str]) -> None:
        """Make ``children`` children of ``parent_context`` (their ``parent_contexts`` list it)."""
        with self._lock:
            self._node(parent_context, types.Context)
            for child_name in children:
                child = self._node(child_name, types.Context)
                if child_name == parent_context:
                    raise invalid(f"{child_name} cannot be its own child")
                if parent_context not in child.parent_contexts:
                    child.parent_contexts = [*child.parent_contexts, parent_context]

    # --- stores ------------------------------------------------------------------------------------------

    @rpc(types.CreateMetadataStoreRequest, operations_pb2.Operation)
    def create_metadata_store(self, request: types.CreateMetadataStoreRequest) -> operations_pb2.Operation:
        """Create a metadata store (``default`` is what the SDK asks for)."""
        check_location(request.parent)
        name = f"{request.parent}/metadataStores/{request.metadata_store_id or 'default'}"
        with self._lock:
            if name in self._stores:
                raise already_exists(f"MetadataStore {name}")
            store = self._store(name)
            store.store.description = request.metadata_store.description
            result = copy_message(store.store)
        return self._operations.finished(name, result, types.CreateMetadataStoreOperationMetadata())

    @rpc(types.GetMetadataStoreRequest, types.MetadataStore)
    def get_metadata_store(self, request: types.GetMetadataStoreRequest) -> types.MetadataStore:
        """A store that was created or used."""
        with self._lock:
            store = self._stores.get(request.name)
            if store is None:
                raise not_found(f"MetadataStore {request.name}")
            return copy_message(store.store)

    @rpc(types.ListMetadataStoresRequest, types.ListMetadataStoresResponse)
    def list_metadata_stores(self, request: types.ListMetadataStoresRequest) -> types.ListMetadataStoresResponse:
        """Stores of a location."""
        with self._lock:
            found = [copy_message(s.store) for n, s in self._stores.items() if n.startswith(f"{request.parent}/")]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListMetadataStoresResponse(metadata_stores=page, next_page_token=token)

    # --- contexts ----------------------------------------------------------------------------------------

    @rpc(types.CreateContextRequest, types.Context, name="CreateContext")
    def create_context_rpc(self, request: types.CreateContextRequest) -> types.Context:
        """CreateContext (ALREADY_EXISTS for a taken ``context_id``, which the SDK's get-or-create expects)."""
        return self._create(request.parent, request.context, request.context_id, "contexts")

    @rpc(types.GetContextRequest, types.Context)
    def get_context(self, request: types.GetContextRequest) -> types.Context:
        """One context."""
        with self._lock:
            return copy_message(self._node(request.name, types.Context))

    @rpc(types.ListContextsRequest, types.ListContextsResponse)
    def list_contexts(self, request: types.ListContextsRequest) -> types.ListContextsResponse:
        """Contexts of a store, filtered (``schema_title``, ``parent_contexts:``)."""
        page, token = self._list(request.parent, types.Context, request.filter, request.page_size, request.page_token)
        return types.ListContextsResponse(contexts=page, next_page_token=token)

    @rpc(types.UpdateContextRequest, types.Context)
    def update_context(self, request: types.UpdateContextRequest) -> types.Context:
        """Update (metadata merged key by key)."""
        return self._update(request.context, types.Context, request.update_mask, request.allow_missing, "contexts")

    @rpc(types.DeleteContextRequest, operations_pb2.Operation)
    def delete_context(self, request: types.DeleteContextRequest) -> operations_pb2.Operation:
        """Delete a context (its members stay, as in Vertex)."""
        return self._delete(request.name, types.Context)

    @rpc(types.PurgeContextsRequest, operations_pb2.Operation)
    def purge_contexts(self, request: types.PurgeContextsRequest) -> operations_pb2.Operation:
        """Delete (``force``) or count the contexts matching a filter."""
        sample, count = self._purge(request.parent, types.Context, request.filter, request.force)
        response = types.PurgeContextsResponse(purge_count=count, purge_sample=sample)
        return self._operations.finished(request.parent, response, types.PurgeContextsMetadata())

    @rpc(types.AddContextChildrenRequest, types.AddContextChildrenResponse, name="AddContextChildren")
    def add_context_children_rpc(self, request: types.AddContextChildrenRequest) -> types.AddContextChildrenResponse:
        """Link child contexts (experiment → run, experiment → pipeline run)."""
        self.add_context_children(request.context, list(request.child_contexts))
        return types.AddContextChildrenResponse()

    @rpc(types.RemoveContextChildrenRequest, types.RemoveContextChildrenResponse)
    def remove_context_children(
        self, request: types.RemoveContextChildrenRequest
    ) -> types.RemoveContextChildrenResponse:
        """Unlink child contexts."""
        with self._lock:
            for child_name in request.child_contexts:
                child = self._node(child_name, types.Context)
                child.parent_contexts = [p for p in child.parent_contexts if p != request.context]
        return types.RemoveContextChildrenResponse()

    @rpc(types.AddContextArtifactsAndExecutionsRequest, types.AddContextArtifactsAndExecutionsResponse)
    def add_context_artifacts_and_executions(
        self, request: types.AddContextArtifactsAndExecutionsRequest
    ) -> types.AddContextArtifactsAndExecutionsResponse:
        """Make artifacts and executions members of a context (what ``in_context(...)`` filters on)."""
        with self._lock:
            store = self._store(request.context)
            self._node(request.context, types.Context)
            for name in request.artifacts:
                self._node(name, types.Artifact)
            for name in request.executions:
                self._node(name, types.Execution)
            store.members.setdefault(request.context, set()).update([*request.artifacts, *request.executions])
        return types.AddContextArtifactsAndExecutionsResponse()

    @rpc(types.QueryContextLineageSubgraphRequest, types.LineageSubgraph)
    def query_context_lineage_subgraph(
        self, request: types.QueryContextLineageSubgraphRequest
    ) -> types.LineageSubgraph:
        """The context's artifacts and executions, and the events between them."""
        with self._lock:
            store = self._store(request.context)
            self._node(request.context, types.Context)
            members = store.members.get(request.context, set())
            artifacts = {n for n in members if isinstance(store.nodes.get(n), types.Artifact)}
            executions = {n for n in members if isinstance(store.nodes.get(n), types.Execution)}
            return self._subgraph(store, artifacts, executions)

    # --- executions --------------------------------------------------------------------------------------

    @rpc(types.CreateExecutionRequest, types.Execution)
    def create_execution(self, request: types.CreateExecutionRequest) -> types.Execution:
        """CreateExecution."""
        return self._create(request.parent, request.execution, request.execution_id, "executions")

    @rpc(types.GetExecutionRequest, types.Execution)
    def get_execution(self, request: types.GetExecutionRequest) -> types.Execution:
        """One execution."""
        with self._lock:
            return copy_message(self._node(request.name, types.Execution))

    @rpc(types.ListExecutionsRequest, types.ListExecutionsResponse)
    def list_executions(self, request: types.ListExecutionsRequest) -> types.ListExecutionsResponse:
        """Executions of a store, filtered (``schema_title``, ``in_context(...)``)."""
        page, token = self._list(request.parent, types.Execution, request.filter, request.page_size, request.page_token)
        return types.ListExecutionsResponse(executions=page, next_page_token=token)

    @rpc(types.UpdateExecutionRequest, types.Execution)
    def update_execution(self, request: types.UpdateExecutionRequest) -> types.Execution:
        """Update (metadata merged key by key)."""
        return self._update(
            request.execution, types.Execution, request.update_mask, request.allow_missing, "executions"
        )

    @rpc(types.DeleteExecutionRequest, operations_pb2.Operation)
    def delete_execution(self, request: types.DeleteExecutionRequest) -> operations_pb2.Operation:
        """Delete an execution."""
        return self._delete(request.name, types.Execution)

    @rpc(types.AddExecutionEventsRequest, types.AddExecutionEventsResponse)
    def add_execution_events(self, request: types.AddExecutionEventsRequest) -> types.AddExecutionEventsResponse:
        """Record INPUT/OUTPUT events between an execution and artifacts."""
        with self._lock:
            store = self._store(request.execution)
            self._node(request.execution, types.Execution)
            for event in request.events:
                self._node(event.artifact, types.Artifact)
                stored = copy_message(event)
                stored.execution = request.execution
                if not stored.event_time:
                    stored.event_time = now()
                store.events.append(stored)
        return types.AddExecutionEventsResponse()

    @rpc(types.QueryExecutionInputsAndOutputsRequest, types.LineageSubgraph)
    def query_execution_inputs_and_outputs(
        self, request: types.QueryExecutionInputsAndOutputsRequest
    ) -> types.LineageSubgraph:
        """The execution, its input and output artifacts, and the events."""
        with self._lock:
            store = self._store(request.execution)
            self._node(request.execution, types.Execution)
            return self._subgraph(store, set(), {request.execution})

    # --- artifacts ---------------------------------------------------------------------------------------

    @rpc(types.CreateArtifactRequest, types.Artifact)
    def create_artifact(self, request: types.CreateArtifactRequest) -> types.Artifact:
        """CreateArtifact."""
        return self._create(request.parent, request.artifact, request.artifact_id, "artifacts")

    @rpc(types.GetArtifactRequest, types.Artifact)
    def get_artifact(self, request: types.GetArtifactRequest) -> types.Artifact:
        """One artifact."""
        with self._lock:
            return copy_message(self._node(request.name, types.Artifact))

    @rpc(types.ListArtifactsRequest, types.ListArtifactsResponse)
    def list_artifacts(self, request: types.ListArtifactsRequest) -> types.ListArtifactsResponse:
        """Artifacts of a store, filtered (``schema_title``, ``uri``, ``in_context(...)``)."""
        page, token = self._list(request.parent, types.Artifact, request.filter, request.page_size, request.page_token)
        return types.ListArtifactsResponse(artifacts=page, next_page_token=token)

    @rpc(types.UpdateArtifactRequest, types.Artifact)
    def update_artifact(self, request: types.UpdateArtifactRequest) -> types.Artifact:
        """Update (metadata merged key by key)."""
        return self._update(request.artifact, types.Artifact, request.update_mask, request.allow_missing, "artifacts")

    @rpc(types.DeleteArtifactRequest, operations_pb2.Operation)
    def delete_artifact(self, request: types.DeleteArtifactRequest) -> operations_pb2.Operation:
        """Delete an artifact."""
        return self._delete(request.name, types.Artifact)

    @rpc(types.QueryArtifactLineageSubgraphRequest, types.LineageSubgraph)
    def query_artifact_lineage_subgraph(
        self, request: types.QueryArtifactLineageSubgraphRequest
    ) -> types.LineageSubgraph:
        """Artifacts and executions reachable from one artifact through events (``max_hops``, default all)."""
        with self._lock:
            store = self._store(request.artifact)
            self._node(request.artifact, types.Artifact)
            artifacts: set[str] = {request.artifact}
            executions: set[str] = set()
            hops = request.max_hops if request.max_hops > 0 else len(store.events) + 1
            for _ in range(hops):
                touching = [e for e in store.events if e.artifact in artifacts or e.execution in executions]
                grown_a = artifacts | {e.artifact for e in touching}
                grown_e = executions | {e.execution for e in touching}
                if (grown_a, grown_e) == (artifacts, executions):
                    break
                artifacts, executions = grown_a, grown_e
            return self._subgraph(store, artifacts, executions)

    # --- schemas -----------------------------------------------------------------------------------------

    @rpc(types.CreateMetadataSchemaRequest, types.MetadataSchema)
    def create_metadata_schema(self, request: types.CreateMetadataSchemaRequest) -> types.MetadataSchema:
        """Register a metadata schema."""
        with self._lock:
            store = self._store(request.parent)
            schema = copy_message(request.metadata_schema)
            schema.name = f"{request.parent}/metadataSchemas/{child_id(request.metadata_schema_id, self._ids)}"
            schema.create_time = now()
            store.schemas[schema.name] = schema
            return copy_message(schema)

    @rpc(types.GetMetadataSchemaRequest, types.MetadataSchema)
    def get_metadata_schema(self, request: types.GetMetadataSchemaRequest) -> types.MetadataSchema:
        """One schema."""
        with self._lock:
            schema = self._store(request.name).schemas.get(request.name)
            if schema is None:
                raise not_found(f"MetadataSchema {request.name}")
            return copy_message(schema)

    @rpc(types.ListMetadataSchemasRequest, types.ListMetadataSchemasResponse)
    def list_metadata_schemas(self, request: types.ListMetadataSchemasRequest) -> types.ListMetadataSchemasResponse:
        """Schemas of a store."""
        with self._lock:
            found = [copy_message(s) for s in self._store(request.parent).schemas.values()]
        page, token = paginate(found, request.page_size, request.page_token)
        return types.ListMetadataSchemasResponse(metadata_schemas=page, next_page_token=token)
