"""The DAG executor: KFP v2 semantics over a parsed pipeline spec.

Concurrency model. Every DAG (the pipeline, a nested pipeline, a control-flow group, one loop iteration) is
coordinated by one thread that starts each child as soon as everything it depends on has finished; children
run in their own threads and report back through a queue. Only *executing attempts* are bounded — by the
run's :class:`~expforge.local_runner.resources.Admission`, which admits an attempt when its CPU, memory and GPU
requests fit in what the host has left (first come, first served; at most ``max_parallel`` at once) — and a
share is held while a container/process runs, never while waiting on other tasks or sleeping between retries.
Waiting coordinators hold nothing, so nesting cannot deadlock.
``ParallelFor`` runs its iterations through a pool sized by the loop's ``parallelism`` (when set).

Semantics implemented here:

* dependencies: ``dependentTasks`` plus every producer an input refers to;
* failure is "fail slow" (Vertex's default): independent branches keep running, dependents of a failure are
  ``UPSTREAM_FAILED``, unless their trigger strategy is ``ALL_UPSTREAM_TASKS_COMPLETED`` (exit handlers);
* ``triggerPolicy.condition`` (``dsl.If/Elif/Else``) via :mod:`.conditions`; a false condition skips the
  group and records its tasks as ``SKIPPED``; a skipped upstream does not block dependents (``.after``);
* ``ParallelFor`` over raw lists, input parameters (pipeline parameters or task outputs, JSON text accepted)
  and artifact lists; the loop's outputs are the per-iteration values collected in order (``dsl.Collected``);
* DAG outputs (``valueFromParameter``, ``valueFromOneof`` for ``dsl.OneOf``, artifact selectors);
* ``PipelineTaskFinalStatus`` inputs: the state and error of the producer (the exit handler's body);
* f-string inputs and job placeholders inside constants; loop-item field selectors.
"""

from __future__ import annotations

import functools
import queue
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.local_runner import values
from expforge.local_runner.artifacts import RuntimeArtifact
from expforge.local_runner.conditions import ConditionError, evaluate_condition
from expforge.local_runner.container_task import ContainerTask
from expforge.local_runner.context import Outcome, RunContext
from expforge.local_runner.final_status import final_status
from expforge.local_runner.importer import run_importer
from expforge.local_runner.placeholders import PlaceholderError, resolve_input_references
from expforge.local_runner.record import TaskState, now_iso
from expforge.local_runner.spec import ComponentSpec, TaskSpec, is_control_flow_group

_ALL_COMPLETED = pb.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
# Iterations of a loop without a parallelism limit still go through a bounded pool: iterations never wait on
# each other, so a bound cannot deadlock; it only caps the number of idle coordinator threads.
_MAX_LOOP_WORKERS = 64


class InputError(ValueError):
    """A task input that cannot be resolved (missing producer output, bad selector, wrong type)."""


@dataclass(frozen=True)
class Scope:
    """The inputs a DAG's tasks can refer to (``componentInputParameter``), and how its task keys are formed."""

    parameters: dict[str, Any]
    artifacts: dict[str, list[RuntimeArtifact]]
    prefix: str = ""
    iteration: tuple[int, ...] = ()

    def key(self, task_name: str) -> str:
        """Task key: ``[<nested-pipeline>/]<task>[.<i>...]`` (see :mod:`.record`)."""
        return self.prefix + task_name + "".join(f".{i}" for i in self.iteration)


def dependencies(task: TaskSpec) -> set[str]:
    """Sibling tasks that must finish before ``task`` starts."""
    deps = set(task.dependent_tasks)
    for spec in task.inputs.parameters.values():
        if spec.HasField("task_output_parameter"):
            deps.add(spec.task_output_parameter.producer_task)
        elif spec.HasField("task_final_status"):
            deps.add(spec.task_final_status.producer_task)
    for spec in task.inputs.artifacts.values():
        if spec.HasField("task_output_artifact"):
            deps.add(spec.task_output_artifact.producer_task)
    return deps


class Scheduler:
    """Executes the pipeline's root DAG (and everything under it) for one run."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    # --- DAGs -----------------------------------------------------------------------------------------------

    def run_dag(self, component: ComponentSpec, scope: Scope) -> Outcome:
        """Run every task of a DAG component in dependency order; return the DAG's outputs."""
        tasks = dict(component.dag.tasks)
        deps = {name: dependencies(task) & set(tasks) for name, task in tasks.items()}
        results: dict[str, Outcome] = {}
        events: queue.Queue[tuple[str, Outcome]] = queue.Queue()
        pending = set(tasks)
        running: set[str] = set()
        while pending or running:
            progressed = True
            while progressed:
                progressed = False
                for name in sorted(pending):
                    if not deps[name] <= results.keys():
                        continue
                    pending.discard(name)
                    immediate = self._start(name, tasks[name], scope, results, deps[name], events)
                    if immediate is None:
                        running.add(name)
                    else:
                        results[name] = immediate
                        progressed = True
            if running:
                name, outcome = events.get()
                running.discard(name)
                results[name] = outcome
            elif pending:  # unsatisfiable dependencies (a cycle): never expected from the compiler
                for name in pending:
                    results[name] = Outcome(TaskState.FAILED, error=f"{scope.key(name)}: dependency cycle")
                pending.clear()
        return self._dag_outcome(component, results)

    def _dag_outcome(self, component: ComponentSpec, results: dict[str, Outcome]) -> Outcome:
        failures = [outcome for outcome in results.values() if outcome.failed]
        if self.ctx.cancel.is_set() and failures:
            return Outcome(TaskState.CANCELLED, error="cancelled")
        if failures:
            first = next((o for o in failures if o.state == TaskState.FAILED), failures[0])
            return Outcome(TaskState.FAILED, error=first.error)
        parameters, artifacts = self._dag_outputs(component, results)
        return Outcome(TaskState.SUCCEEDED, parameters, artifacts)

    @staticmethod
    def _dag_outputs(
        component: ComponentSpec, results: dict[str, Outcome]
    ) -> tuple[dict[str, Any], dict[str, list[RuntimeArtifact]]]:
        outputs = component.dag.outputs
        parameters: dict[str, Any] = {}
        for name, spec in outputs.parameters.items():
            selectors = (
                [spec.value_from_parameter]
                if spec.HasField("value_from_parameter")
                else list(spec.value_from_oneof.parameter_selectors)
            )
            for selector in selectors:
                producer = results.get(selector.producer_subtask)
                if producer is not None and selector.output_parameter_key in producer.parameters:
                    parameters[name] = producer.parameters[selector.output_parameter_key]
                    break
        artifacts: dict[str, list[RuntimeArtifact]] = {}
        for name, spec in outputs.artifacts.items():
            for selector in spec.artifact_selectors:
                producer = results.get(selector.producer_subtask)
                if producer is not None and producer.artifacts.get(selector.output_artifact_key):
                    artifacts[name] = producer.artifacts[selector.output_artifact_key]
                    break
        return parameters, artifacts

    # --- starting one child ---------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        task: TaskSpec,
        scope: Scope,
        results: dict[str, Outcome],
        deps: set[str],
        events: queue.Queue[tuple[str, Outcome]],
    ) -> Outcome | None:
        """Start a ready child: an immediate outcome (skipped, failed to resolve, importer), or ``None`` when a
        thread was started that will post the outcome to ``events``."""
        component = self.ctx.spec.component(task.component_ref.name)
        key = scope.key(name)
        if self.ctx.cancel.is_set():
            return self._not_run(name, task, scope, TaskState.CANCELLED, "cancelled")
        upstream_failed = [d for d in sorted(deps) if results[d].failed]
        if upstream_failed and task.trigger_policy.strategy != _ALL_COMPLETED:
            return self._not_run(name, task, scope, TaskState.UPSTREAM_FAILED, f"upstream {upstream_failed[0]} failed")
        if not component.HasField("dag"):
            self.ctx.record.update(
                key, task_name=name, component=_short(task.component_ref.name), iteration=list(scope.iteration)
            )
        try:
            parameters, artifacts = self._resolve_inputs(name, task, component, scope, results)
        except (InputError, PlaceholderError) as exc:
            return self._fail_early(name, component, scope, f"{key}: {exc}")
        if task.trigger_policy.condition:
            try:
                triggered = evaluate_condition(task.trigger_policy.condition, parameters)
            except ConditionError as exc:
                return self._fail_early(name, component, scope, f"{key}: {exc}")
            if not triggered:
                return self._not_run(name, task, scope, TaskState.SKIPPED, "condition is false")

        work: Callable[[], Outcome]
        if component.HasField("dag"):
            child_scope = self._child_scope(name, scope, parameters, artifacts)
            if task.HasField("parameter_iterator") or task.HasField("artifact_iterator"):
                work = functools.partial(self._run_loop, name, task, component, child_scope)
            else:
                work = functools.partial(self.run_dag, component, child_scope)
        else:
            executor = self.ctx.spec.executor_of(component)
            if executor.HasField("importer"):
                return run_importer(self.ctx, key, name, component, executor.importer, parameters)
            container_task = ContainerTask(self.ctx, key, name, task, component, executor.container)
            work = functools.partial(container_task.run, parameters, artifacts)
        self._launch(name, component, scope, work, events)
        return None

    def _launch(
        self,
        name: str,
        component: ComponentSpec,
        scope: Scope,
        work: Callable[[], Outcome],
        events: queue.Queue[tuple[str, Outcome]],
    ) -> None:
        """Run ``work`` in its own thread; its outcome (or a failure, if the runner itself broke) goes to ``events``."""

        def target() -> None:
            try:
                outcome = work()
            except Exception as exc:  # a runner bug must fail the task, never hang the DAG
                detail = "".join(traceback.format_exception(exc)).strip().splitlines()[-1]
                outcome = self._fail_early(name, component, scope, f"{scope.key(name)}: internal error: {detail}")
                traceback.print_exc()
            events.put((name, outcome))

        threading.Thread(target=target, name=f"expforge:{scope.key(name)}", daemon=True).start()

    def _child_scope(
        self, name: str, scope: Scope, parameters: dict[str, Any], artifacts: dict[str, list[RuntimeArtifact]]
    ) -> Scope:
        if is_control_flow_group(name):
            return Scope(parameters, artifacts, scope.prefix, scope.iteration)
        return Scope(parameters, artifacts, scope.key(name) + "/", ())

    # --- loops ----------------------------------------------------------------------------------------------

    def _loop_items(self, task: TaskSpec, scope: Scope) -> tuple[str, list[Any], bool]:
        """``(item input name, items, items are artifacts)``."""
        if task.HasField("artifact_iterator"):
            iterator = task.artifact_iterator
            return iterator.item_input, list(scope.artifacts.get(iterator.items.input_artifact, [])), True
        iterator = task.parameter_iterator
        if iterator.items.HasField("raw"):
            items: Any = iterator.items.raw
        else:
            if iterator.items.input_parameter not in scope.parameters:
                raise InputError(f"ParallelFor items {iterator.items.input_parameter!r} have no value")
            items = scope.parameters[iterator.items.input_parameter]
        if isinstance(items, str):
            try:
                items = values.coerce(items, pb.ParameterType.LIST)
            except (TypeError, ValueError):
                raise InputError(f"ParallelFor items are not a JSON list: {items[:200]!r}") from None
        if not isinstance(items, list):
            raise InputError(f"ParallelFor items are not a list: {items!r}")
        return iterator.item_input, items, False

    def _run_loop(self, name: str, task: TaskSpec, component: ComponentSpec, scope: Scope) -> Outcome:
        try:
            item_input, items, are_artifacts = self._loop_items(task, scope)
        except InputError as exc:
            return self._fail_early(name, component, scope, f"{scope.key(name)}: {exc}")
        if not items:
            return self._collect_iterations(component, [])
        limit = task.iterator_policy.parallelism_limit or len(items)

        def iteration(index: int) -> Outcome:
            if are_artifacts:
                child = Scope(
                    scope.parameters,
                    {**scope.artifacts, item_input: [items[index]]},
                    scope.prefix,
                    (*scope.iteration, index),
                )
            else:
                child = Scope(
                    {**scope.parameters, item_input: items[index]},
                    scope.artifacts,
                    scope.prefix,
                    (*scope.iteration, index),
                )
            return self.run_dag(component, child)

        workers = max(1, min(limit, len(items), _MAX_LOOP_WORKERS))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"expforge:{name}") as pool:
            outcomes = list(pool.map(iteration, range(len(items))))
        return self._collect_iterations(component, outcomes)

    @staticmethod
    def _collect_iterations(component: ComponentSpec, outcomes: list[Outcome]) -> Outcome:
        """A loop's outcome: failed if any iteration failed; outputs are per-iteration values in order."""
        failures = [o for o in outcomes if o.failed]
        if failures:
            first = next((o for o in failures if o.state == TaskState.FAILED), failures[0])
            return Outcome(first.state if first.state == TaskState.CANCELLED else TaskState.FAILED, error=first.error)
        outputs = component.dag.outputs
        parameters = {
            name: [o.parameters[name] for o in outcomes if name in o.parameters] for name in outputs.parameters
        }
        artifacts = {
            name: [artifact for o in outcomes for artifact in o.artifacts.get(name, [])] for name in outputs.artifacts
        }
        return Outcome(TaskState.SUCCEEDED, parameters, artifacts)

    # --- inputs ---------------------------------------------------------------------------------------------

    def _final_status(self, producer: str, outcome: Outcome | None) -> dict[str, Any]:
        """The ``PipelineTaskFinalStatus`` struct KFP's executor reads (Vertex AI's values; see final_status)."""
        state = outcome.state.value if outcome is not None else None
        return final_status(producer, self.ctx.run_id, state, outcome.error if outcome else None)

    def _resolve_inputs(
        self, name: str, task: TaskSpec, component: ComponentSpec, scope: Scope, results: dict[str, Outcome]
    ) -> tuple[dict[str, Any], dict[str, list[RuntimeArtifact]]]:
        declared = component.input_definitions.parameters
        parameters: dict[str, Any] = {}
        constants: list[str] = []
        for input_name, spec in task.inputs.parameters.items():
            if spec.HasField("component_input_parameter"):
                if spec.component_input_parameter not in scope.parameters:
                    continue
                value = scope.parameters[spec.component_input_parameter]
            elif spec.HasField("task_output_parameter"):
                source = spec.task_output_parameter
                producer = results.get(source.producer_task)
                if producer is None or source.output_parameter_key not in producer.parameters:
                    continue
                value = producer.parameters[source.output_parameter_key]
            elif spec.HasField("runtime_value"):
                value = values.from_protobuf(spec.runtime_value.constant)
                constants.append(input_name)
            elif spec.HasField("task_final_status"):
                producer_name = spec.task_final_status.producer_task
                value = self._final_status(producer_name, results.get(producer_name))
            else:
                continue
            if spec.parameter_expression_selector:
                try:
                    value = values.apply_selector(value, spec.parameter_expression_selector)
                except ValueError as exc:
                    raise InputError(f"input {input_name!r}: {exc}") from None
            parameters[input_name] = value
        resolve_input_references(parameters, constants, self.ctx.job(name))

        is_leaf = not component.HasField("dag")
        for input_name, spec in declared.items():
            if input_name not in parameters:
                if spec.HasField("default_value"):
                    parameters[input_name] = values.from_protobuf(spec.default_value)
                elif is_leaf and not spec.is_optional:
                    raise InputError(f"required input {input_name!r} has no value (its producer did not provide it)")
                else:
                    continue
            try:
                parameters[input_name] = values.coerce_input(parameters[input_name], spec.parameter_type)
            except (TypeError, ValueError) as exc:
                if is_leaf:
                    raise InputError(f"input {input_name!r} ({values.type_name(spec.parameter_type)}): {exc}") from None

        artifacts: dict[str, list[RuntimeArtifact]] = {}
        for input_name, spec in task.inputs.artifacts.items():
            if spec.HasField("component_input_artifact"):
                found = scope.artifacts.get(spec.component_input_artifact)
            else:
                source = spec.task_output_artifact
                producer = results.get(source.producer_task)
                found = producer.artifacts.get(source.output_artifact_key) if producer else None
            if found is not None:
                artifacts[input_name] = found
        if is_leaf:
            for input_name, artifact_spec in component.input_definitions.artifacts.items():
                if input_name not in artifacts and not artifact_spec.is_optional:
                    raise InputError(f"required input artifact {input_name!r} has no value")
        return parameters, artifacts

    # --- tasks that do not run ------------------------------------------------------------------------------

    def _fail_early(self, name: str, component: ComponentSpec, scope: Scope, error: str) -> Outcome:
        """A task (or group) that failed before anything ran: record leaf tasks so the failure is visible."""
        if not component.HasField("dag"):
            key = scope.key(name)
            self.ctx.record.update(
                key,
                task_name=name,
                state=TaskState.FAILED,
                error=error,
                finished=now_iso(),
                iteration=list(scope.iteration),
            )
            self.ctx.progress.task_finished(key, TaskState.FAILED, cached=False, attempts=0, duration_s=0.0)
        return Outcome(TaskState.FAILED, error=error)

    def _not_run(self, name: str, task: TaskSpec, scope: Scope, state: TaskState, reason: str) -> Outcome:
        """Record every leaf task under a child that will not run (skipped, upstream failed, cancelled)."""
        self._mark_subtree(name, task, scope, state, reason)
        return Outcome(state, error=None if state == TaskState.SKIPPED else f"{scope.key(name)}: {reason}")

    def _mark_subtree(self, name: str, task: TaskSpec, scope: Scope, state: TaskState, reason: str) -> None:
        component = self.ctx.spec.component(task.component_ref.name)
        if not component.HasField("dag"):
            key = scope.key(name)
            self.ctx.record.update(
                key,
                task_name=name,
                component=_short(task.component_ref.name),
                state=state,
                reason=reason,
                iteration=list(scope.iteration),
            )
            self.ctx.progress.task_finished(key, state, cached=False, attempts=0, duration_s=0.0)
            return
        child_scope = self._child_scope(name, scope, {}, {})
        for child_name, child in component.dag.tasks.items():
            self._mark_subtree(child_name, child, child_scope, state, reason)


def _short(component_name: str) -> str:
    """``comp-train-model`` → ``train-model`` (the name the pipeline author wrote)."""
    return component_name.removeprefix("comp-")
