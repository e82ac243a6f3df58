"""propose-configs: BOHB's sampler — a bracket's configurations from Optuna's TPE fitted on earlier brackets'
trial records, a share of them still random. (A step of its own rather than an input of ``sample-configs``, so
the Hyperband and random-search pipelines compile exactly as before.)"""

from expforge.components._adapter import step_component


@step_component("propose-configs")
def propose_configs(
    search_space: dict,
    count: int,
    records: list,
    seed: int = 0,
    salt: str = "",
    id_prefix: str = "",
    random_fraction: float = 1.0 / 3.0,
) -> list:
    """``count`` loop items ``{"trial_id": "<id_prefix>-cNN", "config": {...}}`` like ``sample-configs``; the
    model is fitted on ``records`` (collected trial records of earlier brackets, from this search space)."""
    from expforge.errors import ExpforgeError
    from expforge.tune.bohb import propose_trials
    from expforge.tune.records import records_from_json
    from expforge.tune.space import SearchSpace

    if count < 1:
        raise ExpforgeError(f"count: {count} is below 1; a rung needs at least one configuration")
    space = SearchSpace.from_dict(search_space, source="search_space")
    history = records_from_json(records, source="records")
    return propose_trials(
        space, history, count, seed, salt, id_prefix, random_fraction=random_fraction, source="records"
    )
