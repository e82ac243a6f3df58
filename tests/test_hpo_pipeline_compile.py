"""Hyperband as pipeline structure: compile the unrolled graph and check its wiring; run its components.

The compiled YAML is the contract, so the structure is checked there: one ParallelFor per rung with the
schedule's number of trials and epochs, select-top keep values, the warm-start edge (a rung's trials read the
previous rung's ``promoted`` directory), the incumbent chain across brackets and the pipeline outputs.
The components themselves run through KFP's own executor (the code path a container runs), with the real
PyTorch trainer for the warm-start chain.
"""

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl
from kfp.dsl.executor import Executor
from tensorboard_events import read_scalars

from expforge.components._adapter import default_image, pinned_images
from expforge.components.hyperband_trial import hyperband_trial
from expforge.components.sample_configs import sample_configs
from expforge.components.select_top import select_top
from expforge.errors import ExpforgeError
from expforge.pipelines.hpo import (
    DEFAULT_PARALLELISM,
    TrialSettings,
    add_hyperband,
    build_hyperband_digits,
    build_random_search_digits,
)
from expforge.tune.hyperband import hyperband_schedule
from expforge.tune.records import TrialItem, TrialRecord
from expforge.tune.space import DEFAULT_SEARCH_SPACE, SearchSpace, sample_trials

HPO_STEPS = ("sample-configs", "hyperband-trial", "select-top", "bootstrap-mnist", "render-font-digits")


def compile_to_dict(pipeline: Any, path: Path) -> dict[str, Any]:
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return yaml.safe_load(path.read_text())


def constant(task: dict[str, Any], name: str) -> Any:
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


class Graph:
    """Walks the compiled spec: rung loops from sample-configs through select-top to the next rung."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.root = spec["root"]["dag"]["tasks"]
        self.components = spec["components"]

    def loop_over(self, producer: str, key: str) -> str:
        """The root loop task iterating over ``producer``'s output parameter ``key``."""
        found = []
        for name, task in self.root.items():
            iterator = task.get("parameterIterator")
            if not iterator:
                continue
            source = task["inputs"]["parameters"][iterator["items"]["inputParameter"]]["taskOutputParameter"]
            if (source["producerTask"], source["outputParameterKey"]) == (producer, key):
                found.append(name)
        assert len(found) == 1, (producer, key, found)
        return found[0]

    def trial_in(self, loop: str) -> dict[str, Any]:
        """The single hyperband-trial task inside a loop's sub-DAG."""
        dag = self.components[self.root[loop]["componentRef"]["name"]]["dag"]["tasks"]
        assert len(dag) == 1
        (task,) = dag.values()
        assert task["componentRef"]["name"].startswith("comp-hyperband-trial")
        return task

    def consumer_of_loop(self, loop: str) -> str:
        """The select-top task fed by the loop's collected checkpoints and records."""
        found = [
            name
            for name, task in self.root.items()
            if task["componentRef"]["name"].startswith("comp-select-top")
            and task["inputs"]["artifacts"]["trials"]["taskOutputArtifact"]["producerTask"] == loop
        ]
        assert len(found) == 1
        task = self.root[found[0]]
        assert task["inputs"]["parameters"]["records"]["taskOutputParameter"]["producerTask"] == loop
        return found[0]


@pytest.fixture(scope="module")
def hyperband_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    images = {step: f"registry.invalid/expforge/{step}:sha-{i}" for i, step in enumerate(HPO_STEPS)}
    with pinned_images(images):
        pipeline = build_hyperband_digits(max_epochs=9, eta=3)
    spec = compile_to_dict(pipeline, tmp_path_factory.mktemp("hpo") / "hyperband.yaml")
    spec["_images"] = images
    return spec


def test_every_rung_is_one_parallel_for_with_the_schedules_trials_and_epochs(hyperband_spec) -> None:
    schedule = hyperband_schedule(9, 3)
    graph = Graph(hyperband_spec)
    samplers = {
        name: task
        for name, task in graph.root.items()
        if task["componentRef"]["name"].startswith("comp-sample-configs")
    }
    assert len(samplers) == len(schedule.brackets) == 3
    loops_seen = set()
    finals = {}
    for bracket in schedule.brackets:
        (sampler,) = [n for n, t in samplers.items() if constant(t, "salt") == f"hyperband/bracket-{bracket.s}"]
        assert constant(samplers[sampler], "count") == bracket.configs
        assert constant(samplers[sampler], "id_prefix") == f"b{bracket.s}"
        assert samplers[sampler]["inputs"]["parameters"]["search_space"] == {"componentInputParameter": "search_space"}
        producer, key = sampler, "Output"
        previous_select = None
        for rung in bracket.rungs:
            loop = graph.loop_over(producer, key)
            loops_seen.add(loop)
            loop_task = graph.root[loop]
            assert loop_task["iteratorPolicy"]["parallelismLimit"] == DEFAULT_PARALLELISM
            assert loop_task["taskInfo"]["name"] == (
                f"bracket {bracket.s} · rung {rung.index} · {rung.configs} trials at {rung.epochs} "
                + ("epoch" if rung.epochs == 1 else "epochs")
            )
            trial = graph.trial_in(loop)
            assert constant(trial, "epochs") == rung.epochs
            assert constant(trial, "max_epochs") == 9
            assert constant(trial, "bracket") == bracket.s and constant(trial, "rung") == rung.index
            assert trial["inputs"]["parameters"]["trial"]["componentInputParameter"].endswith("-loop-item")
            for name in ("real_fraction", "curriculum", "device", "seed"):
                channel = trial["inputs"]["parameters"][name]["componentInputParameter"]
                assert loop_task["inputs"]["parameters"][channel] == {"componentInputParameter": name}
            # datasets come from the two data steps
            for name, producer_task in (("synthetic", "render-font-digits"), ("real", "bootstrap-mnist")):
                channel = trial["inputs"]["artifacts"][name]["componentInputArtifact"]
                source = loop_task["inputs"]["artifacts"][channel]["taskOutputArtifact"]
                assert source == {"outputArtifactKey": "dataset", "producerTask": producer_task}
            # the warm-start edge: rung > 0 trials read the previous select-top's promoted checkpoints
            if previous_select is None:
                assert "previous" not in trial["inputs"].get("artifacts", {})
            else:
                channel = trial["inputs"]["artifacts"]["previous"]["componentInputArtifact"]
                source = loop_task["inputs"]["artifacts"][channel]["taskOutputArtifact"]
                assert source == {"outputArtifactKey": "promoted", "producerTask": previous_select}
            select = graph.consumer_of_loop(loop)
            final = rung.index == len(bracket.rungs) - 1
            assert constant(graph.root[select], "keep") == (1 if final else rung.keep)
            producer, key, previous_select = select, "survivors", select
        finals[bracket.s] = previous_select
    assert len(loops_seen) == sum(len(b.rungs) for b in schedule.brackets) == 6
    assert sum(1 for t in graph.root.values() if "parameterIterator" in t) == 6

    # the brackets' final selections form the incumbent chain, most aggressive bracket first
    order = [finals[b.s] for b in schedule.brackets]
    assert "incumbent" not in graph.root[order[0]]["inputs"]["artifacts"]
    for before, after in zip(order, order[1:], strict=False):
        inputs = graph.root[after]["inputs"]
        assert inputs["artifacts"]["incumbent"]["taskOutputArtifact"] == {
            "outputArtifactKey": "best",
            "producerTask": before,
        }
        assert inputs["parameters"]["incumbent_record"]["taskOutputParameter"] == {
            "outputParameterKey": "best_record",
            "producerTask": before,
        }
    outputs = hyperband_spec["root"]["dag"]["outputs"]
    assert outputs["artifacts"]["model"]["artifactSelectors"] == [
        {"outputArtifactKey": "best", "producerSubtask": order[-1]}
    ]
    assert outputs["parameters"]["config"]["valueFromParameter"]["producerSubtask"] == order[-1]
    assert outputs["parameters"]["val_accuracy"]["valueFromParameter"]["outputParameterKey"] == "best_val_accuracy"


def test_collected_checkpoints_are_an_artifact_list_and_trials_run_in_their_own_images(hyperband_spec) -> None:
    spec = hyperband_spec
    select_component = next(c for n, c in spec["components"].items() if n.startswith("comp-select-top"))
    trials_input = select_component["inputDefinitions"]["artifacts"]["trials"]
    assert trials_input["isArtifactList"] is True and trials_input["artifactType"]["schemaTitle"] == "system.Model"
    assert select_component["inputDefinitions"]["artifacts"]["incumbent"]["isOptional"] is True
    trial_component = next(c for n, c in spec["components"].items() if n.startswith("comp-hyperband-trial"))
    assert trial_component["inputDefinitions"]["artifacts"]["previous"]["isOptional"] is True

    executors = spec["deploymentSpec"]["executors"]
    images = spec["_images"]
    for label, executor in executors.items():
        step = label.removeprefix("exec-").rsplit("-", 1)[0] if label[-1].isdigit() else label.removeprefix("exec-")
        assert executor["container"]["image"] == images[step]
        assert executor["container"]["args"][-1] == step.replace("-", "_")
        if step == "hyperband-trial":
            resources = executor["container"]["resources"]
            assert resources["resourceCpuLimit"] == "2" and resources["resourceMemoryLimit"] == "4G"
            assert "accelerator" not in resources
    assert sum(1 for label in executors if label.startswith("exec-hyperband-trial")) == 6


def test_random_search_is_one_loop_and_one_selection(tmp_path: Path) -> None:
    spec = compile_to_dict(build_random_search_digits(max_epochs=9, eta=3, budget_multiple=2.0), tmp_path / "rs.yaml")
    graph = Graph(spec)
    (sampler,) = [n for n, t in graph.root.items() if t["componentRef"]["name"].startswith("comp-sample-configs")]
    assert constant(graph.root[sampler], "count") == 138 // 9 == 15
    assert constant(graph.root[sampler], "salt") == "random-search"
    loop = graph.loop_over(sampler, "Output")
    trial = graph.trial_in(loop)
    assert constant(trial, "epochs") == constant(trial, "max_epochs") == 9
    assert "previous" not in trial["inputs"].get("artifacts", {})
    select = graph.consumer_of_loop(loop)
    assert constant(graph.root[select], "keep") == 1
    assert sum(1 for t in graph.root.values() if "parameterIterator" in t) == 1
    assert spec["root"]["dag"]["outputs"]["artifacts"]["model"]["artifactSelectors"][0]["producerSubtask"] == select


def test_resources_and_accelerators_may_be_constants_or_pipeline_parameters(tmp_path: Path) -> None:
    schedule = hyperband_schedule(3, 3)

    @dsl.pipeline(name="hpo-resources")
    def with_parameters(
        synthetic_uri: str = "gs://x/s", cpu: str = "4", memory: str = "8G", gpu: str = "NVIDIA_L4", gpus: int = 1
    ) -> None:
        synthetic = dsl.importer(artifact_uri=synthetic_uri, artifact_class=dsl.Dataset)
        trials = TrialSettings(
            synthetic.output, synthetic.output, cpu=cpu, memory=memory, accelerator_type=gpu, accelerator_count=gpus
        )
        add_hyperband(trials, schedule=schedule, parallelism=2)

    spec = compile_to_dict(with_parameters, tmp_path / "resources.yaml")
    trials = [e for label, e in spec["deploymentSpec"]["executors"].items() if "hyperband-trial" in label]
    assert len(trials) == 3  # bracket 1: 3 trials at 1 epoch, then 1 at 3; bracket 0: 2 at 3 — one task each rung
    for executor in trials:
        resources = executor["container"]["resources"]
        assert resources["resourceCpuLimit"] == "{{$.inputs.parameters['pipelinechannel--cpu']}}"
        assert resources["resourceMemoryLimit"] == "{{$.inputs.parameters['pipelinechannel--memory']}}"
        assert resources["accelerator"] == {
            "resourceCount": "{{$.inputs.parameters['pipelinechannel--gpus']}}",
            "resourceType": "{{$.inputs.parameters['pipelinechannel--gpu']}}",
        }

    @dsl.pipeline(name="hpo-constant-gpu")
    def with_constants(synthetic_uri: str = "gs://x/s") -> None:
        synthetic = dsl.importer(artifact_uri=synthetic_uri, artifact_class=dsl.Dataset)
        trials = TrialSettings(synthetic.output, synthetic.output, accelerator_type="NVIDIA_L4", accelerator_count=2)
        add_hyperband(trials, schedule=schedule)

    spec = compile_to_dict(with_constants, tmp_path / "constants.yaml")
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "hyperband-trial" in label:
            accelerator = executor["container"]["resources"]["accelerator"]
            assert (accelerator["resourceCount"], accelerator["resourceType"]) == ("2", "NVIDIA_L4")


def test_bad_builder_input_fails_at_compile_time() -> None:
    schedule = hyperband_schedule(3, 3)
    with pytest.raises(ExpforgeError, match=r"search_space: lr\.low 0\.1 ≥ lr\.high 0\.01"):

        @dsl.pipeline(name="bad-space")
        def bad_space(uri: str = "gs://x") -> None:
            data = dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset)
            bad = {"lr": {"distribution": "uniform", "low": 0.1, "high": 0.01}}
            add_hyperband(TrialSettings(data.output, data.output), schedule=schedule, search_space=bad)

    with pytest.raises(ExpforgeError, match="accelerator_type: required"):

        @dsl.pipeline(name="bad-gpu")
        def bad_gpu(uri: str = "gs://x") -> None:
            data = dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset)
            add_hyperband(TrialSettings(data.output, data.output, accelerator_count=1), schedule=schedule)

    with pytest.raises(ExpforgeError, match="eta: 1 is below 2"):
        build_hyperband_digits(max_epochs=9, eta=1)


# --- the components, through KFP's executor ---------------------------------------------------------------------


def run_component(
    component: Any,
    workdir: Path,
    parameters: dict[str, Any],
    inputs: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``component`` as its container would (``Executor.execute``); return (parameters, artifacts) it output.

    ``inputs`` maps an input artifact name to runtime artifacts ``{"uri": ..., "metadata": ...}``.
    """
    spec = component.component_spec
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts_in = {}
    for name, artifacts in (inputs or {}).items():
        title = spec.inputs[name].type.split("@")[0]
        artifacts_in[name] = {
            "artifacts": [
                {
                    "name": f"{name}-{i}",
                    "type": {"schemaTitle": title},
                    "uri": a["uri"],
                    "metadata": a.get("metadata", {}),
                }
                for i, a in enumerate(artifacts)
            ]
        }
    outputs: dict[str, Any] = {"artifacts": {}, "parameters": {}, "outputFile": str(workdir / "executor_output.json")}
    for name, output in (spec.outputs or {}).items():
        if "@" in output.type:
            uri = str(workdir / "outputs" / name)
            outputs["artifacts"][name] = {
                "artifacts": [{"name": name, "type": {"schemaTitle": output.type.split("@")[0]}, "uri": uri}]
            }
        else:
            outputs["parameters"][name] = {"outputFile": str(workdir / "parameters" / name)}
    executor_input = {"inputs": {"parameterValues": parameters, "artifacts": artifacts_in}, "outputs": outputs}
    Executor(executor_input, component).execute()
    result = json.loads((workdir / "executor_output.json").read_text())
    artifacts = {name: value["artifacts"][0] for name, value in result.get("artifacts", {}).items()}
    return result.get("parameterValues", {}), artifacts


def test_sample_configs_component_draws_what_the_driver_draws(tmp_path: Path) -> None:
    space = json.loads(json.dumps(DEFAULT_SEARCH_SPACE))
    parameters, _ = run_component(
        sample_configs,
        tmp_path,
        {"search_space": space, "count": 5, "seed": 3, "salt": "hyperband/bracket-1", "id_prefix": "b1"},
    )
    assert parameters["Output"] == sample_trials(SearchSpace.default(), 5, 3, "hyperband/bracket-1", "b1")
    with pytest.raises(SystemExit) as exited:
        run_component(sample_configs, tmp_path / "bad", {"search_space": {"lr": {"distribution": "x"}}, "count": 2})
    assert exited.value.code == 2


def _fake_trials(tmp_path: Path, accuracies: dict[str, float], *, bracket: int = 1) -> tuple[list, list]:
    artifacts, records = [], []
    for trial_id, accuracy in accuracies.items():
        uri = tmp_path / "trials" / trial_id / "checkpoint"
        uri.parent.mkdir(parents=True)
        uri.write_bytes(f"weights of {trial_id}".encode())
        artifacts.append({"uri": str(uri), "metadata": {"trial_id": trial_id}})
        item = TrialItem(trial_id, {"name": trial_id}, bracket=bracket, rung=0, epochs=1, max_epochs=1)
        history = ({"epoch": 1, "val_accuracy": accuracy},)
        records.append(
            TrialRecord(item, {"val_accuracy": accuracy}, history, epochs_trained=1, checkpoint=str(uri)).to_json()
        )
    return artifacts, records


def test_select_top_component_keeps_the_best_and_pairs_checkpoints_by_uri(tmp_path: Path) -> None:
    accuracies = {"b1-c00": 0.5, "b1-c01": 0.9, "b1-c02": 0.7, "b1-c03": 0.9, "b1-c04": 0.2}
    artifacts, records = _fake_trials(tmp_path, accuracies)
    random.Random(0).shuffle(records)  # the two collected lists need not share an order
    for artifact in artifacts:
        artifact["metadata"] = {}  # pairing must work from the URI alone
    parameters, outputs = run_component(
        select_top, tmp_path / "select", {"records": records, "keep": 2}, {"trials": artifacts}
    )
    assert parameters["survivors"] == [
        {"trial_id": "b1-c01", "config": {"name": "b1-c01"}},
        {"trial_id": "b1-c03", "config": {"name": "b1-c03"}},
    ]
    promoted = Path(outputs["promoted"]["uri"])
    assert sorted(p.name for p in promoted.iterdir()) == ["b1-c01.pt", "b1-c03.pt", "leaderboard.json", "records.json"]
    assert (promoted / "b1-c03.pt").read_bytes() == b"weights of b1-c03"
    board = json.loads((promoted / "leaderboard.json").read_text())
    assert [row["trial_id"] for row in board] == ["b1-c01", "b1-c03", "b1-c02", "b1-c00", "b1-c04"]
    assert json.loads((promoted / "records.json").read_text())[0]["history"] == [{"epoch": 1, "val_accuracy": 0.9}]
    assert Path(outputs["best"]["uri"]).read_bytes() == b"weights of b1-c01"
    assert outputs["best"]["metadata"]["trial_id"] == "b1-c01"
    assert parameters["best_val_accuracy"] == 0.9 and parameters["best_record"]["item"]["trial_id"] == "b1-c01"
    assert outputs["metrics"]["metadata"]["kept"] == 2

    # an incumbent from an earlier bracket wins when it is better, and is never promoted
    incumbent = tmp_path / "incumbent" / "best"
    incumbent.parent.mkdir()
    incumbent.write_bytes(b"weights of b2-c07")
    record = TrialRecord(
        TrialItem("b2-c07", {"lr": 0.5}, bracket=2, rung=0, epochs=9, max_epochs=9), {"val_accuracy": 0.95}
    ).to_json()
    parameters, outputs = run_component(
        select_top,
        tmp_path / "select-2",
        {"records": records, "keep": 1, "incumbent_record": record},
        {"trials": artifacts, "incumbent": [{"uri": str(incumbent)}]},
    )
    assert Path(outputs["best"]["uri"]).read_bytes() == b"weights of b2-c07"
    assert parameters["best_config"] == {"lr": 0.5} and parameters["survivors"][0]["trial_id"] == "b1-c01"
    assert sorted(p.name for p in Path(outputs["promoted"]["uri"]).iterdir())[0] == "b1-c01.pt"

    records[0]["checkpoint"] = "/nowhere"
    with pytest.raises(SystemExit):
        run_component(select_top, tmp_path / "select-3", {"records": records, "keep": 1}, {"trials": artifacts})


def test_trials_warm_start_from_the_promoted_checkpoints(tmp_path: Path, tiny_dataset: Path) -> None:
    """rung 0 (1 epoch, 2 configs) → select-top keeps 1 → rung 1 resumes it to 2 epochs; that must equal a
    2-epoch run from scratch (the trainer resumes exactly on CPU)."""
    pytest.importorskip("torch")
    pytest.importorskip("expforge.train.torch_trainer")
    config = {"width": 8, "depth": 1, "hidden": 16, "batch_size": 32, "augment": False, "amp": False}
    items = [
        {"trial_id": "b1-c00", "config": {**config, "lr": 3e-3}},
        {"trial_id": "b1-c01", "config": {**config, "lr": 1e-2}},
    ]
    data = {"synthetic": [{"uri": str(tiny_dataset)}], "real": [{"uri": str(tiny_dataset)}]}
    common = {"max_epochs": 2, "device": "cpu", "seed": 0, "bracket": 1, "real_fraction": 0.0}

    artifacts, records = [], []
    for item in items:
        parameters, outputs = run_component(
            hyperband_trial,
            tmp_path / "rung0" / item["trial_id"],
            {**common, "trial": item, "epochs": 1, "rung": 0},
            data,
        )
        record = parameters["record"]
        typed = TrialRecord.from_json(record)
        assert typed.trial_id == item["trial_id"] and typed.item.resume_from is None
        assert typed.item.search == "hyperband" and typed.item.bracket == 1 and typed.resources is not None
        assert len(record["history"]) == 1 and record["checkpoint"] == outputs["checkpoint"]["uri"]
        assert outputs["checkpoint"]["metadata"]["trial_id"] == item["trial_id"]
        assert json.loads(Path(outputs["history"]["uri"]).read_text()) == record["history"]
        events = read_scalars(Path(outputs["tensorboard"]["uri"]))  # TensorBoard's own reader
        assert events["val/loss"] == {1: pytest.approx(record["history"][0]["val_loss"], rel=1e-6)}
        artifacts.append({"uri": outputs["checkpoint"]["uri"], "metadata": outputs["checkpoint"]["metadata"]})
        records.append(record)

    selected, selected_outputs = run_component(
        select_top, tmp_path / "select", {"records": records, "keep": 1}, {"trials": artifacts}
    )
    (survivor,) = selected["survivors"]
    promoted = [{"uri": selected_outputs["promoted"]["uri"]}]
    resumed, resumed_outputs = run_component(
        hyperband_trial,
        tmp_path / "rung1",
        {**common, "trial": survivor, "epochs": 2, "rung": 1},
        {**data, "previous": promoted},
    )
    first = next(r for r in records if r["item"]["trial_id"] == survivor["trial_id"])
    resumed_from = resumed["record"]["item"]["resume_from"]
    assert resumed_from == f"{promoted[0]['uri']}/{survivor['trial_id']}.pt"
    assert resumed["record"]["epochs_trained"] == 1
    assert set(read_scalars(Path(resumed_outputs["tensorboard"]["uri"]))["val/loss"]) == {2}  # the epoch it trained
    assert resumed["record"]["history"][0] == first["history"][0]  # epoch 1 came from the checkpoint
    scratch, _ = run_component(
        hyperband_trial, tmp_path / "scratch", {**common, "trial": survivor, "epochs": 2, "rung": 1}, data
    )
    assert [h["val_loss"] for h in scratch["record"]["history"]] == [
        h["val_loss"] for h in resumed["record"]["history"]
    ]

    with pytest.raises(SystemExit):  # a promoted directory without this trial's checkpoint is one clear error
        other = {"trial_id": "b1-c09", "config": config}
        run_component(
            hyperband_trial,
            tmp_path / "missing",
            {**common, "trial": other, "epochs": 2},
            {**data, "previous": promoted},
        )


def test_components_name_their_own_images() -> None:
    for component, step in (
        (sample_configs, "sample-configs"),
        (select_top, "select-top"),
        (hyperband_trial, "hyperband-trial"),
    ):
        assert component.component_spec.implementation.container.image == default_image(step)
