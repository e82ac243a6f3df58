"""Conformance: one small compiled pipeline per KFP construct, run for real, asserting exact values.

Each test runs on the subprocess backend and (``-m docker``) on the Docker backend with the base image.
The three ``test_kfp_local_bug_*`` tests are the cases where ``kfp.local`` 2.17 is measurably wrong.
No ``from __future__ import annotations``: KFP reads pipeline annotations as real types.
"""

import functools
import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from runner_components import compile_pipeline

from expforge.local_runner.api import run_pipeline

# --- parameters, artifacts, DAG order ------------------------------------------------------------------------


def test_parameters_of_every_type_with_defaults_and_overrides(run, comps) -> None:
    @dsl.pipeline(name="types")
    def pipeline(
        s: str = "text",
        i: int = 3,
        f: float = 0.25,
        b: bool = True,
        items: list = [1, "two", 3.5],  # noqa: B006 - a pipeline default, compiled into the YAML
        d: dict = {"k": [1, 2], "n": False},  # noqa: B006
    ) -> str:
        return comps.describe_types(s=s, i=i, f=f, b=b, items=items, d=d).output

    defaults = run(pipeline)
    assert defaults.state == "SUCCEEDED"
    assert json.loads(defaults.pipeline_outputs["Output"]) == {
        "types": ["str", "int", "float", "bool", "list", "dict"],
        "values": ["text", 3, 0.25, True, [1, "two", 3.5], {"k": [1, 2], "n": False}],
    }
    given = run(pipeline, {"s": "a=b", "i": "-7", "f": "2", "b": "false", "items": "[]", "d": '{"x": {"y": 1}}'})
    assert json.loads(given.pipeline_outputs["Output"])["values"] == ["a=b", -7, 2.0, False, [], {"x": {"y": 1}}]


def test_artifacts_flow_with_metadata_and_local_uris(run, comps) -> None:
    @dsl.pipeline(name="artifacts")
    def pipeline(text: str = "hello") -> str:
        written = comps.write_text(text=text)
        return comps.read_text(data=written.outputs["out"]).output

    result = run(pipeline)
    assert result.state == "SUCCEEDED"
    assert result.pipeline_outputs["Output"] == 'hello|{"length": 5, "text": "hello"}'
    producer = result.tasks["write-text"]
    uri = str(result.run_dir / "write-text" / "out")
    assert producer["artifacts"] == {"out": [uri]}
    assert producer["artifact_metadata"] == {"out": [{"length": 5, "text": "hello"}]}
    assert Path(uri).read_text() == "hello"
    assert result.tasks["read-text"]["inputs"]["artifacts"] == {"data": [uri]}
    assert (result.run_dir / "read-text" / "log.txt").is_file()


def test_run_record_shape(run, comps) -> None:
    @dsl.pipeline(name="shape")
    def pipeline() -> int:
        return comps.add(a=1, b=2).output

    result = run(pipeline)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["state"] == "SUCCEEDED"
    assert record["pipeline_outputs"] == {"Output": 3}
    assert record["run_id"] == result.run_id == result.run_dir.name
    task = record["tasks"]["add"]
    assert {k: task[k] for k in ("state", "attempts", "cached", "parameters", "artifacts")} == {
        "state": "SUCCEEDED",
        "attempts": 1,
        "cached": False,
        "parameters": {"Output": 3},
        "artifacts": {},
    }


def test_dag_order_and_f_string_inputs(run, comps) -> None:
    @dsl.pipeline(name="chain")
    def pipeline(name: str = "world") -> str:
        first = comps.echo(s="hello")
        second = comps.echo(s=f"{first.output}, {name}!")
        return comps.echo(s=f"[{second.output}]").output

    result = run(pipeline)
    assert result.pipeline_outputs["Output"] == "[hello, world!]"
    assert result.tasks["echo-2"]["finished"] <= result.tasks["echo-3"]["started"]


# --- ParallelFor and Collected -------------------------------------------------------------------------------


def test_parallel_for_over_static_task_output_and_parameter_lists(run, comps) -> None:
    @dsl.pipeline(name="loops")
    def pipeline(numbers: list = [5, 6]) -> int:  # noqa: B006
        with dsl.ParallelFor([1, 2, 3]) as item:
            static = comps.add(a=item, b=100)
        listed = comps.make_list(n=3)
        with dsl.ParallelFor(listed.output, parallelism=2) as item:
            from_task = comps.add(a=item, b=1)
        with dsl.ParallelFor(numbers) as item:
            from_param = comps.add(a=item, b=1000)
        with dsl.ParallelFor([{"a": 1, "b": 2}, {"a": 30, "b": 40}]) as pair:
            comps.add(a=pair.a, b=pair.b)
        comps.sum_list(xs=dsl.Collected(static.output)).set_display_name("sum-static")
        comps.sum_list(xs=dsl.Collected(from_task.output))
        return comps.sum_list(xs=dsl.Collected(from_param.output)).output

    result = run(pipeline)
    assert result.state == "SUCCEEDED"
    outputs = {key: task["parameters"].get("Output") for key, task in result.tasks.items()}
    assert outputs == {
        "add.0": 101, "add.1": 102, "add.2": 103,
        "make-list": [0, 10, 20],
        "add-2.0": 1, "add-2.1": 11, "add-2.2": 21,
        "add-3.0": 1005, "add-3.1": 1006,
        "add-4.0": 3, "add-4.1": 70,
        "sum-list": 306, "sum-list-2": 33, "sum-list-3": 2011,
    }  # fmt: skip
    assert result.tasks["sum-list"]["inputs"]["parameters"]["xs"] == [101, 102, 103]
    assert result.tasks["add-2.1"]["iteration"] == [1]
    assert result.pipeline_outputs == {"Output": 2011}


def test_collected_artifacts_fan_in(run, comps) -> None:
    @dsl.pipeline(name="fan-in")
    def pipeline(words: list = ["a", "b", "c"]) -> str:  # noqa: B006
        with dsl.ParallelFor(words) as word:
            written = comps.write_text(text=word)
        return comps.join_texts(items=dsl.Collected(written.outputs["out"])).output

    result = run(pipeline)
    assert result.pipeline_outputs["Output"] == "a,b,c"
    assert result.tasks["join-texts"]["inputs"]["artifacts"]["items"] == [
        str(result.run_dir / f"write-text.{i}" / "out") for i in range(3)
    ]


def test_empty_loop_collects_an_empty_list(run, comps) -> None:
    @dsl.pipeline(name="empty-loop")
    def pipeline(numbers: list = []) -> int:  # noqa: B006
        with dsl.ParallelFor(numbers) as item:
            added = comps.add(a=item, b=1)
        return comps.sum_list(xs=dsl.Collected(added.output)).output

    assert run(pipeline).pipeline_outputs == {"Output": 0}


def test_kfp_local_bug_1_task_output_passed_into_loop_keeps_its_value(run, comps) -> None:
    @dsl.pipeline(name="outer-into-loop")
    def pipeline() -> list:
        outer = comps.echo(s="outer-value")
        offset = comps.add(a=40, b=2)
        with dsl.ParallelFor(["x", "y"]) as item:
            inner = comps.echo(s=outer.output)
            comps.add(a=offset.output, b=1)
            comps.echo(s=item)
        return dsl.Collected(inner.output)

    result = run(pipeline)
    assert result.tasks["echo-2.0"]["parameters"] == {"Output": "outer-value"}
    assert result.tasks["echo-2.1"]["parameters"] == {"Output": "outer-value"}
    assert [result.tasks[f"add-2.{i}"]["parameters"]["Output"] for i in (0, 1)] == [43, 43]
    assert [result.tasks[f"echo-3.{i}"]["parameters"]["Output"] for i in (0, 1)] == ["x", "y"]
    assert result.pipeline_outputs == {"Output": ["outer-value", "outer-value"]}


# --- failures ------------------------------------------------------------------------------------------------


def test_kfp_local_bug_2_fast_failing_container_is_failed(run, comps) -> None:
    @dsl.pipeline(name="fast-fail")
    def pipeline() -> str:
        failed = comps.fail(code=3)
        downstream = comps.echo(s=failed.output)
        comps.echo(s="independent")
        return downstream.output

    result = run(pipeline)
    assert result.state == "FAILED"
    assert result.tasks["fail"]["state"] == "FAILED"
    assert "exit code 3" in result.tasks["fail"]["error"]
    assert "failing on purpose with exit code 3" in Path(result.tasks["fail"]["log"]).read_text()
    assert result.tasks["echo"]["state"] == "UPSTREAM_FAILED"
    assert result.tasks["echo-2"]["state"] == "SUCCEEDED"  # fail slow: independent branches finish
    assert result.record["error"].startswith("fail:")


def test_retry_policy_counts_attempts(run, comps) -> None:
    @dsl.pipeline(name="retry")
    def pipeline() -> str:
        comps.fail(code=1).set_retry(num_retries=2, backoff_duration="1s", backoff_factor=1.0)
        return comps.echo(s="ok").output

    result = run(pipeline)
    task = result.tasks["fail"]
    assert (task["state"], task["attempts"]) == ("FAILED", 3)
    assert task["duration_s"] >= 2.0  # two 1-second backoffs
    assert Path(task["log"]).read_text().count("=== attempt") == 3


def test_retry_succeeds_on_a_later_attempt(subprocess_run, subprocess_comps, tmp_path) -> None:
    run, comps = subprocess_run, subprocess_comps  # the attempt counter lives on the host
    counter = tmp_path / "counter"

    @dsl.pipeline(name="retry-ok")
    def pipeline(counter: str) -> int:
        return comps.count_attempts(counter=counter, fail_times=2).set_retry(num_retries=3).output

    result = run(pipeline, {"counter": str(counter)})
    assert result.pipeline_outputs == {"Output": 3}
    assert result.tasks["count-attempts"]["attempts"] == 3


# --- conditions ----------------------------------------------------------------------------------------------


def test_kfp_local_bug_3_condition_on_string_with_quotes(run, comps) -> None:
    tricky = 'it\'s "quoted" && done'

    @dsl.pipeline(name="quotes")
    def pipeline(s: str = tricky, n: int = 5) -> str:
        with dsl.If(s == tricky):
            comps.echo(s="if")
        with dsl.Elif(n > 3):
            comps.echo(s="elif")
        with dsl.Else():
            comps.echo(s="else")
        return comps.echo(s="after").output

    def branches(result) -> dict[str, str]:
        return {
            result.tasks[k]["parameters"].get("Output", k): result.tasks[k]["state"]
            for k in ("echo", "echo-2", "echo-3")
        }

    first = run(pipeline)
    assert first.state == "SUCCEEDED"
    assert branches(first) == {"if": "SUCCEEDED", "echo-2": "SKIPPED", "echo-3": "SKIPPED"}
    second = run(pipeline, {"s": "it's"})
    assert branches(second) == {"echo": "SKIPPED", "elif": "SUCCEEDED", "echo-3": "SKIPPED"}
    third = run(pipeline, {"s": "other", "n": "3"})
    assert branches(third) == {"echo": "SKIPPED", "echo-2": "SKIPPED", "else": "SUCCEEDED"}
    assert third.tasks["echo-2"]["reason"] == "condition is false"


def test_conditions_on_task_outputs_bools_and_floats_with_oneof(run, comps) -> None:
    @dsl.pipeline(name="oneof")
    def pipeline(flag: bool = True, ratio: float = 0.5) -> str:
        total = comps.add(a=2, b=2)
        with dsl.If(total.output == 4):
            four = comps.echo(s="four")
        with dsl.Else():
            other = comps.echo(s="other")
        with dsl.If(flag == True):  # noqa: E712 - a KFP condition, not a Python comparison
            comps.echo(s="flag")
        with dsl.If(ratio > 0.75):
            comps.echo(s="ratio")
        return comps.echo(s=dsl.OneOf(four.output, other.output)).output

    result = run(pipeline)
    assert result.pipeline_outputs == {"Output": "four"}
    states = {key: task["state"] for key, task in result.tasks.items()}
    assert states == {
        "add": "SUCCEEDED", "echo": "SUCCEEDED", "echo-2": "SKIPPED", "echo-3": "SUCCEEDED",
        "echo-4": "SKIPPED", "echo-5": "SUCCEEDED",
    }  # fmt: skip
    flipped = run(pipeline, {"flag": "false", "ratio": "0.9"})
    assert {k: t["state"] for k, t in flipped.tasks.items() if k in ("echo-3", "echo-4")} == {
        "echo-3": "SKIPPED",
        "echo-4": "SUCCEEDED",
    }


def test_condition_inside_loop_uses_the_loop_item(run, comps) -> None:
    @dsl.pipeline(name="loop-if")
    def pipeline() -> list:
        with dsl.ParallelFor([1, 5, 9]) as item, dsl.If(item > 4):
            big = comps.add(a=item, b=0)
        return dsl.Collected(big.output)

    result = run(pipeline)
    assert [result.tasks[f"add.{i}"]["state"] for i in range(3)] == ["SKIPPED", "SUCCEEDED", "SUCCEEDED"]
    assert result.pipeline_outputs == {"Output": [5, 9]}


# --- exit handler, nested pipelines, importer, outputs -------------------------------------------------------


def test_exit_handler_runs_after_failure_and_gets_the_status(run, comps) -> None:
    @dsl.pipeline(name="exit-handler")
    def pipeline(code: int = 4) -> None:
        cleanup = comps.report_status(note="cleanup")
        with dsl.ExitHandler(cleanup):
            comps.echo(s="body")
            comps.fail(code=code)

    result = run(pipeline)
    assert result.state == "FAILED"
    status = json.loads(result.tasks["report-status"]["parameters"]["Output"])
    assert status["state"] == "FAILED"
    assert status["task"] == "exit-handler-1"
    assert status["note"] == "cleanup"
    assert "exit code 4" in status["error"]
    assert result.tasks["echo"]["state"] == "SUCCEEDED"


def test_exit_handler_reports_success(run, comps) -> None:
    @dsl.pipeline(name="exit-ok")
    def pipeline() -> None:
        cleanup = comps.report_status(note="n")
        with dsl.ExitHandler(cleanup):
            comps.echo(s="body")

    result = run(pipeline)
    assert result.state == "SUCCEEDED"
    assert json.loads(result.tasks["report-status"]["parameters"]["Output"]) == {
        "state": "SUCCEEDED",
        "error": None,
        "task": "exit-handler-1",
        "note": "n",
    }


def test_nested_pipelines_have_their_own_inputs_and_outputs(run, comps) -> None:
    @dsl.pipeline(name="inner")
    def inner(x: int, y: int = 10) -> int:
        first = comps.add(a=x, b=y)
        return comps.add(a=first.output, b=1).output

    @dsl.pipeline(name="outer")
    def outer() -> int:
        once = inner(x=1)
        twice = inner(x=once.output, y=100)
        with dsl.ParallelFor([7, 8]) as item:
            inner(x=item)
        return twice.output

    result = run(outer)
    assert result.pipeline_outputs == {"Output": 113}
    outputs = {key: task["parameters"]["Output"] for key, task in result.tasks.items()}
    assert outputs == {
        "inner/add": 11, "inner/add-2": 12,
        "inner-2/add": 112, "inner-2/add-2": 113,
        "inner-3.0/add": 17, "inner-3.0/add-2": 18, "inner-3.1/add": 18, "inner-3.1/add-2": 19,
    }  # fmt: skip


def test_importer_brings_in_an_existing_file(run, comps, tmp_path) -> None:
    source = tmp_path / "imported" / "data.txt"
    source.parent.mkdir()
    source.write_text("imported bytes\n")

    @dsl.pipeline(name="importer")
    def pipeline(uri: str) -> str:
        imported = dsl.importer(artifact_uri=uri, artifact_class=dsl.Artifact, metadata={"origin": "test"})
        return comps.read_file(data=imported.output).output

    result = run(pipeline, {"uri": str(source)})
    assert result.pipeline_outputs == {"Output": 'imported bytes|{"origin": "test"}'}
    assert result.tasks["importer"]["artifacts"] == {"artifact": [str(source)]}


def test_pipeline_outputs_named_parameters_and_artifacts(run, comps) -> None:
    from typing import NamedTuple

    from kfp.dsl import Model

    class Outputs(NamedTuple):
        word: str
        number: int
        model: Model

    @dsl.pipeline(name="outputs")
    def pipeline(word: str = "kfp") -> Outputs:
        named = comps.emit_named(word=word)
        return Outputs(word=named.outputs["word"], number=named.outputs["number"], model=named.outputs["model"])

    result = run(pipeline)
    model_uri = str(result.run_dir / "emit-named" / "model")
    assert result.pipeline_outputs == {"word": "kfp", "number": 3, "model": [model_uri]}
    assert Path(model_uri).read_text() == "KFP"
    assert result.tasks["emit-named"]["artifact_metadata"] == {"model": [{"kind": "toy"}]}


def test_container_component_placeholders(run, comps) -> None:
    @dsl.pipeline(name="container")
    def pipeline() -> str:
        with_flag = comps.shell_concat(text="a b", flag="--yes")
        comps.shell_concat(text="c")
        return comps.read_text(data=with_flag.outputs["out"]).output

    result = run(pipeline)
    assert result.state == "SUCCEEDED"
    assert result.tasks["shell-concat"]["parameters"] == {"res": "--yes|shell-concat"}
    assert result.tasks["shell-concat-2"]["parameters"] == {"res": "no-flag|shell-concat-2"}
    assert result.pipeline_outputs == {"Output": "<a b>|{}"}


# --- caching and parallelism ---------------------------------------------------------------------------------


def test_cache_hits_on_rerun_and_respects_opt_outs(run, comps) -> None:
    @dsl.pipeline(name="cache")
    def pipeline(text: str = "cached") -> str:
        written = comps.write_text(text=text)
        comps.echo(s="never cached").set_caching_options(False)
        return comps.read_text(data=written.outputs["out"]).output

    first = run(pipeline)
    second = run(pipeline)
    cached = {key: (task["cached"], task["attempts"]) for key, task in second.tasks.items()}
    assert cached == {"write-text": (True, 0), "echo": (False, 1), "read-text": (True, 0)}
    assert second.pipeline_outputs == first.pipeline_outputs
    new_uri = second.tasks["write-text"]["artifacts"]["out"][0]
    assert new_uri == str(second.run_dir / "write-text" / "out")
    assert Path(new_uri).read_text() == "cached"
    assert second.tasks["write-text"]["artifact_metadata"] == {"out": [{"length": 6, "text": "cached"}]}
    changed = run(pipeline, {"text": "other"})
    assert not any(task["cached"] for task in changed.tasks.values())
    disabled = run(pipeline, use_cache=False)
    assert not any(task["cached"] for task in disabled.tasks.values())


@pytest.mark.e2e
def test_independent_tasks_run_concurrently_and_parallelism_is_honoured(run, comps) -> None:
    @dsl.pipeline(name="concurrency")
    def pipeline() -> None:
        comps.sleep_stamp(seconds=2.0, tag="a")
        comps.sleep_stamp(seconds=2.0, tag="b")
        with dsl.ParallelFor(["x", "y", "z"], parallelism=1) as tag:
            comps.sleep_stamp(seconds=0.5, tag=tag)

    result = run(pipeline, max_parallel=4, use_cache=False)
    spans = {key: json.loads(task["parameters"]["Output"]) for key, task in result.tasks.items()}
    a, b = spans["sleep-stamp"], spans["sleep-stamp-2"]
    assert max(a["start"], b["start"]) < min(a["end"], b["end"]), "independent tasks did not overlap"
    loop = sorted((spans[f"sleep-stamp-3.{i}"] for i in range(3)), key=lambda s: s["start"])
    assert all(earlier["end"] <= later["start"] for earlier, later in zip(loop, loop[1:], strict=False))


def test_max_parallel_one_serializes(run, comps) -> None:
    @dsl.pipeline(name="serial")
    def pipeline() -> None:
        comps.sleep_stamp(seconds=0.3, tag="a")
        comps.sleep_stamp(seconds=0.3, tag="b")

    result = run(pipeline, max_parallel=1, use_cache=False)
    a, b = (json.loads(result.tasks[k]["parameters"]["Output"]) for k in ("sleep-stamp", "sleep-stamp-2"))
    assert a["end"] <= b["start"] or b["end"] <= a["start"]


# --- the last KFP gaps: workspaces, custom paths, STRING conversion, the final-status value ------------------


def _component(image: str):
    return functools.partial(dsl.component, base_image=image, install_kfp_package=False)


def test_workspace_placeholder_is_one_directory_shared_by_the_run(run, image) -> None:
    component = _component(image)

    @component
    def write_to_workspace(workspace_path: str) -> str:
        import os

        path = os.path.join(workspace_path, "data", "note.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("in the workspace")
        return path

    @component
    def read_back(path: str, literal: str) -> str:
        import os

        with open(path) as handle:
            return f"{handle.read()}|{sorted(os.listdir(literal))}"

    @dsl.pipeline(name="workspace", pipeline_config=dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size="1Gi")))
    def pipeline() -> str:
        written = write_to_workspace(workspace_path=dsl.WORKSPACE_PATH_PLACEHOLDER)
        return read_back(path=written.output, literal="/kfp-workspace/data").output

    result = run(pipeline)
    assert result.state == "SUCCEEDED", result.record.get("error")
    workspace = result.run_dir / ".workspace"
    assert result.tasks["write-to-workspace"]["parameters"]["Output"] == str(workspace / "data" / "note.txt")
    assert result.pipeline_outputs == {"Output": "in the workspace|['note.txt']"}
    assert result.tasks["read-back"]["inputs"]["parameters"]["literal"] == str(workspace / "data")


def test_workspace_placeholder_without_a_workspace_fails_the_task_clearly(run, comps, tmp_path) -> None:
    @dsl.pipeline(name="no-workspace")
    def pipeline() -> str:
        return comps.echo(s="x").output

    spec = compile_pipeline(pipeline, tmp_path / "spec")
    document = spec.read_text().replace("constant: x", "constant: '{{$.workspace_path}}'")
    assert "workspace_path" in document
    spec.write_text(document)
    result = run_pipeline(spec, backend="subprocess", root=tmp_path / "runs", tracking="off")
    assert result.state == "FAILED"
    assert "declares no workspace" in result.tasks["echo"]["error"]


def test_importer_downloads_into_the_workspace(run, image, tmp_path) -> None:
    component = _component(image)
    source = tmp_path / "imported"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("A")
    (source / "sub" / "b.txt").write_text("B")

    @component
    def list_files(data: Input[Dataset]) -> str:
        import os

        names = [os.path.relpath(os.path.join(r, f), data.path) for r, _, files in os.walk(data.path) for f in files]
        return ",".join(sorted(names))

    @dsl.pipeline(name="import-ws", pipeline_config=dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size="1Gi")))
    def pipeline(uri: str) -> str:
        imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, download_to_workspace=True)
        return list_files(data=imported.output).output

    result = run(pipeline, {"uri": str(source)})
    assert result.pipeline_outputs == {"Output": "a.txt,sub/b.txt"}
    (copied,) = result.tasks["importer"]["artifacts"]["artifact"]
    assert copied == str(result.run_dir / ".workspace" / ".artifacts" / "importer" / "imported")
    assert (source / "a.txt").read_text() == "A"  # the original is untouched


def test_artifact_set_path_is_honoured(subprocess_run, tmp_path) -> None:
    component = _component("unused")
    custom = tmp_path / "elsewhere" / "out_dataset"

    @component
    def produce(where: str, out: Output[Dataset]):
        out.set_path(where)
        with open(out.path, "w") as handle:
            handle.write("Hello, World!")
        assert out.path == where and out.custom_path == where

    @component
    def consume(data: Input[Dataset]) -> str:
        with open(data.path) as handle:
            return handle.read()

    @dsl.pipeline(name="custom-path")
    def pipeline(where: str) -> str:
        return consume(data=produce(where=where).outputs["out"]).output

    custom.parent.mkdir()
    result = subprocess_run(pipeline, {"where": str(custom)})
    assert result.pipeline_outputs == {"Output": "Hello, World!"}
    (uri,) = result.tasks["produce"]["artifacts"]["out"]
    assert uri == str(result.run_dir / "produce" / "out")
    assert Path(uri).read_text() == "Hello, World!"


def test_artifact_set_path_to_a_symlink_is_refused(subprocess_run, tmp_path) -> None:
    component = _component("unused")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the artifact")
    link = tmp_path / "link"

    @component
    def produce(where: str, target: str, out: Output[Dataset]):
        import os

        os.symlink(target, where)
        out.set_path(where)

    @dsl.pipeline(name="custom-path-link")
    def pipeline(where: str, target: str) -> None:
        produce(where=where, target=target)

    result = subprocess_run(pipeline, {"where": str(link), "target": str(secret)})
    assert result.state == "FAILED"
    assert "is a symlink (refused)" in result.tasks["produce"]["error"]
    assert not (result.run_dir / "produce" / "out").exists()


def test_non_string_loop_fields_reach_string_inputs_as_driver_text(run, comps) -> None:
    @dsl.pipeline(name="string-conversion")
    def pipeline(items: list = [{"n": 1, "f": 2.5, "b": True, "l": [1, 2.0], "d": {"k": "v"}}]) -> list:  # noqa: B006
        with dsl.ParallelFor(items) as item:
            n = comps.echo(s=item.n)
            comps.echo(s=item.f)
            comps.echo(s=item.b)
            comps.echo(s=item.l)
            comps.echo(s=item.d)
        return dsl.Collected(n.output)

    result = run(pipeline)
    assert result.state == "SUCCEEDED", result.record.get("error")
    outputs = [result.tasks[f"{key}.0"]["parameters"]["Output"] for key in ("echo", "echo-2", "echo-3", "echo-4")]
    assert outputs == ["1", "2.5", "true", "[1,2]"]
    assert result.tasks["echo-5.0"]["parameters"]["Output"] == '{"k":"v"}'


def test_final_status_uses_vertex_state_names() -> None:
    from expforge.local_runner.final_status import final_status

    assert final_status("exit-handler-1", "run-1", "SUCCEEDED", None) == {
        "state": "SUCCEEDED",
        "pipelineJobResourceName": "run-1",
        "pipelineTaskName": "exit-handler-1",
        "error": {},
    }
    assert final_status("t", "r", "UPSTREAM_FAILED", "upstream x failed")["state"] == "FAILED"
    assert final_status("t", "r", "FAILED", "boom")["error"] == {"code": 2, "message": "boom"}
    assert final_status("t", "r", "CANCELLED", None)["error"] == {"code": 1, "message": "cancelled"}


# --- KFP's own samples for these constructs, through the conformance harness ----------------------------------


def _harness():
    import importlib.util

    path = Path(__file__).parent / "kfp_samples" / "harness.py"
    spec = importlib.util.spec_from_file_location("kfp_samples_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "sample",
    [
        "valid/critical/pipeline_with_workspace.py",
        "valid/critical/pipeline_with_importer_workspace.py",
        "valid/critical/pipeline_with_artifact_custom_path.py",
    ],
)
def test_kfp_sample_pipelines_pass_on_our_runner(sample) -> None:
    outcome = _harness()._run_worker(sample, "ours", timeout=300)
    assert outcome["status"] == "pass", outcome
    assert outcome["state"] == "SUCCEEDED"


@pytest.mark.docker
def test_artifact_set_path_inside_a_container_is_copied_out(docker_run, docker_image, tmp_path) -> None:
    component = _component(docker_image)
    decoy = Path("/tmp/out_dataset_expforge_decoy")  # the same path on the host must never be read

    @component
    def produce(out: Output[Dataset]):
        out.set_path("/tmp/out_dataset_expforge_decoy")
        with open(out.path, "w") as handle:
            handle.write("from the container")

    @component
    def consume(data: Input[Dataset]) -> str:
        with open(data.path) as handle:
            return handle.read()

    @dsl.pipeline(name="custom-path-docker")
    def pipeline() -> str:
        return consume(data=produce().outputs["out"]).output

    decoy.write_text("from the host")
    try:
        result = docker_run(pipeline)
    finally:
        decoy.unlink()
    assert result.pipeline_outputs == {"Output": "from the container"}
    assert (result.run_dir / "produce" / "out").read_text() == "from the container"
