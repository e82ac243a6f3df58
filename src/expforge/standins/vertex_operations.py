"""Long-running operations of the Vertex AI stand-in: every operation finishes before its RPC answers.

Vertex answers UploadModel, CreateMetadataStore, CreateTensorboard, Delete* with a
``google.longrunning.Operation``; the client then polls ``google.longrunning.Operations/GetOperation`` until
``done``. The stand-in does the work synchronously and answers an operation that is already done (its result
packed in ``Any``), and keeps it so a client that polls anyway gets the same answer.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2

from expforge.standins.vertex_grpc import Service, not_found, rpc


def to_pb(message: Any) -> Any:
    """The raw protobuf of a proto-plus message (raw messages pass through)."""
    return type(message).pb(message) if hasattr(type(message), "pb") else message


class Operations(Service):
    """``google.longrunning.Operations`` over the operations the other services finished."""

    SERVICE = "google.longrunning.Operations"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1000)
        self._operations: dict[str, operations_pb2.Operation] = {}

    def finished(
        self, parent: str, response: Any | None = None, metadata: Any | None = None
    ) -> operations_pb2.Operation:
        """A done operation under ``parent`` (a resource name) carrying ``response`` (Empty when None)."""
        with self._lock:
            name = f"{parent}/operations/{next(self._ids)}"
            operation = operations_pb2.Operation(name=name, done=True)
            packed = any_pb2.Any()
            packed.Pack(to_pb(response) if response is not None else empty_pb2.Empty())
            operation.response.CopyFrom(packed)
            if metadata is not None:
                operation.metadata.Pack(to_pb(metadata))
            self._operations[name] = operation
            return operation

    @rpc(operations_pb2.GetOperationRequest, operations_pb2.Operation)
    def get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        """Return a stored (done) operation."""
        with self._lock:
            if request.name not in self._operations:
                raise not_found(f"Operation {request.name}")
            return self._operations[request.name]

    @rpc(operations_pb2.WaitOperationRequest, operations_pb2.Operation)
    def wait_operation(self, request: operations_pb2.WaitOperationRequest) -> operations_pb2.Operation:
        """Every operation is already done: same as GetOperation."""
        return self.get_operation(operations_pb2.GetOperationRequest(name=request.name))

    @rpc(operations_pb2.DeleteOperationRequest, empty_pb2.Empty)
    def delete_operation(self, request: operations_pb2.DeleteOperationRequest) -> empty_pb2.Empty:
        """Forget an operation."""
        with self._lock:
            self._operations.pop(request.name, None)
        return empty_pb2.Empty()

    @rpc(operations_pb2.CancelOperationRequest, empty_pb2.Empty)
    def cancel_operation(self, request: operations_pb2.CancelOperationRequest) -> empty_pb2.Empty:
        """Nothing runs in the background, so there is nothing to cancel."""
        return empty_pb2.Empty()
