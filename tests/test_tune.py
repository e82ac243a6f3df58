"""expforge.tune: search spaces, the Hyperband schedule, selection, random search, the in-process driver, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.tune.driver import run_hyperband, run_random_search
from expforge.tune.hyperband import hyperband_schedule
from expforge.tune.promotion import Checkpoint, Incumbent, promote
from expforge.tune.random_search import matched_budget, random_search_plan, random_search_trials
from expforge.tune.records import (
    RANDOM_SEARCH,
    Resources,
    TrialItem,
    TrialRecord,
    finite_json,
    read_records,
    write_records,
)
from expforge.tune.selection import leaderboard, select_top
from expforge.tune.space import DEFAULT_SEARCH_SPACE, SearchSpace, sample_trials

SPACE = {
    "lr": {"distribution": "log-uniform", "low": 1e-4, "high": 1e-2},
    "width": {"distribution": "choice", "values": [16, 32, 64]},
    "dropout": {"distribution": "uniform", "low": 0, "high": 0.5},
    "depth": {"distribution": "int", "low": 1, "high": 3},
}

# --- search spaces ------------------------------------------------------------------------------------------------


def test_yaml_and_toml_files_declare_the_same_space(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        "lr: {distribution: log-uniform, low: 1.0e-4, high: 1.0e-2}\n"
        "width: {distribution: choice, values: [16, 32, 64]}\n"
        "dropout: {distribution: uniform, low: 0, high: 0.5}\n"
        "depth: {distribution: int, low: 1, high: 3}\n"
    )
    (tmp_path / "space.toml").write_text(
        '[lr]\ndistribution = "log-uniform"\nlow = 1e-4\nhigh = 1e-2\n'
        '[width]\ndistribution = "choice"\nvalues = [16, 32, 64]\n'
        '[dropout]\ndistribution = "uniform"\nlow = 0\nhigh = 0.5\n'
        '[depth]\ndistribution = "int"\nlow = 1\nhigh = 3\n'
    )
    from_yaml = SearchSpace.load(tmp_path / "space.yaml")
    from_toml = SearchSpace.load(tmp_path / "space.toml")
    assert from_yaml.to_dict() == from_toml.to_dict() == SearchSpace.from_dict(SPACE).to_dict()
    assert from_yaml.sample_configurations(5, 7, "x") == from_toml.sample_configurations(5, 7, "x")


def test_samples_respect_each_distribution() -> None:
    space = SearchSpace.from_dict(SPACE)
    configs = space.sample_configurations(400, seed=3)
    lrs = np.array([c["lr"] for c in configs])
    assert all(isinstance(c["depth"], int) and 1 <= c["depth"] <= 3 for c in configs)
    assert {c["depth"] for c in configs} == {1, 2, 3}  # int bounds are inclusive
    assert {c["width"] for c in configs} == {16, 32, 64}
    assert all(0 <= c["dropout"] <= 0.5 and isinstance(c["dropout"], float) for c in configs)
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2
    # log-uniform: about as many draws per decade, so the median sits near the geometric middle (1e-3).
    assert 0.4 < np.mean(lrs < 1e-3) < 0.6
    assert json.loads(json.dumps(configs)) == configs  # plain Python values only


def test_sampling_is_deterministic_per_seed_and_salt_and_prefix_stable() -> None:
    space = SearchSpace.from_dict(SPACE)
    first = space.sample_configurations(6, seed=11, salt="hyperband/bracket-2")
    assert first == space.sample_configurations(6, seed=11, salt="hyperband/bracket-2")
    assert first[:4] == space.sample_configurations(4, seed=11, salt="hyperband/bracket-2")
    assert first != space.sample_configurations(6, seed=11, salt="hyperband/bracket-1")
    assert first != space.sample_configurations(6, seed=12, salt="hyperband/bracket-2")


def test_sampling_survives_a_trip_through_a_pipeline_parameter() -> None:
    """A space passed as a pipeline parameter becomes a protobuf Struct: keys lose their order, ints become
    doubles. It must still draw exactly the configurations the original declaration draws."""
    struct = json_format.ParseDict(DEFAULT_SEARCH_SPACE, struct_pb2.Struct())
    travelled = json_format.MessageToDict(struct)
    travelled = dict(reversed(list(travelled.items())))
    assert travelled["width"]["values"] == [8.0, 16.0, 32.0]
    original = sample_trials(SearchSpace.default(), 9, 0, "hyperband/bracket-2", "b2")
    assert sample_trials(SearchSpace.from_dict(travelled), 9, 0, "hyperband/bracket-2", "b2") == original
    assert [item["trial_id"] for item in original] == [f"b2-c{i:02d}" for i in range(9)]
    assert all(isinstance(item["config"]["width"], int) for item in original)


def test_default_space_file_matches_the_constant_and_the_trainer_config() -> None:
    import importlib.resources

    text = importlib.resources.files("expforge.tune").joinpath("default_space.yaml").read_text(encoding="utf-8")
    import yaml

    assert SearchSpace.from_dict(yaml.safe_load(text)).to_dict() == SearchSpace.default().to_dict()
    torch_trainer = pytest.importorskip("expforge.train.torch_trainer")
    for config in SearchSpace.default().sample_configurations(5, seed=0):
        torch_trainer.TorchTrainConfig.from_dict(config)  # every sampled configuration is a valid trainer config


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"lr": {"distribution": "normal", "low": 0, "high": 1}},
            "space.yaml: lr.distribution: 'normal' is not one of choice, uniform, log-uniform, int",
        ),
        ({"width": {"distribution": "choice", "values": []}}, "space.yaml: width.values: empty"),
        ({"lr": {"distribution": "log-uniform", "low": 0.1, "high": 0.01}}, "space.yaml: lr.low 0.1 ≥ lr.high 0.01"),
        ({"depth": {"distribution": "int", "low": 3, "high": 3}}, "space.yaml: depth.low 3 ≥ depth.high 3"),
        ({"depth": {"distribution": "int", "low": 1.5, "high": 3}}, "space.yaml: depth.low: 1.5 is not an integer"),
        ({"lr": {"distribution": "log-uniform", "low": 0, "high": 1}}, "space.yaml: lr.low: 0 is not positive"),
        ({"lr": {"distribution": "uniform", "low": 0, "hgih": 1}}, "space.yaml: lr: unknown key(s) hgih"),
        ({"lr": {"distribution": "uniform", "low": 0}}, "space.yaml: lr.high: missing"),
        ({"lr": {"distribution": "uniform", "low": "a", "high": 1}}, "space.yaml: lr.low: 'a' is not a finite"),
        ({"lr": 0.1}, "space.yaml: lr: expected a mapping"),
        ({}, "space.yaml: no parameters"),
    ],
)
def test_bad_spaces_are_one_clear_error_each(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ExpforgeError) as caught:
        SearchSpace.load(path)
    text = str(caught.value).replace(str(tmp_path) + "/", "")
    assert text.startswith(message), text
    assert "\n" not in text


def test_bad_space_files(tmp_path: Path) -> None:
    with pytest.raises(ExpforgeError, match="not found"):
        SearchSpace.load(tmp_path / "missing.yaml")
    (tmp_path / "space.json").write_text("{}")
    with pytest.raises(ExpforgeError, match=r"\.yaml, \.yml or \.toml"):
        SearchSpace.load(tmp_path / "space.json")
    (tmp_path / "broken.toml").write_text("[lr\n")
    with pytest.raises(ExpforgeError, match="not valid TOML"):
        SearchSpace.load(tmp_path / "broken.toml")
    (tmp_path / "broken.yaml").write_text("lr: {distribution: [\n")
    with pytest.raises(ExpforgeError, match="not valid YAML"):
        SearchSpace.load(tmp_path / "broken.yaml")


# --- the schedule -------------------------------------------------------------------------------------------------


def test_schedule_matches_the_hyperband_paper() -> None:
    """Li et al. (2018), Table 1: R = 81, η = 3."""
    schedule = hyperband_schedule(81, 3)
    table = {b.s: [(r.configs, r.epochs) for r in b.rungs] for b in schedule.brackets}
    assert [b.s for b in schedule.brackets] == [4, 3, 2, 1, 0]  # most aggressive first
    assert table == {
        4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        3: [(34, 3), (11, 9), (3, 27), (1, 81)],
        2: [(15, 9), (5, 27), (1, 81)],
        1: [(8, 27), (2, 81)],
        0: [(5, 81)],
    }
    for bracket in schedule.brackets:
        assert [r.keep for r in bracket.rungs] == [r.configs for r in bracket.rungs[1:]] + [0]
    assert schedule.configurations == 143 and schedule.trials == 206


def test_epochs_are_integers_monotone_and_end_at_r() -> None:
    for max_resource, eta, min_resource in [(10, 3, 1), (100, 3, 2), (50, 4, 3), (7, 2, 1), (5, 3, 5)]:
        schedule = hyperband_schedule(max_resource, eta, min_resource)
        assert schedule.s_max == int(math.floor(math.log(max_resource / min_resource, eta) + 1e-9))
        for bracket in schedule.brackets:
            epochs = [r.epochs for r in bracket.rungs]
            assert epochs[-1] == max_resource and epochs[0] >= min_resource
            assert all(a < b for a, b in zip(epochs, epochs[1:], strict=False))
            assert all(r.keep >= 1 for r in bracket.rungs[:-1])
    assert [[r.epochs for r in b.rungs] for b in hyperband_schedule(10, 3).brackets] == [[1, 3, 10], [3, 10], [10]]
    assert len(hyperband_schedule(5, 3, 5).brackets) == 1  # R = min: plain random search at R


def test_epoch_budget_with_and_without_warm_start() -> None:
    schedule = hyperband_schedule(9, 3)
    # bracket 2: 9×1 + 3×(3−1) + 1×(9−3); bracket 1: 5×3 + 1×(9−3); bracket 0: 3×9
    assert schedule.total_epochs(warm_start=True) == (9 + 6 + 6) + (15 + 6) + 27 == 69
    assert schedule.total_epochs(warm_start=False) == (9 + 9 + 9) + (15 + 9) + 27 == 78
    assert schedule.to_dict()["total_epochs_without_warm_start"] == 78


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((9, 1, 1), "eta: 1 is below 2; Hyperband needs η ≥ 2"),
        ((3, 3, 5), "max_resource: 3 is smaller than min_resource 5"),
        ((9, 3, 0), "min_resource: 0 is below 1"),
        ((9.5, 3, 1), "max_resource: 9.5 is not an integer"),
        ((9, 2.5, 1), "eta: 2.5 is not an integer"),
        ((9, "3", 1), "eta: '3' is not an integer"),
    ],
)
def test_bad_schedules_are_one_clear_error_each(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ExpforgeError) as caught:
        hyperband_schedule(*args)
    assert str(caught.value).startswith(message)


# --- selection and random search ----------------------------------------------------------------------------------


def _record(trial_id: str, **metrics: float) -> TrialRecord:
    return TrialRecord(TrialItem(trial_id, {}, bracket=1), metrics=dict(metrics))


def test_select_top_is_deterministic_and_ranks_failures_last() -> None:
    trials = [
        _record("b1-c03", val_accuracy=0.8),
        _record("b1-c01", val_accuracy=0.9),
        _record("b1-c00", val_accuracy=float("nan")),
        _record("b1-c02", val_accuracy=0.9),
        _record("b1-c04"),
    ]
    kept = select_top(trials, 3)
    assert [t.trial_id for t in kept] == ["b1-c01", "b1-c02", "b1-c03"]  # tie 0.9 broken by id
    assert [t.trial_id for t in select_top(list(reversed(trials)), 3)] == ["b1-c01", "b1-c02", "b1-c03"]
    assert [t.trial_id for t in select_top(trials, 10)][-2:] == ["b1-c00", "b1-c04"]
    assert select_top(trials, 1, "val_accuracy", maximize=False)[0].trial_id == "b1-c03"
    assert [row["rank"] for row in leaderboard(trials)] == [1, 2, 3, 4, 5]
    with pytest.raises(ExpforgeError, match="duplicate trial_id 'b1-c01'"):
        select_top([*trials, _record("b1-c01", val_accuracy=0.1)], 1)
    with pytest.raises(ExpforgeError, match="keep"):
        select_top(trials, -1)
    assert finite_json({"a": (1.0, float("inf"))}) == {"a": [1.0, None]}


def test_random_search_plan_spends_the_budget_on_full_length_trials() -> None:
    space = SearchSpace.from_dict(SPACE)
    schedule = hyperband_schedule(9, 3)
    assert matched_budget(schedule) == 69 and matched_budget(schedule, 2) == 138
    plan = random_search_plan(space, 69, 9, seed=0)
    assert len(plan) == 7 and plan == random_search_plan(space, 69, 9, seed=0)
    assert len(random_search_plan(space, 138, 9, seed=0)) == 15
    assert random_search_plan(space, 138, 9, seed=0)[:7] == plan
    assert [t["trial_id"] for t in random_search_trials(space, 27, 9, 0)] == ["rs-c00", "rs-c01", "rs-c02"]
    with pytest.raises(ExpforgeError, match="budget_epochs: 5 is smaller than epochs_per_trial 9"):
        random_search_plan(space, 5, 9, seed=0)


# --- trial records and promotion -----------------------------------------------------------------------------


def _full_record(trial_id: str = "b2-c05", **item: Any) -> TrialRecord:
    fields = {"config": {"lr": 0.01, "width": 16}, "bracket": 2, "rung": 1, "epochs": 3, "max_epochs": 9}
    fields.update(item)
    return TrialRecord(
        TrialItem(trial_id, resume_from="/runs/promoted/b2-c05.pt", **fields),
        metrics={"val_accuracy": 0.91, "val_loss": float("nan")},
        history=({"epoch": 1, "val_accuracy": 0.8}, {"epoch": 2, "val_accuracy": 0.9}),
        epochs_trained=2,
        checkpoint="/runs/b2-c05/checkpoint",
        resources=Resources(cpu="2", memory="4G"),
    )


def test_trial_records_round_trip_through_json_and_a_protobuf_struct(tmp_path: Path) -> None:
    record = _full_record()
    data = record.to_json()
    assert data["version"] == 1 and data["metrics"]["val_loss"] is None  # NaN is not JSON
    # a component output parameter travels as a Struct: every number comes back as a double
    struct = json_format.ParseDict(data, struct_pb2.Struct())
    travelled = TrialRecord.from_json(json_format.MessageToDict(struct))
    assert travelled.item == record.item and isinstance(travelled.item.rung, int)
    assert travelled.metric("val_accuracy") == 0.91 and travelled.metric("val_loss") is None
    assert travelled.history == record.history and travelled.resources == record.resources
    write_records(tmp_path / "records.json", [record, _full_record("b2-c06")])
    assert [r.trial_id for r in read_records(tmp_path / "records.json")] == ["b2-c05", "b2-c06"]
    assert record.summary()["val_accuracy"] == 0.91 and record.item.loop_item()["trial_id"] == "b2-c05"


def test_random_search_is_its_own_search_not_a_bracket_number() -> None:
    item = TrialItem.from_loop_item({"trial_id": "rs-c00", "config": {}}, bracket=None, rung=0, epochs=9, max_epochs=9)
    assert item.search == RANDOM_SEARCH and item.bracket is None and item.final
    assert TrialItem.from_json(item.to_json()) == item
    with pytest.raises(ExpforgeError, match="random search has none"):
        TrialItem("rs-c00", {}, search=RANDOM_SEARCH, bracket=-1)
    with pytest.raises(ExpforgeError, match="a hyperband trial needs a bracket"):
        TrialItem("b1-c00", {}, search="hyperband", bracket=None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "records.json[1]: version: 2 is not a trial-record version"),
        (lambda d: d.pop("version"), "records.json[1]: version: missing"),
        (lambda d: d["item"].pop("epochs"), "records.json[1]: item.epochs: missing"),
        (lambda d: d["item"].update(search="grid"), "records.json[1]: item.search: 'grid' is not one of"),
        (lambda d: d["item"].update(rung="one"), "records.json[1]: item.rung: 'one' is not an integer"),
        (lambda d: d.pop("metrics"), "records.json[1]: metrics: missing"),
        (lambda d: d["metrics"].update(val_accuracy="high"), "records.json[1]: metrics.val_accuracy: 'high' is not"),
        (lambda d: d["resources"].pop("accelerator_count"), "records.json[1]: resources.accelerator_count: missing"),
    ],
)
def test_a_bad_trial_record_is_one_error_naming_file_and_field(tmp_path: Path, change: Any, message: str) -> None:
    records = [_full_record("b2-c05").to_json(), _full_record("b2-c06").to_json()]
    change(records[1])
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    with pytest.raises(ExpforgeError) as caught:
        read_records(path)
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_promote_pairs_checkpoints_by_uri_keeps_the_best_and_weighs_the_incumbent(tmp_path: Path) -> None:
    accuracies = {"b1-c00": 0.5, "b1-c01": 0.9, "b1-c02": 0.7}
    records = [
        TrialRecord(TrialItem(t, {"n": i}, bracket=1), metrics={"val_accuracy": a}, checkpoint=f"uri://{t}")
        for i, (t, a) in enumerate(accuracies.items())
    ]
    # listed in another order than the records, one paired by its trial id label alone
    checkpoints = [
        Checkpoint("uri://b1-c02", tmp_path / "c02"),
        Checkpoint("elsewhere", tmp_path / "c00", trial_id="b1-c00"),
        Checkpoint("uri://b1-c01", tmp_path / "c01"),
    ]
    cut = promote(records, checkpoints, 2)
    assert [r.trial_id for r in cut.kept] == ["b1-c01", "b1-c02"] and cut.best.trial_id == "b1-c01"
    assert cut.kept_checkpoints() == {"b1-c01": tmp_path / "c01", "b1-c02": tmp_path / "c02"}
    assert cut.survivors() == [{"trial_id": "b1-c01", "config": {"n": 1}}, {"trial_id": "b1-c02", "config": {"n": 2}}]
    better = TrialRecord(TrialItem("b2-c07", {}, bracket=2), metrics={"val_accuracy": 0.95})
    with_incumbent = promote(records, checkpoints, 1, Incumbent(better, tmp_path / "inc"))
    assert with_incumbent.best is better and with_incumbent.best_checkpoint == tmp_path / "inc"
    assert [r.trial_id for r in with_incumbent.kept] == ["b1-c01"]  # the incumbent is never promoted
    worse = TrialRecord(TrialItem("b0-c00", {}, bracket=0), metrics={"val_accuracy": 0.1})
    assert promote(records, checkpoints, 1, Incumbent(worse, tmp_path / "inc")).best.trial_id == "b1-c01"
    with pytest.raises(ExpforgeError, match="no collected checkpoint for trial 'b1-c01'"):
        promote(records, checkpoints[:2], 1)


# --- the in-process driver ----------------------------------------------------------------------------------------


class FakeTrainer:
    """A deterministic stand-in for training: accuracy rises with epochs towards a ceiling set by the config.

    Checkpoints are JSON files holding the config and the epochs reached, so warm starts can be checked.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @staticmethod
    def ceiling(config: dict[str, Any]) -> float:
        return 0.99 - 0.1 * abs(math.log10(config["lr"]) + 3) - 0.1 * config["dropout"]

    def __call__(self, config: dict[str, Any], epochs: int, resume_from: Path | None, out: Path) -> dict[str, Any]:
        start = 0
        if resume_from is not None:
            saved = json.loads(resume_from.read_text())
            assert saved["config"] == config
            start = saved["epochs"]
            assert start < epochs
        accuracy = [self.ceiling(config) * (1 - 0.5 ** (e + 1)) for e in range(epochs)]
        out.write_text(json.dumps({"config": config, "epochs": epochs}))
        self.calls.append({"config": config, "epochs": epochs, "resume_from": resume_from, "start": start})
        history = [{"epoch": e + 1, "val_accuracy": a} for e, a in enumerate(accuracy)]
        return {"val_accuracy": accuracy[-1], "val_loss": 1 - accuracy[-1], "history": history}


def test_hyperband_driver_warm_starts_promoted_trials_and_counts_epochs(tmp_path: Path) -> None:
    schedule = hyperband_schedule(9, 3)
    space = SearchSpace.from_dict(SPACE)
    trainer = FakeTrainer()
    result = run_hyperband(schedule, space, 5, trainer, workdir=tmp_path)

    assert len(trainer.calls) == len(result.trials) == schedule.trials == 22
    assert result.total_epochs == schedule.total_epochs(warm_start=True) == 69
    assert sum(call["epochs"] - call["start"] for call in trainer.calls) == 69
    by_key = {(t.item.bracket, t.item.rung, t.trial_id): t for t in result.trials}
    for record in result.trials:
        assert record.item.search == "hyperband" and record.item.bracket is not None
        bracket = schedule.bracket(record.item.bracket)
        rung = bracket.rungs[record.item.rung]
        assert record.item.epochs == rung.epochs
        if record.item.rung == 0:
            assert record.item.resume_from is None and record.epochs_trained == rung.epochs
        else:
            # resumed from this very trial's checkpoint of the previous rung, which it survived
            earlier = by_key[(record.item.bracket, record.item.rung - 1, record.trial_id)]
            assert record.item.resume_from == earlier.checkpoint
            assert record.epochs_trained == rung.epochs - earlier.item.epochs
            rung_before = [
                t
                for t in result.trials
                if t.item.bracket == record.item.bracket and t.item.rung == record.item.rung - 1
            ]
            kept = {t.trial_id for t in select_top(rung_before, bracket.rungs[record.item.rung - 1].keep)}
            assert record.trial_id in kept
    # the bracket's first-rung configurations are the ones the pipeline's sample-configs would draw
    assert [t.item.config for t in result.trials if t.item.bracket == 2 and t.item.rung == 0] == [
        item["config"] for item in sample_trials(space, 9, 5, "hyperband/bracket-2", "b2")
    ]
    cumulative = [point[0] for point in result.timeline]
    best = [point[1] for point in result.timeline]
    assert cumulative == sorted(cumulative) and cumulative[-1] == 69
    assert best == list(np.maximum.accumulate(best))
    assert best[-1] == max(t.metric("val_accuracy") or 0.0 for t in result.trials)
    finals = [t for t in result.trials if t.item.final]
    assert result.best == select_top(finals, 1)[0] and result.best.item.epochs == 9
    threshold = best[len(best) // 2]
    assert result.epochs_to_reach(threshold) == cumulative[best.index(threshold)]
    assert result.epochs_to_reach(2.0) is None
    json.dumps(result.to_dict())

    cold = run_hyperband(schedule, space, 5, FakeTrainer(), workdir=tmp_path / "cold", warm_start=False)
    assert cold.total_epochs == schedule.total_epochs(warm_start=False) == 78
    assert all(t.item.resume_from is None for t in cold.trials)
    assert [t.trial_id for t in cold.trials] == [t.trial_id for t in result.trials]


def test_random_search_driver(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(SPACE)
    trainer = FakeTrainer()
    result = run_random_search(space, 69, 9, 5, trainer, workdir=tmp_path)
    assert len(result.trials) == 7 and result.total_epochs == 63
    assert all(call["epochs"] == 9 and call["resume_from"] is None for call in trainer.calls)
    assert [t.item.config for t in result.trials] == random_search_plan(space, 69, 9, 5)
    assert all(t.item.search == "random-search" and t.item.bracket is None and t.item.final for t in result.trials)
    assert result.best == select_top(result.trials, 1)[0]
    assert result.timeline[-1] == (63, result.best.metric("val_accuracy"))


def test_random_search_driver_can_skip_the_trials_a_smaller_run_already_trained(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(SPACE)
    whole = run_random_search(space, 63, 9, 5, FakeTrainer(), workdir=tmp_path / "whole")
    trainer = FakeTrainer()
    rest = run_random_search(space, 63, 9, 5, trainer, workdir=tmp_path / "rest", first=3)
    assert len(trainer.calls) == 4 and rest.total_epochs == 36
    assert [t.item.trial_id for t in rest.trials] == [t.item.trial_id for t in whole.trials[3:]]
    assert [t.metrics for t in rest.trials] == [t.metrics for t in whole.trials[3:]]
    for first, expected in ((7, "skips every one of the plan's 7 trials"), (-1, "is negative or not an integer")):
        with pytest.raises(ExpforgeError, match=expected):
            run_random_search(space, 63, 9, 5, FakeTrainer(), workdir=tmp_path / "bad", first=first)


def test_driver_rejects_a_train_fn_without_the_metric(tmp_path: Path) -> None:
    with pytest.raises(ExpforgeError, match="returned no numeric 'val_accuracy'"):
        run_random_search(SearchSpace.from_dict(SPACE), 9, 9, 0, lambda *_: {"loss": 1.0}, workdir=tmp_path)


# --- CLI ----------------------------------------------------------------------------------------------------------


def test_cli_hpo_schedule_and_sample_configs(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["hpo-schedule", "--max-epochs", "9", "--eta", "3"])
    assert shown.exit_code == 0, shown.output
    assert "3 bracket(s), 17 configurations, 22 trials" in shown.output
    assert "epoch budget: 69 with warm start (78 if promoted trials restarted from scratch)" in shown.output
    as_json = runner.invoke(app, ["hpo-schedule", "--max-epochs", "81", "--json"])
    assert json.loads(as_json.output)["brackets"][0]["rungs"][0] == {"rung": 0, "configs": 81, "epochs": 1, "keep": 27}

    bad = runner.invoke(app, ["hpo-schedule", "--max-epochs", "9", "--eta", "1"])
    assert bad.exit_code == 2
    assert "expforge: error: --eta: 1 is below 2; Hyperband needs η ≥ 2" in bad.output
    small = runner.invoke(app, ["hpo-schedule", "--max-epochs", "2", "--min-epochs", "3"])
    assert small.exit_code == 2 and "--max-epochs: 2 is smaller than --min-epochs 3" in small.output

    space = tmp_path / "space.yaml"
    space.write_text(
        "lr: {distribution: log-uniform, low: 1.0e-4, high: 1.0e-2}\nwidth: {distribution: int, low: 8, high: 64}\n"
    )
    sampled = runner.invoke(app, ["sample-configs", "--space", str(space), "--count", "3", "--seed", "4"])
    assert sampled.exit_code == 0, sampled.output
    assert json.loads(sampled.output) == sample_trials(SearchSpace.load(space), 3, 4, "", "")
    default = runner.invoke(app, ["sample-configs", "--count", "2"])
    assert [item["trial_id"] for item in json.loads(default.output)] == ["c00", "c01"]
    space.write_text("lr: {distribution: log-uniform, low: 0.1, high: 0.01}\n")
    broken = runner.invoke(app, ["sample-configs", "--space", str(space), "--count", "3"])
    assert broken.exit_code == 2 and f"expforge: error: {space}: lr.low 0.1 ≥ lr.high 0.01" in broken.output
