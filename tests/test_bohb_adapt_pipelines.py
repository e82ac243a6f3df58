"""mnist-synthetic's BOHB and adaptation variants: compiled wiring, and propose-configs run by KFP's executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_hpo_pipeline_compile import run_component

from expforge.components.propose_configs import propose_configs
from expforge.errors import ExpforgeError
from expforge.pipelines.compile import compile_pipeline
from expforge.pipelines.mnist_synthetic import build
from expforge.tune.records import TrialItem, TrialRecord
from expforge.tune.space import DEFAULT_SEARCH_SPACE, SearchSpace


def compiled(name: str, tmp_path: Path) -> dict[str, Any]:
    path = compile_pipeline(name, tmp_path / f"{name}.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def component_of(spec: dict[str, Any], task: dict[str, Any]) -> str:
    return str(spec["components"][task["componentRef"]["name"]].get("executorLabel", "")).removeprefix("exec-")


def root_tasks(spec: dict[str, Any], step: str) -> dict[str, dict[str, Any]]:
    return {n: t for n, t in spec["root"]["dag"]["tasks"].items() if component_of(spec, t).startswith(step)}


def test_bohb_chains_each_later_bracket_to_the_records_of_the_one_before(tmp_path: Path) -> None:
    spec = compiled("mnist-synthetic-bohb", tmp_path)
    sampled, proposed = root_tasks(spec, "sample-configs"), root_tasks(spec, "propose-configs")
    assert len(sampled) == 1 and len(proposed) == 1  # demo preset: two brackets
    records = next(iter(proposed.values()))["inputs"]["parameters"]["records"]["taskOutputParameter"]
    loop = spec["root"]["dag"]["tasks"][records["producerTask"]]
    assert "parameterIterator" in loop  # the collected records of the first bracket's rung-0 loop
    (sampler_name,) = sampled
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith(f"{sampler_name}-Output")


def test_adaptation_sits_between_the_search_and_the_evaluation(tmp_path: Path) -> None:
    spec = compiled("mnist-synthetic-adapt", tmp_path)
    (adapt_name,) = root_tasks(spec, "adapt")
    (evaluate_name,) = root_tasks(spec, "evaluate")
    model = spec["root"]["dag"]["tasks"][evaluate_name]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model == {"producerTask": adapt_name, "outputArtifactKey": "adapted"}
    reported = spec["root"]["dag"]["outputs"]["parameters"]["val_accuracy"]["valueFromParameter"]
    assert reported["producerSubtask"] == adapt_name  # the evaluated model's val accuracy, not the search winner's
    default = compiled("mnist-synthetic", tmp_path)
    assert not root_tasks(default, "adapt") and not root_tasks(default, "propose-configs")


def test_the_fine_tune_sits_between_the_adaptation_and_everything_that_reads_the_model(tmp_path: Path) -> None:
    spec = compiled("mnist-synthetic-adapt-finetune", tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    (adapt_name,), (tune_name,) = root_tasks(spec, "adapt"), root_tasks(spec, "fine-tune")
    tune = tasks[tune_name]["inputs"]
    assert tune["artifacts"]["model"]["taskOutputArtifact"] == {
        "producerTask": adapt_name,
        "outputArtifactKey": "adapted",
    }
    assert tune["parameters"]["epochs"]["componentInputParameter"] == "fine_tune_epochs"
    after = {name: t for name, t in tasks.items() if name not in (adapt_name, tune_name)}
    readers = {name: t for name, t in after.items() if "model" in t.get("inputs", {}).get("artifacts", {})}
    assert sorted(component_of(spec, t).split("-")[0] for t in readers.values()) == ["drift", "drift", "evaluate"]
    producers = {r["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] for r in readers.values()}
    assert producers == {tune_name}  # evaluate and both drift checks read the fine-tuned model
    outputs = spec["root"]["dag"]["outputs"]["parameters"]
    assert outputs["val_accuracy"]["valueFromParameter"] == {
        "producerSubtask": tune_name,
        "outputParameterKey": "val_accuracy",
    }
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["fine_tune_epochs"]["defaultValue"] == 36  # the demo preset's
    assert (
        "fine_tune_epochs" not in compiled("mnist-synthetic-adapt", tmp_path)["root"]["inputDefinitions"]["parameters"]
    )


def test_adapt_and_fine_tune_get_the_trials_cpu_memory_and_accelerator(tmp_path: Path) -> None:
    # both train on ``device``: one that asks for cuda needs the accelerator the trials are given
    executors = compiled("mnist-synthetic-adapt-finetune", tmp_path)["deploymentSpec"]["executors"]
    resources = {label: e["container"].get("resources") for label, e in executors.items()}
    trial = next(r for label, r in resources.items() if label.startswith("exec-hyperband-trial"))
    assert trial["accelerator"] == {
        "resourceCount": "{{$.inputs.parameters['pipelinechannel--accelerator_count']}}",
        "resourceType": "{{$.inputs.parameters['pipelinechannel--accelerator_type']}}",
    }
    assert resources["exec-adapt"] == resources["exec-fine-tune"] == trial


def test_a_fine_tune_without_the_adaptation_is_one_clear_error() -> None:
    with pytest.raises(ExpforgeError, match=r"fine_tune_real_labels: the fine-tune follows the adaptation"):
        build(fine_tune_real_labels=True)


def test_an_unknown_search_is_one_clear_error() -> None:
    with pytest.raises(ExpforgeError, match=r"--search: unknown search 'grid'; expected one of hyperband, bohb"):
        build(search="grid")


def _records(space: dict[str, Any], count: int) -> list[dict[str, Any]]:
    configs = SearchSpace.from_dict(space).sample_configurations(count, seed=9)
    return [
        TrialRecord(
            TrialItem(f"b1-c{i:02d}", c, bracket=1, epochs=1, max_epochs=3), {"val_accuracy": 0.1 + 0.05 * i}
        ).to_json()
        for i, c in enumerate(configs)
    ]


def test_propose_configs_runs_in_kfps_executor_and_refuses_another_space(tmp_path: Path) -> None:
    space = json.loads(json.dumps(DEFAULT_SEARCH_SPACE))
    arguments = {"search_space": space, "count": 4, "seed": 0, "salt": "hyperband/bracket-0", "id_prefix": "b0"}
    parameters, _ = run_component(propose_configs, tmp_path / "ok", {**arguments, "records": _records(space, 6)})
    items = json.loads(parameters["Output"]) if isinstance(parameters["Output"], str) else parameters["Output"]
    assert [item["trial_id"] for item in items] == ["b0-c00", "b0-c01", "b0-c02", "b0-c03"]
    other = {
        "lr": {"distribution": "log-uniform", "low": 1e-4, "high": 1e-1},
        "depth": {"distribution": "int", "low": 1, "high": 3},
    }
    with pytest.raises(SystemExit) as exit_info:
        run_component(propose_configs, tmp_path / "bad", {**arguments, "records": _records(other, 3)})
    assert exit_info.value.code == 2
