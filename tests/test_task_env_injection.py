"""expforge.spec.task_env_injection: one rule lays a task environment over a compiled spec's containers
(``compile --env``, ``submit``) and the compiled ``env`` over the local runner's own task environment.

No ``from __future__ import annotations`` here: KFP reads the component's annotations as real types.
"""

from pathlib import Path

import yaml
from kfp import compiler, dsl

from expforge.local_runner.api import run_pipeline
from expforge.spec.task_env_injection import (
    container_environment,
    inject_into_spec,
    inject_task_environment,
    layer_environment,
)
from expforge.task_env import TaskEnvironment

A_ENV = [{"name": "KEEP", "value": "1"}, {"name": "B", "value": "x"}]
SPEC = {
    "deploymentSpec": {
        "executors": {
            "exec-a": {"container": {"image": "a", "env": A_ENV}},
            "exec-b": {"container": {"image": "b"}},
            "exec-importer": {"importer": {"artifactUri": {"constant": "gs://x"}}},
        }
    }
}


def test_the_layer_above_wins_and_follows_sorted_after_the_kept_entries() -> None:
    below = [{"name": "Z", "value": "z"}, {"name": "B", "value": "old"}, {"name": "A", "value": "a"}]
    assert layer_environment(below, {"C": "c", "B": "new"}) == [
        {"name": "Z", "value": "z"},
        {"name": "A", "value": "a"},
        {"name": "B", "value": "new"},
        {"name": "C", "value": "c"},
    ]
    assert container_environment({"X": "runner", "Y": "runner"}, {"Y": "spec"}) == {"X": "runner", "Y": "spec"}


def test_every_container_gets_the_environment_and_importers_are_left_alone() -> None:
    document = yaml.safe_load(yaml.safe_dump(SPEC))
    inject_into_spec(document, TaskEnvironment(tracking="gcp", gcp_project="my-project"))
    executors = document["deploymentSpec"]["executors"]
    assert executors["exec-a"]["container"]["env"] == [
        {"name": "KEEP", "value": "1"},
        {"name": "B", "value": "x"},
        {"name": "EXPFORGE_GCP_PROJECT", "value": "my-project"},
        {"name": "EXPFORGE_TRACKING", "value": "gcp"},
    ]
    assert executors["exec-b"]["container"]["env"] == [
        {"name": "EXPFORGE_GCP_PROJECT", "value": "my-project"},
        {"name": "EXPFORGE_TRACKING", "value": "gcp"},
    ]
    assert executors["exec-importer"] == SPEC["deploymentSpec"]["executors"]["exec-importer"]


def test_the_file_keeps_its_platform_document(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    platform = {"platforms": {"kubernetes": {"pipelineConfig": {"workspace": {"size": "1Gi"}}}}}
    path.write_text(yaml.safe_dump_all([SPEC, platform], sort_keys=False), encoding="utf-8")
    inject_task_environment(path, {"B": "y"})
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents[1] == platform
    assert documents[0]["deploymentSpec"]["executors"]["exec-a"]["container"]["env"] == [
        {"name": "KEEP", "value": "1"},
        {"name": "B", "value": "y"},
    ]


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def report_env() -> str:
    import os

    return f"{os.environ.get('EXPFORGE_EXPERIMENT')}|{os.environ.get('EXPFORGE_PIPELINE')}"


@dsl.pipeline(name="report-env")
def report_env_pipeline() -> str:
    return report_env().output


def test_under_the_runner_the_compiled_environment_wins_over_the_runners(tmp_path: Path) -> None:
    spec = tmp_path / "report-env.yaml"
    compiler.Compiler().compile(report_env_pipeline, str(spec))
    inject_task_environment(spec, {"EXPFORGE_EXPERIMENT": "from-spec"})
    result = run_pipeline(
        spec,
        backend="subprocess",
        root=tmp_path / "runs",
        tracking="off",
        use_cache=False,
        task_env={"EXPFORGE_EXPERIMENT": "from-runner"},
    )
    assert result.succeeded, result.record
    # the spec's variable wins; the runner's own (the pipeline name) still reaches the task
    assert result.pipeline_outputs == {"Output": "from-spec|report-env"}
