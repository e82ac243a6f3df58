"""CLI commands of ``expforge.tune``: look at a Hyperband schedule, sample configurations from a space.

``expforge hpo-schedule --max-epochs 27 --eta 3`` prints the bracket table and epoch budget (``--json`` for
machines); ``expforge sample-configs --space space.yaml --count 8 --seed 0`` prints configurations as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

#: Upper bounds of the numeric flags: a schedule or a sample beyond them is a typo, and would run for ever.
MAX_EPOCHS = 100_000
MAX_ETA = 1_000
MAX_COUNT = 100_000
MAX_SEED = 2**63 - 1


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Declare this area's commands on the ``expforge`` app."""
    del app  # plain commands only

    @command("hpo-schedule")
    def hpo_schedule(
        max_epochs: int = typer.Option(..., "--max-epochs", help="R: most epochs one configuration may train."),
        eta: int = typer.Option(3, "--eta", help="Reduction factor η ≥ 2: keep the best 1/η after each rung."),
        min_epochs: int = typer.Option(1, "--min-epochs", help="Fewest epochs worth evaluating (first rung)."),
        as_json: bool = typer.Option(False, "--json", help="Print the schedule as JSON."),
    ) -> None:
        """Print the Hyperband brackets (configs and epochs per rung) and the epoch budget."""
        from expforge.errors import ExpforgeError
        from expforge.tune.hyperband import hyperband_schedule, validate_schedule_inputs

        if max_epochs > MAX_EPOCHS:
            raise ExpforgeError(f"--max-epochs: {max_epochs} is more than {MAX_EPOCHS:,}")
        if eta > MAX_ETA:
            raise ExpforgeError(f"--eta: {eta} is more than {MAX_ETA:,}")
        validate_schedule_inputs(max_epochs, eta, min_epochs, names=("--max-epochs", "--eta", "--min-epochs"))
        schedule = hyperband_schedule(max_epochs, eta, min_epochs)
        typer.echo(json.dumps(schedule.to_dict(), indent=2) if as_json else schedule.table())

    @command("sample-configs")
    def sample_configs(
        space: Path | None = typer.Option(
            None, "--space", help="Search space (.yaml/.yml/.toml); default: the digit CNN's space."
        ),
        count: int = typer.Option(..., "--count", help="Number of configurations."),
        seed: int = typer.Option(0, "--seed", help="Same seed (and salt), same configurations."),
        salt: str = typer.Option("", "--salt", help="Independent stream name (e.g. hyperband/bracket-2)."),
        id_prefix: str = typer.Option("", "--id-prefix", help="Prefix of the trial ids (e.g. b2)."),
    ) -> None:
        """Sample configurations deterministically and print them as JSON trial items."""
        from expforge.errors import ExpforgeError
        from expforge.tune.space import SearchSpace, sample_trials

        if count < 0:
            raise ExpforgeError(f"--count: {count} is negative")
        if count > MAX_COUNT:
            raise ExpforgeError(f"--count: {count} is more than {MAX_COUNT:,} configurations")
        if seed < 0:
            raise ExpforgeError(f"--seed: {seed} is negative")
        if seed > MAX_SEED:
            raise ExpforgeError(f"--seed: {seed} is more than {MAX_SEED}")
        search_space = SearchSpace.load(space) if space is not None else SearchSpace.default()
        typer.echo(json.dumps(sample_trials(search_space, count, seed, salt, id_prefix), indent=2))
