"""Unit tests of the runner's pure parts: conditions, values, placeholders, resources, spec loading, cache keys."""

import json
from pathlib import Path

import pytest
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from expforge.errors import ExpforgeError
from expforge.local_runner import values
from expforge.local_runner.artifacts import RuntimeArtifact, content_digest
from expforge.local_runner.cache import cache_key
from expforge.local_runner.conditions import ConditionError, evaluate_condition
from expforge.local_runner.placeholders import CommandResolver, JobContext, build_executor_input
from expforge.local_runner.resources import parse_cpu, parse_memory
from expforge.local_runner.spec import load_pipeline_spec

P = "inputs.parameter_values"

# --- conditions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "params", "expected"),
    [
        (f"{P}['x'] == 'a'", {"x": "a"}, True),
        (f"{P}['x'] != 'a'", {"x": "a"}, False),
        # kfp 2.17 writes literals unescaped: the quote inside the value must not end the literal
        (f"{P}['x'] == 'it's \"q\"'", {"x": 'it\'s "q"'}, True),
        (f"{P}['x'] == 'it's \"q\"'", {"x": "it's"}, False),
        (f"!({P}['x'] == 'it's') && int({P}['n']) > 3", {"x": "no", "n": 5}, True),
        (f"!({P}['x'] == 'it's') && int({P}['n']) > 3", {"x": "it's", "n": 5}, False),
        (f"{P}['x'] == 'a && b'", {"x": "a && b"}, True),
        (f"{P}['x'] == 'it\\'s'", {"x": "it's"}, True),  # properly escaped CEL works too
        (f"{P}['x'] == 'C:\\new'", {"x": "C:\\new"}, True),  # raw backslashes are kept
        (f'{P}["x"] == "double"', {"x": "double"}, True),
        (f"int({P}['n']) >= 3", {"n": 3.0}, True),
        (f"int({P}['n']) < -1", {"n": -2}, True),
        (f"{P}['f'] > 0.3", {"f": 0.5}, True),
        (f"double(int({P}['n'])) <= 2.5", {"n": 2}, True),
        (f"{P}['b'] == true", {"b": True}, True),
        (f"{P}['b'] == true || {P}['c'] == false", {"b": False, "c": False}, True),
        (f"{P}['b'] == true && {P}['missing'] == 1", {"b": False}, False),  # short circuit
        (f"{P}['n'] == 1.0", {"n": 1}, True),
        (f"string({P}['n']) == '7'", {"n": 7}, True),
    ],
)
def test_conditions_evaluate(condition, params, expected) -> None:
    assert evaluate_condition(condition, params) is expected


@pytest.mark.parametrize(
    ("condition", "params", "message"),
    [
        (f"{P}['x'] == 'a", {"x": "a"}, "unterminated string"),
        (f"{P}['missing'] == 'a'", {}, "no value for ['missing']"),
        (f"{P}['x'] == 1", {"x": "1"}, "cannot compare str '1' == int 1"),
        (f"{P}['x']", {"x": "1"}, "not a bool"),
        ("__import__('os') == 1", {}, "unknown function __import__()"),
        ("__import__('os').system('true')", {}, "expected 'end' at column 24"),
        (f"{P}['x'].__class__ == 1", {"x": "1"}, "no field '__class__'"),
        (f"{P}['x'] == 1 == 1", {"x": 1}, "chained comparison"),
        (f"{P}['x'] ; 1", {"x": 1}, "unexpected character ';'"),
        (f"!{P}['x']", {"x": "s"}, "operator ! needs a bool"),
    ],
)
def test_conditions_reject_bad_input_without_eval(condition, params, message) -> None:
    with pytest.raises(ConditionError, match="condition") as error:
        evaluate_condition(condition, params)
    assert message in str(error.value)


# --- values --------------------------------------------------------------------------------------------------


def test_coerce_restores_declared_types() -> None:
    assert values.coerce(3.0, pb.ParameterType.NUMBER_INTEGER) == 3
    assert type(values.coerce(3.0, pb.ParameterType.NUMBER_INTEGER)) is int
    assert values.coerce(2, pb.ParameterType.NUMBER_DOUBLE) == 2.0
    assert values.coerce("[1, 2]", pb.ParameterType.LIST) == [1, 2]
    assert values.coerce('{"a": 1}', pb.ParameterType.STRUCT) == {"a": 1}
    with pytest.raises(TypeError):
        values.coerce(2.5, pb.ParameterType.NUMBER_INTEGER)
    with pytest.raises(TypeError):
        values.coerce(True, pb.ParameterType.NUMBER_INTEGER)
    with pytest.raises(TypeError):
        values.coerce(1, pb.ParameterType.STRING)


def test_apply_selector() -> None:
    assert values.apply_selector('{"a": {"b": [5, 6]}}', 'parseJson(string_value)["a"]["b"][1]') == 6
    assert values.apply_selector({"a": 1}, 'parseJson(string_value)["a"]') == 1
    with pytest.raises(ValueError, match="no such field"):
        values.apply_selector({"a": 1}, 'parseJson(string_value)["b"]')
    with pytest.raises(ValueError, match="unsupported"):
        values.apply_selector({"a": 1}, "exec('x')")


def test_parse_cli_params_keeps_equals_in_values() -> None:
    assert values.parse_cli_params(["a=b=c", "x="]) == {"a": "b=c", "x": ""}
    with pytest.raises(ExpforgeError, match="given more than once"):
        values.parse_cli_params(["a=1", "a=2"])


# --- placeholders --------------------------------------------------------------------------------------------


def _resolver(tmp_path: Path) -> CommandResolver:
    artifact = RuntimeArtifact("data", str(tmp_path / "in"), metadata={"k": "v", "n": 2})
    out = RuntimeArtifact("model", str(tmp_path / "task" / "model"))
    executor_input = build_executor_input(
        {"text": "it's {{$.inputs.parameters['n']}}", "n": 3, "flag": None},
        {"data": [artifact]},
        {"model": [out]},
        {"res": str(tmp_path / "task" / ".parameters" / "res")},
        str(tmp_path / "task" / "executor_output.json"),
    )
    job = JobContext("pipe", "run-1", "task-a", "uuid-1", str(tmp_path), "2026-01-01T00:00:00Z")
    from expforge.local_runner.artifacts import LocalStorage

    return CommandResolver(executor_input, job, LocalStorage())


def test_placeholders_resolve_io_job_and_structures(tmp_path) -> None:
    resolver = _resolver(tmp_path)
    parts = [
        "{{$.inputs.parameters['text']}}",
        "n={{$.inputs.parameters['n']}}",
        "{{$.inputs.artifacts['data'].path}}",
        "{{$.inputs.artifacts['data'].metadata['k']}}",
        "{{$.inputs.artifacts['data'].metadata}}",
        "{{$.outputs.artifacts['model'].uri}}",
        "{{$.outputs.parameters['res'].output_file}}",
        "{{$.outputs.output_file}}",
        "{{$.pipeline_job_name}}/{{$.pipeline_task_name}}",
        '{"Concat": ["<", "{{$.inputs.parameters[\'n\']}}", ">"]}',
        '{"IfPresent": {"InputName": "flag", "Then": ["--flag", "x"], "Else": ["--no-flag"]}}',
        '{"IfPresent": {"InputName": "n", "Then": ["--n", "{{$.inputs.parameters[\'n\']}}"]}}',
        '{"IfPresent": {"InputName": "flag", "Then": "--flag"}}',
    ]
    assert resolver.resolve(parts) == [
        "it's {{$.inputs.parameters['n']}}",  # a value is never expanded a second time
        "n=3",
        str(tmp_path / "in"),
        "v",
        '{"k": "v", "n": 2}',
        str(tmp_path / "task" / "model"),
        str(tmp_path / "task" / ".parameters" / "res"),
        str(tmp_path / "task" / "executor_output.json"),
        "run-1/task-a",
        "<3>",
        "--no-flag",
        "--n",
        "3",
    ]
    whole = json.loads(resolver.resolve(["{{$}}"])[0])
    assert whole["inputs"]["parameterValues"] == {"text": "it's {{$.inputs.parameters['n']}}", "n": 3}
    assert whole["outputs"]["artifacts"]["model"]["artifacts"][0]["type"]["schemaTitle"] == "system.Artifact"


# --- resources, digests, cache keys --------------------------------------------------------------------------


def test_quantities() -> None:
    assert parse_cpu("500m") == 0.5 and parse_cpu("2") == 2.0
    assert parse_memory("512M") == 512_000_000 and parse_memory("1Gi") == 2**30 and parse_memory("1GB") == 10**9
    with pytest.raises(ValueError):
        parse_memory("lots")


def test_content_digest_and_cache_key_ignore_location(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("same")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.txt").write_text("same")
    assert content_digest(tmp_path / "a") == content_digest(tmp_path / "b")
    assert content_digest(tmp_path / "nothing") == "absent"
    first = RuntimeArtifact("x", str(tmp_path / "a"), digest=content_digest(tmp_path / "a"))
    second = RuntimeArtifact("x", str(tmp_path / "b"), digest=content_digest(tmp_path / "b"))
    key = cache_key({"c": 1}, "env", {"p": 1}, {"x": [first]})
    assert key == cache_key({"c": 1}, "env", {"p": 1}, {"x": [second]})
    assert key != cache_key({"c": 1}, "other-image", {"p": 1}, {"x": [first]})
    assert key != cache_key({"c": 1}, "env", {"p": 2}, {"x": [first]})


# --- spec loading --------------------------------------------------------------------------------------------


def test_spec_with_platform_document(tmp_path, subprocess_comps) -> None:
    from kfp import dsl
    from runner_components import compile_pipeline

    @dsl.pipeline(name="two-docs")
    def pipeline() -> str:
        return subprocess_comps.echo(s="x").output

    path = compile_pipeline(pipeline, tmp_path)
    text = (
        path.read_text()
        + "---\nplatforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-echo: {}\n"
    )
    path.write_text(text)
    spec = load_pipeline_spec(path)
    assert spec.name == "two-docs"
    assert spec.platform is not None and spec.ignored_platform_settings == ["kubernetes settings of echo"]
    assert list(spec.container_images().values()) == [["echo"]]
