"""The ``PipelineTaskFinalStatus`` an exit task receives, in the form Vertex AI Pipelines passes it.

The values differ between platforms: the kfp SDK documents ``state`` as one of ``'SUCCEEDED'``, ``'FAILED'``
or ``'CANCELLED'`` (``kfp.dsl.PipelineTaskFinalStatus``), which are Vertex AI's task state names
(``PipelineTaskDetail.State``); the open-source Kubeflow driver instead passes its ML Metadata execution state
(``COMPLETE``/``FAILED``/``CANCELED``). This runner stands in for Vertex, so it uses Vertex's names; a producer
that never ran because something upstream failed is ``FAILED``. ``error`` is a ``google.rpc.Status``: empty on
success, else ``code`` (``CANCELLED`` = 1 for a cancellation, ``UNKNOWN`` = 2 otherwise) and the message.
"""

from __future__ import annotations

from typing import Any

_RPC_CANCELLED = 1
_RPC_UNKNOWN = 2


def vertex_state(state: str | None) -> str:
    """Our task state (``SUCCEEDED``, ``FAILED``, ``UPSTREAM_FAILED``, ``CANCELLED``, ...) as Vertex names it."""
    if state == "SUCCEEDED":
        return "SUCCEEDED"
    if state == "CANCELLED":
        return "CANCELLED"
    return "FAILED"


def final_status(producer: str, run_id: str, state: str | None, error: str | None) -> dict[str, Any]:
    """The ``PipelineTaskFinalStatus`` struct (JSON names) that KFP's executor reads for ``producer``."""
    vertex = vertex_state(state)
    if vertex == "SUCCEEDED":
        problem: dict[str, Any] = {}
    else:
        code = _RPC_CANCELLED if vertex == "CANCELLED" else _RPC_UNKNOWN
        problem = {"code": code, "message": error or vertex.lower()}
    return {
        "state": vertex,
        "pipelineJobResourceName": run_id,
        "pipelineTaskName": producer,
        "error": problem,
    }
