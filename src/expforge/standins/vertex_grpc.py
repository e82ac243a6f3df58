"""The gRPC plumbing of the Vertex AI stand-in: declare RPCs on plain classes, serve them by full method name.

Why generic handlers: the GAPIC packages (``google.cloud.aiplatform_v1``) ship client stubs and proto-plus
message classes but no servicer base classes and no service descriptors, so each RPC the stand-in answers names
its request and response classes itself (:func:`rpc`) and :class:`Dispatcher` routes
``/google.cloud.aiplatform.v1.ModelService/UploadModel`` to it. A method nobody implements answers
``UNIMPLEMENTED`` and is remembered in :attr:`Dispatcher.unimplemented`, which is how the stand-in learns
what the SDK calls.

Every request is captured (method name + the deserialized message) so tests assert on what the real client
sent, not on what a mock was told.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import grpc

log = logging.getLogger(__name__)

V1 = "google.cloud.aiplatform.v1"


class RpcFailure(Exception):
    """Raised by an RPC implementation: answered as a gRPC status (NOT_FOUND, INVALID_ARGUMENT, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(what: str) -> RpcFailure:
    """NOT_FOUND, as Vertex answers for a missing resource (the SDK's get-or-create relies on it)."""
    return RpcFailure(grpc.StatusCode.NOT_FOUND, f"{what} not found.")


def invalid(message: str) -> RpcFailure:
    """INVALID_ARGUMENT with Vertex-like wording."""
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(what: str) -> RpcFailure:
    """ALREADY_EXISTS (the SDK's get-or-create of metadata resources handles it)."""
    return RpcFailure(grpc.StatusCode.ALREADY_EXISTS, f"{what} already exists.")


@dataclass(frozen=True)
class RpcSpec:
    """What :func:`rpc` attaches to a method: its wire name and message classes."""

    name: str
    request_type: Any
    response_type: Any


def rpc(request_type: Any, response_type: Any, *, name: str | None = None) -> Callable[[Callable], Callable]:
    """Declare a method as the RPC ``name`` (default: the method name in CamelCase).

    ``request_type`` / ``response_type`` are proto-plus classes (``aiplatform_v1.types.X``) or raw protobuf
    classes (``operations_pb2.Operation``, ``empty_pb2.Empty``).
    """

    def decorate(func: Callable) -> Callable:
        wire = name or "".join(part.capitalize() for part in func.__name__.split("_"))
        func._rpc_spec = RpcSpec(wire, request_type, response_type)  # type: ignore[attr-defined]
        return func

    return decorate


class Service:
    """Base of a stand-in service: ``SERVICE`` is its full proto name, e.g. ``google.cloud.aiplatform.v1.ModelService``.

    Only ``v1`` is served: the SDK's default API version for everything the project calls.
    """

    SERVICE: ClassVar[str] = ""

    def rpcs(self) -> dict[str, tuple[RpcSpec, Callable]]:
        """``{wire name: (spec, bound method)}`` of every :func:`rpc`-decorated method."""
        found: dict[str, tuple[RpcSpec, Callable]] = {}
        for attribute in dir(type(self)):
            spec = getattr(getattr(type(self), attribute), "_rpc_spec", None)
            if isinstance(spec, RpcSpec):
                found[spec.name] = (spec, getattr(self, attribute))
        return found


class CapturedRequest(NamedTuple):
    """One request the stand-in received: ``method`` is ``Service.Method`` (e.g. ``ModelService.UploadModel``)."""

    method: str
    request: Any


def _deserializer(message_type: Any) -> Callable[[bytes], Any]:
    if hasattr(message_type, "FromString"):
        return message_type.FromString
    return message_type.deserialize


def _serialize(message: Any) -> bytes:
    if hasattr(message, "SerializeToString"):
        return message.SerializeToString()
    return type(message).serialize(message)


class Dispatcher(grpc.GenericRpcHandler):
    """Routes full method names to service implementations; captures requests; maps RpcFailure to a status."""

    def __init__(self, services: list[Service]) -> None:
        self.requests: list[CapturedRequest] = []
        self.unimplemented: list[str] = []
        self._lock = threading.Lock()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for service in services:
            short = service.SERVICE.rsplit(".", 1)[-1]
            for wire, (spec, func) in service.rpcs().items():
                self._handlers[f"/{service.SERVICE}/{wire}"] = grpc.unary_unary_rpc_method_handler(
                    self._wrap(f"{short}.{wire}", func),
                    request_deserializer=_deserializer(spec.request_type),
                    response_serializer=_serialize,
                )

    def methods(self) -> list[str]:
        """Every full method name served (``/package.Service/Method``)."""
        return sorted(self._handlers)

    def _wrap(self, method: str, func: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.requests.append(CapturedRequest(method, request))
            try:
                return func(request)
            except RpcFailure as failure:
                log.info("vertex stand-in: %s -> %s %s", method, failure.code.name, failure.message)
                context.abort(failure.code, failure.message)
            except Exception:
                log.exception("vertex stand-in: %s failed", method)
                context.abort(grpc.StatusCode.INTERNAL, f"stand-in error in {method}")

        return handle

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """grpc's lookup: None answers UNIMPLEMENTED (and is logged, so missing RPCs are easy to find)."""
        handler = self._handlers.get(handler_call_details.method)
        if handler is None:
            with self._lock:
                self.unimplemented.append(handler_call_details.method)
            log.warning("vertex stand-in: UNIMPLEMENTED %s", handler_call_details.method)
        return handler
