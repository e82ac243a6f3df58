"""BOHB's proposals: Optuna's TPE fitted on earlier trial records, on a synthetic objective (no training)."""

from __future__ import annotations

import math
import warnings

import pytest

from expforge.errors import ExpforgeError
from expforge.tune.bohb import (
    RANDOM_FRACTION,
    _quiet_independent_sampling,
    model_budget,
    propose_configurations,
    propose_trials,
)
from expforge.tune.records import TrialItem, TrialRecord
from expforge.tune.space import SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "lr": {"distribution": "log-uniform", "low": 1e-4, "high": 1e-1},
        "width": {"distribution": "choice", "values": [8, 16, 32]},
        "dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5},
    }
)
GOOD_LR = 3e-3  # the objective's optimum: lr near 3e-3, width 32, little dropout


def objective(config: dict) -> float:
    """A smooth score in (0, 1] peaking at the known-good region."""
    distance = abs(math.log10(config["lr"]) - math.log10(GOOD_LR))
    return math.exp(-(distance**2)) * (1.0 if config["width"] == 32 else 0.7) * (1.0 - config["dropout"])


def good(config: dict) -> bool:
    return abs(math.log10(config["lr"]) - math.log10(GOOD_LR)) < 0.5 and config["width"] == 32


def record(index: int, config: dict, epochs: int = 3, score: float | None = None) -> TrialRecord:
    item = TrialItem(f"b1-c{index:02d}", config, bracket=1, rung=0, epochs=epochs, max_epochs=9)
    return TrialRecord(item, {"val_accuracy": objective(config) if score is None else score})


def test_proposals_concentrate_on_the_good_region_and_keep_exploring() -> None:
    records = [record(i, c) for i, c in enumerate(SPACE.sample_configurations(20, seed=1, salt="seen"))]
    proposals, modelled = propose_configurations(SPACE, records, 60, seed=0, salt="bracket-0")
    randoms = SPACE.sample_configurations(60, seed=0, salt="bracket-0")
    from_model = [c for c, m in zip(proposals, modelled, strict=True) if m]
    explored = [c for c, m in zip(proposals, modelled, strict=True) if not m]
    share_random = len(explored) / len(proposals)
    assert 0.15 <= share_random <= 0.5, f"about {RANDOM_FRACTION:.2f} of the draws stay random, got {share_random}"
    model_good = sum(map(good, from_model)) / len(from_model)
    random_good = sum(map(good, randoms)) / len(randoms)
    assert model_good >= 2 * random_good and model_good >= 0.2, (model_good, random_good)
    assert sum(map(objective, from_model)) / len(from_model) > sum(map(objective, randoms)) / len(randoms)
    # Every proposal is inside the space, and the random ones are exactly the plain sampler's draws.
    for config in proposals:
        assert 1e-4 <= config["lr"] <= 1e-1 and config["width"] in (8, 16, 32) and 0 <= config["dropout"] <= 0.5
    assert all(c == randoms[i] for i, (c, m) in enumerate(zip(proposals, modelled, strict=True)) if not m)


def test_proposals_are_deterministic_and_random_without_records() -> None:
    records = [record(i, c) for i, c in enumerate(SPACE.sample_configurations(8, seed=2))]
    first = propose_trials(SPACE, records, 5, seed=3, salt="b", id_prefix="b0")
    assert first == propose_trials(SPACE, records, 5, seed=3, salt="b", id_prefix="b0")
    assert [t["trial_id"] for t in first] == [f"b0-c{i:02d}" for i in range(5)]
    plain, modelled = propose_configurations(SPACE, [], 5, seed=3, salt="b")
    assert plain == SPACE.sample_configurations(5, seed=3, salt="b") and not any(modelled)


def test_the_model_fits_the_largest_budget_with_enough_records() -> None:
    low = [record(i, c, epochs=1) for i, c in enumerate(SPACE.sample_configurations(9, seed=4))]
    high = [record(20 + i, c, epochs=9) for i, c in enumerate(SPACE.sample_configurations(4, seed=5))]
    assert model_budget(low + high, dimensions=3) == 9  # d + 1 = 4 records at 9 epochs: the largest budget
    assert model_budget(low + high[:3], dimensions=3) == 1  # too few at 9: the budget with the most records
    assert model_budget([], dimensions=3) is None


def test_a_record_from_another_search_space_is_one_clear_error() -> None:
    foreign = record(0, {"lr": 1e-3, "width": 32, "dropout": 0.1})
    other = TrialRecord(TrialItem("b1-c09", {"lr": 1e-3, "depth": 2}, bracket=1, epochs=3, max_epochs=9), {})
    with pytest.raises(ExpforgeError, match=r"records\[1\] \(trial b1-c09\): a record from another search space"):
        propose_configurations(SPACE, [foreign, other], 3, seed=0)
    outside = record(1, {"lr": 1e-3, "width": 64, "dropout": 0.1}, score=0.5)
    with pytest.raises(ExpforgeError, match=r"records\[0\]\.item\.config\.width .*another search space"):
        propose_configurations(SPACE, [outside], 3, seed=0)


def test_no_optuna_deprecation_warning_in_a_step_log() -> None:
    records = [record(i, c) for i, c in enumerate(SPACE.sample_configurations(20, seed=1, salt="seen"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, modelled = propose_configurations(SPACE, records, 12, seed=0, salt="bracket-0")
    assert any(modelled)  # the TPE sampler was built and asked
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert _quiet_independent_sampling("4.8.1") == {"warn_independent_sampling": False}
    assert _quiet_independent_sampling("4.9.0") == {} == _quiet_independent_sampling("5.0.0")
