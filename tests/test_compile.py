"""The compiled pipeline spec is the contract: load it back and check images and wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from expforge.cli import app
from expforge.components._adapter import default_image, load_all_components
from expforge.pipelines.compile import compile_pipeline, read_image_map

STEPS = ("bootstrap-mnist", "render-font-digits", "train-sklearn", "evaluate")


def load_spec(path: Path) -> pipeline_spec_pb2.PipelineSpec:
    documents = list(yaml.safe_load_all(path.read_text()))
    return json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[pipeline_spec_pb2.PipelineSpec, dict[str, str]]:
    images = {step: f"registry.invalid/expforge/{step}:sha-{i}" for i, step in enumerate(STEPS)}
    path = compile_pipeline("mnist-baseline", tmp_path_factory.mktemp("compiled") / "mnist.yaml", images)
    return load_spec(path), images


def executor_of(spec: pipeline_spec_pb2.PipelineSpec, task: str) -> pipeline_spec_pb2.PipelineDeploymentConfig:
    deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
    json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), deployment)
    component = spec.root.dag.tasks[task].component_ref.name
    return deployment.executors[spec.components[component].executor_label]


def test_every_task_names_its_own_image_and_runs_the_kfp_executor(compiled) -> None:
    spec, images = compiled
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(STEPS)
    for step in STEPS:
        container = executor_of(spec, step).container
        assert container.image == images[step]
        assert list(container.command) == ["python3", "-m", "kfp.dsl.executor_main"]
        assert list(container.args) == [
            "--executor_input",
            "{{$}}",
            "--function_to_execute",
            step.replace("-", "_"),
        ]
    assert len({executor_of(spec, s).container.image for s in STEPS}) == len(STEPS)


def test_artifacts_and_parameters_are_wired_as_intended(compiled) -> None:
    spec, _ = compiled
    tasks = spec.root.dag.tasks

    def artifact_source(task: str, name: str) -> tuple[str, str]:
        ref = tasks[task].inputs.artifacts[name].task_output_artifact
        return ref.producer_task, ref.output_artifact_key

    def parameter_source(task: str, name: str) -> str:
        spec_ = tasks[task].inputs.parameters[name]
        if spec_.HasField("component_input_parameter"):
            return f"pipeline:{spec_.component_input_parameter}"
        return f"const:{json_format.MessageToDict(spec_.runtime_value.constant)}"

    assert artifact_source("train-sklearn", "synthetic") == ("render-font-digits", "dataset")
    assert artifact_source("train-sklearn", "real") == ("bootstrap-mnist", "dataset")
    assert artifact_source("evaluate", "model") == ("train-sklearn", "model")
    assert artifact_source("evaluate", "dataset") == ("bootstrap-mnist", "dataset")
    assert parameter_source("bootstrap-mnist", "limit") == "pipeline:mnist_limit"
    assert parameter_source("bootstrap-mnist", "source") == "pipeline:mnist_source"
    assert parameter_source("render-font-digits", "count") == "pipeline:font_count"
    assert parameter_source("train-sklearn", "real_fraction") == "pipeline:real_fraction"
    assert parameter_source("train-sklearn", "model_type") == "pipeline:model_type"
    assert parameter_source("evaluate", "split") == "const:test"
    for task in ("bootstrap-mnist", "render-font-digits", "train-sklearn"):
        assert parameter_source(task, "seed") == "pipeline:seed"

    defaults = {
        name: json_format.MessageToDict(p.default_value) for name, p in spec.root.input_definitions.parameters.items()
    }
    assert defaults == {
        "mnist_limit": 5000,
        "mnist_source": "auto",
        "font_count": 10000,
        "real_fraction": 0.0,
        "model_type": "logreg",
        "epochs": 10,
        "schedule": "sequential",
        "seed": 0,
    }
    outputs = spec.root.dag.outputs
    assert outputs.parameters["accuracy"].value_from_parameter.producer_subtask == "evaluate"
    assert outputs.artifacts["model"].artifact_selectors[0].producer_subtask == "train-sklearn"
    assert set(tasks["evaluate"].dependent_tasks) == {"train-sklearn", "bootstrap-mnist"}


def test_resource_limits_reach_the_spec(compiled) -> None:
    spec, _ = compiled
    resources = executor_of(spec, "train-sklearn").container.resources
    assert resources.resource_cpu_limit == "2" and resources.resource_memory_limit == "4G"


def test_without_image_map_tasks_use_default_tags(tmp_path: Path) -> None:
    spec = load_spec(compile_pipeline("mnist-baseline", tmp_path / "p.yaml"))
    for step in STEPS:
        assert executor_of(spec, step).container.image == default_image(step)
    # compiling with a map must not leak into later compilations
    compile_pipeline("mnist-baseline", tmp_path / "q.yaml", {"evaluate": "x/evaluate:1"})
    spec = load_spec(compile_pipeline("mnist-baseline", tmp_path / "r.yaml"))
    assert executor_of(spec, "evaluate").container.image == default_image("evaluate")


def test_registry_matches_component_modules() -> None:
    assert set(load_all_components()) >= set(STEPS)


def test_cli_compile_with_image_map_and_bad_maps(tmp_path: Path) -> None:
    runner = CliRunner()
    images = tmp_path / "images.json"
    images.write_text(json.dumps({"base": "expforge/base:1", "evaluate": "expforge/evaluate:abc"}))
    result = runner.invoke(app, ["compile", "--images", str(images), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "out" / "mnist-baseline.yaml")
    assert executor_of(spec, "evaluate").container.image == "expforge/evaluate:abc"

    images.write_text(json.dumps({"evaluat": "expforge/evaluate:abc"}))
    result = runner.invoke(app, ["compile", "--images", str(images), "--output", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "unknown step(s) evaluat" in result.output
    assert not (tmp_path / "o2" / "mnist-baseline.yaml").exists()
    images.write_text("[1, 2]")
    with pytest.raises(Exception, match="expected a JSON object"):
        read_image_map(images)
    result = runner.invoke(app, ["compile", "--pipeline", "nope", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown pipeline 'nope'" in result.output


def test_compile_env_reaches_every_container_and_bad_env_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["compile", "--pipeline", "mnist-baseline", "--output", str(tmp_path), "--env", "EXPFORGE_TRACKING=gcp"],
    )
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "mnist-baseline.yaml")
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    assert executors
    for executor in executors.values():
        assert {"name": "EXPFORGE_TRACKING", "value": "gcp"} in executor["container"]["env"]
    bad = runner.invoke(app, ["compile", "--output", str(tmp_path / "bad"), "--env", "NOEQUALS"])
    assert bad.exit_code == 2
    assert "--env: 'NOEQUALS' is not KEY=VALUE" in bad.output
    assert not (tmp_path / "bad").exists()
