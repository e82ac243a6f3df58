"""Random search: the baseline Hyperband is measured against.

Same search space, every configuration trained for the full ``R`` epochs, as many configurations as an epoch
budget allows. The benchmark gives it the budget Hyperband actually spent (:func:`matched_budget`) and twice
that, so "Hyperband finds as good a model for fewer epochs" is a measured claim, not an assumption.
"""

from __future__ import annotations

from typing import Any

from expforge.errors import ExpforgeError
from expforge.tune.hyperband import HyperbandSchedule
from expforge.tune.space import RANDOM_SEARCH_PREFIX, RANDOM_SEARCH_SALT, SearchSpace, trial_id


def random_search_size(budget_epochs: int, epochs_per_trial: int) -> int:
    """How many full-length trials fit in the budget (``budget // R``); at least one must."""
    for name, value in (("budget_epochs", budget_epochs), ("epochs_per_trial", epochs_per_trial)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExpforgeError(f"{name}: {value!r} is not a positive integer")
    if budget_epochs < epochs_per_trial:
        raise ExpforgeError(
            f"budget_epochs: {budget_epochs} is smaller than epochs_per_trial {epochs_per_trial}; "
            "random search needs room for at least one trial"
        )
    return budget_epochs // epochs_per_trial


def random_search_plan(
    space: SearchSpace, budget_epochs: int, epochs_per_trial: int, seed: int
) -> list[dict[str, Any]]:
    """The configurations random search trains (``budget_epochs // epochs_per_trial`` of them)."""
    count = random_search_size(budget_epochs, epochs_per_trial)
    return space.sample_configurations(count, seed, RANDOM_SEARCH_SALT)


def random_search_trials(
    space: SearchSpace, budget_epochs: int, epochs_per_trial: int, seed: int
) -> list[dict[str, Any]]:
    """The plan as loop items ``{"trial_id": "rs-c03", "config": {...}}`` (what ``sample-configs`` returns)."""
    configs = random_search_plan(space, budget_epochs, epochs_per_trial, seed)
    return [
        {"trial_id": trial_id(RANDOM_SEARCH_PREFIX, i, len(configs)), "config": config}
        for i, config in enumerate(configs)
    ]


def matched_budget(schedule: HyperbandSchedule, multiple: float = 1.0, *, warm_start: bool = True) -> int:
    """An epoch budget of ``multiple`` × what the Hyperband schedule trains (1× and 2× for the benchmark)."""
    if not multiple > 0:
        raise ExpforgeError(f"multiple: {multiple!r} is not positive")
    return int(schedule.total_epochs(warm_start=warm_start) * multiple)
