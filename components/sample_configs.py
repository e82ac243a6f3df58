"""sample-configs: draw a bracket's (or random search's) configurations from a search space, deterministically."""

from expforge.components._adapter import step_component


@step_component("sample-configs")
def sample_configs(
    search_space: dict,
    count: int,
    seed: int = 0,
    salt: str = "",
    id_prefix: str = "",
) -> list:
    """``count`` loop items ``{"trial_id": "<id_prefix>-cNN", "config": {...}}`` from ``search_space``.

    The same ``(seed, salt)`` gives the same configurations anywhere; each bracket uses its own salt so brackets
    draw independent configurations.
    """
    from expforge.errors import ExpforgeError
    from expforge.tune.space import SearchSpace, sample_trials

    if count < 1:
        raise ExpforgeError(f"count: {count} is below 1; a rung needs at least one configuration")
    space = SearchSpace.from_dict(search_space, source="search_space")
    return sample_trials(space, count, seed, salt, id_prefix)
