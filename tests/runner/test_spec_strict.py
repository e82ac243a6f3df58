"""The spec loader is strict: unknown fields, bad types, broken references, cycles and stray YAML documents are one
line naming them, raised before any run directory exists; and no fuzzed spec makes it raise anything else.

Specs are compiled by KFP's own compiler, then edited the way a person or a script would damage them.
No ``from __future__ import annotations``: KFP reads pipeline annotations as real types.
"""

import copy
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kfp import dsl
from runner_components import compile_pipeline
from typer.testing import CliRunner

from expforge.errors import ExpforgeError
from expforge.local_runner.api import run_pipeline
from expforge.local_runner.cli import run as run_command
from expforge.local_runner.graph_check import find_cycle
from expforge.local_runner.spec import load_pipeline_spec


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, request) -> dict[str, Any]:
    """A real compiled spec (two chained tasks, a loop, a condition) as a dict, compiled once per module."""
    comps = request.getfixturevalue("module_comps")

    @dsl.pipeline(name="strict")
    def pipeline(n: int = 1, flag: bool = True) -> int:
        first = comps.add(a=n, b=1)
        second = comps.add(a=first.output, b=2)
        with dsl.ParallelFor([1, 2]) as item:
            comps.add(a=item, b=second.output)
        with dsl.If(flag == True):  # noqa: E712 - a KFP condition
            comps.echo(s="on")
        return second.output

    path = compile_pipeline(pipeline, tmp_path_factory.mktemp("strict"))
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def module_comps():
    from conftest import FALLBACK_IMAGE, base_image_ref
    from runner_components import make_components

    return make_components(base_image_ref() or FALLBACK_IMAGE)


def write(tmp_path: Path, document: Any, extra: str = "") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False) + extra)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ExpforgeError) as info:
        load_pipeline_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_the_unedited_spec_loads(compiled, tmp_path) -> None:
    spec = load_pipeline_spec(write(tmp_path, compiled))
    assert spec.name == "strict" and set(spec.root.dag.tasks) == {"add", "add-2", "for-loop-2", "condition-3"}


def test_a_renamed_component_ref_is_named_with_its_place(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    task = broken["root"]["dag"]["tasks"]["add"]
    task["componentRefs"] = task.pop("componentRef")
    message = refusal(write(tmp_path, broken))
    assert message.startswith("invalid pipeline spec: unknown field 'componentRefs' at root.dag.tasks[add]; ")
    assert "componentRef," in message  # the fields it could have meant


def test_a_bogus_parameter_type_is_named_with_the_accepted_ones(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    broken["root"]["inputDefinitions"]["parameters"]["n"]["parameterType"] = "NUMBER_INTEGR"
    assert refusal(write(tmp_path, broken)) == (
        "invalid pipeline spec: bad value 'NUMBER_INTEGR' at root.inputDefinitions.parameters[n].parameterType "
        "(expected one of: NUMBER_DOUBLE, NUMBER_INTEGER, STRING, BOOLEAN, LIST, STRUCT, TASK_FINAL_STATUS, "
        "TASK_CONFIG)"
    )


def test_unknown_executor_field_and_wrongly_typed_value(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    container = broken["deploymentSpec"]["executors"]["exec-add"]["container"]
    container["imagee"] = container.pop("image")
    message = refusal(write(tmp_path, broken))
    assert message.startswith("invalid deploymentSpec: unknown field 'imagee' at executors[exec-add].container")
    typed = copy.deepcopy(compiled)
    typed["root"]["dag"]["tasks"]["add"]["cachingOptions"]["enableCache"] = "yes"
    assert "enableCache" in refusal(write(tmp_path, typed))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["root"]["dag"]["tasks"]["add"]["componentRef"].update(name="comp-gone"),
            "task 'add' refers to unknown component 'comp-gone' (componentRef.name)",
        ),
        (
            lambda d: d["root"]["dag"]["tasks"]["add"].update(dependentTasks=["ghost"]),
            "task 'add': dependentTasks names producer task 'ghost', which is not in the same DAG",
        ),
        (
            lambda d: d["components"]["comp-add"].update(executorLabel="exec-gone"),
            "component 'comp-add' names executor 'exec-gone', which deploymentSpec lacks",
        ),
    ],
)
def test_broken_references(compiled, tmp_path, edit, expected) -> None:
    broken = copy.deepcopy(compiled)
    edit(broken)
    assert refusal(write(tmp_path, broken)) == expected


def test_a_cycle_is_refused_before_any_task_starts(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    broken["root"]["dag"]["tasks"]["add"]["dependentTasks"] = ["add-2"]
    path = write(tmp_path, broken)
    assert refusal(path) == (
        "dependency cycle in the pipeline: add -> add-2 -> add (each task waits on the next); no task was started"
    )
    root = tmp_path / "runs"
    with pytest.raises(ExpforgeError, match="dependency cycle"):
        run_pipeline(path, backend="subprocess", root=root, tracking="off")
    assert not root.exists() or not any(root.iterdir())  # no run directory, no task log


def test_a_cycle_inside_a_loop_body_names_its_dag(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    body = broken["components"]["comp-for-loop-2"]["dag"]["tasks"]
    (name,) = body
    body[name]["dependentTasks"] = [name]
    assert refusal(write(tmp_path, broken)) == f"task {name!r} in comp-for-loop-2 depends on itself (dependentTasks)"


def test_find_cycle_reports_the_loop_only() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": set()}) == ["b", "c", "b"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_multi_document_yaml_is_one_line(compiled, tmp_path) -> None:
    text = yaml.safe_dump(compiled)
    assert refusal(write(tmp_path, compiled, "---\n" + text)) == (
        "the second YAML document is not a platform spec (expected a mapping with 'platforms'); "
        "give one pipeline per file"
    )
    three = "---\nplatforms: {}\n---\n" + text
    assert refusal(write(tmp_path, compiled, three)).startswith("3 YAML documents; expected one pipeline spec")
    platform = load_pipeline_spec(write(tmp_path, compiled, "---\nplatforms: {}\n"))
    assert platform.platform is not None


def test_the_cli_prints_the_cycle_as_one_line_and_exits_2(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    broken["root"]["dag"]["tasks"]["add"]["dependentTasks"] = ["add-2"]
    path = write(tmp_path, broken)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("run")(run_command)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["run", str(path), "--backend", "subprocess", "--root", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"expforge: error: {path}: dependency cycle in the pipeline: add -> add-2 -> add "
        "(each task waits on the next); no task was started"
    ]


# --- fuzzing: any edit of a real spec loads or is an ExpforgeError -----------------------------------------------

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["STRING", "NUMBER_INTEGER", "comp-add", "add", "add-2", "exec-add", "{{$}}", "for-loop-2"]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_specs_load_or_fail_with_one_clean_line(compiled, tmp_path, data) -> None:
    document = copy.deepcopy(compiled)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(_paths(document)[1:]))
        parent = document
        for step in target[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[target[-1]]
        elif action == "rename" and isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=10))] = parent.pop(target[-1])
        else:
            parent[target[-1]] = data.draw(_VALUES)
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_pipeline_spec(path)
    except ExpforgeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzzed_text_is_refused_cleanly(tmp_path, text) -> None:
    path = tmp_path / "text.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_pipeline_spec(path)
    except ExpforgeError as exc:
        assert "\n" not in str(exc)


def test_a_default_of_the_wrong_type_is_named(compiled, tmp_path) -> None:
    broken = copy.deepcopy(compiled)
    broken["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] = "one"
    assert refusal(write(tmp_path, broken)) == "pipeline parameter 'n' (int): default value expected an int, got 'one'"
