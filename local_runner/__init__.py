"""The local runner: executes a compiled pipeline spec YAML with Docker (the same images) or subprocesses.

Public API: :func:`run_pipeline` and :class:`RunResult` (``expforge.local_runner.api``), and the ``expforge run``
command (``expforge.local_runner.cli.run``). They are imported lazily so that importing the CLI does not load
kfp's protobufs before a pipeline is actually run.

Modules, one job each: ``spec`` (load the YAML into kfp's protos), ``values`` (parameter types, ``--param``),
``conditions`` (safe evaluator of ``dsl.If`` conditions), ``placeholders`` (``ExecutorInput`` and command-line
placeholders), ``artifacts`` (artifact URIs, storage, digests), ``resources`` (limits, GPUs), ``backends`` /
``subprocess_backend`` / ``docker_backend`` (running one attempt), ``cache``, ``record`` (``run.json``),
``progress`` (terminal view), ``container_task`` / ``importer`` (one task), ``scheduler`` (the DAG executor),
``api`` and ``cli``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expforge.local_runner.api import RunResult, run_pipeline

__all__ = ["RunResult", "run_pipeline"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from expforge.local_runner import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
