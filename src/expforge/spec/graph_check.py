"""Whole-spec checks made once, when a pipeline file is loaded, so that no task starts on a broken graph.

A protobuf parse only proves that every field has the right *shape*. A hand-edited or generated spec can still
name a component, executor or producer task that does not exist, or make two tasks wait for each other; without
these checks the scheduler would find out mid-run (a cycle leaves tasks that can never start, a missing
executor fails deep inside a backend). Each problem is one :class:`ExpforgeError` line that names the DAG,
the task and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError
from expforge.spec import values


def task_dependencies(task: pb.PipelineTaskSpec) -> list[tuple[str, str]]:
    """``(producer task, why)`` for every sibling ``task`` waits on: ``dependentTasks`` and input producers."""
    found = [(name, "dependentTasks") for name in task.dependent_tasks]
    for input_name, spec in sorted(task.inputs.parameters.items()):
        if spec.HasField("task_output_parameter"):
            found.append((spec.task_output_parameter.producer_task, f"input parameter {input_name!r}"))
        elif spec.HasField("task_final_status"):
            found.append((spec.task_final_status.producer_task, f"task final status {input_name!r}"))
    for input_name, spec in sorted(task.inputs.artifacts.items()):
        if spec.HasField("task_output_artifact"):
            found.append((spec.task_output_artifact.producer_task, f"input artifact {input_name!r}"))
    return found


def find_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    """One dependency cycle as ``[a, b, ..., a]`` (``a`` waits on ``b``...), or ``None``; iterative DFS."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(edges):
        if state.get(start):
            continue
        path = [start]
        stack: list[Iterator[str]] = [iter(sorted(edges.get(start, ())))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(edges.get(child, ()))))
    return None


def _where(dag_name: str, task_name: str) -> str:
    return f"task {task_name!r}" if dag_name == "root" else f"task {task_name!r} in {dag_name}"


def _check_task(
    spec: pb.PipelineSpec, dag_name: str, task_name: str, task: pb.PipelineTaskSpec, siblings: set[str]
) -> None:
    where = _where(dag_name, task_name)
    ref = task.component_ref.name
    if not ref:
        raise ExpforgeError(f"{where} has no componentRef.name")
    if ref not in spec.components:
        raise ExpforgeError(f"{where} refers to unknown component {ref!r} (componentRef.name)")
    for producer, why in task_dependencies(task):
        if producer == task_name:
            raise ExpforgeError(f"{where} depends on itself ({why})")
        if producer not in siblings:
            raise ExpforgeError(f"{where}: {why} names producer task {producer!r}, which is not in the same DAG")
    component = spec.components[ref]
    is_loop = task.HasField("parameter_iterator") or task.HasField("artifact_iterator")
    if is_loop and not component.HasField("dag"):
        raise ExpforgeError(f"{where} has a loop iterator but its component {ref!r} is not a DAG")


def _check_executor(deployment: pb.PipelineDeploymentConfig, component_name: str, component: pb.ComponentSpec) -> None:
    if component.HasField("dag"):
        return
    label = component.executor_label
    if not label:
        raise ExpforgeError(f"component {component_name!r} has neither a dag nor an executorLabel")
    executor = deployment.executors.get(label)
    if executor is None:
        raise ExpforgeError(f"component {component_name!r} names executor {label!r}, which deploymentSpec lacks")
    if executor.HasField("container"):
        if not executor.container.image:
            raise ExpforgeError(f"executor {label!r} has a container without an image")
        return
    if executor.HasField("importer"):
        return
    kind = executor.WhichOneof("spec") or "nothing"
    raise ExpforgeError(f"executor {label!r} is a {kind} executor; the local runner runs container and importer")


def _check_defaults(component_name: str, component: pb.ComponentSpec) -> None:
    """Every parameter default must have the parameter's declared type (protobuf accepts any JSON value)."""
    for name, spec in sorted(component.input_definitions.parameters.items()):
        if not spec.HasField("default_value"):
            continue
        default = values.from_protobuf(spec.default_value)
        try:
            values.coerce(default, spec.parameter_type)
        except (TypeError, ValueError) as exc:
            where = "pipeline parameter" if component_name == "root" else f"input of {component_name}"
            kind = values.type_name(spec.parameter_type)
            raise ExpforgeError(f"{where} {name!r} ({kind}): default value {exc}") from None


def check_pipeline_graph(spec: pb.PipelineSpec, deployment: pb.PipelineDeploymentConfig) -> None:
    """Raise :class:`ExpforgeError` for the first broken reference or dependency cycle in any DAG."""
    dags = [("root", spec.root)] + [(name, c) for name, c in sorted(spec.components.items()) if c.HasField("dag")]
    for dag_name, component in dags:
        tasks = component.dag.tasks
        siblings = set(tasks)
        edges: dict[str, set[str]] = {}
        for task_name, task in sorted(tasks.items()):
            _check_task(spec, dag_name, task_name, task, siblings)
            edges[task_name] = {producer for producer, _ in task_dependencies(task)}
        cycle = find_cycle(edges)
        if cycle is not None:
            where = "the pipeline" if dag_name == "root" else dag_name
            raise ExpforgeError(
                f"dependency cycle in {where}: {' -> '.join(cycle)} (each task waits on the next); no task was started"
            )
    nesting = {name: {t.component_ref.name for t in c.dag.tasks.values()} for name, c in dags if name != "root"}
    cycle = find_cycle(nesting)
    if cycle is not None:
        raise ExpforgeError(f"components nest themselves: {' -> '.join(cycle)} (a DAG would contain itself)")
    _check_defaults("root", spec.root)
    for name, component in sorted(spec.components.items()):
        _check_defaults(name, component)
        _check_executor(deployment, name, component)
