"""BOHB's model-based proposals: a bracket's configurations drawn from a TPE fitted on earlier brackets' trials.

BOHB (Falkner et al., 2018) keeps Hyperband's brackets and replaces their random draws by a density model
fitted on what earlier trials reported. The model here is Optuna's ``TPESampler`` (a kept library; no density
estimator is written here): the earlier trial records become completed Optuna trials, and each proposal is one
``ask`` on that study. As in BOHB,

* the model is fitted on the records of the **largest budget** (epochs) that has at least ``d + 1``
  observations (``d`` = number of parameters), else on the budget with the most observations;
* a share ``random_fraction`` (BOHB's ρ, default 1/3) of the proposals stays uniformly random, so the search
  keeps exploring however confident the model is; with fewer than ``MIN_OBSERVATIONS`` records every draw is
  random (that is Hyperband).

Proposals are deterministic in ``(seed, salt)`` and the records, like :meth:`SearchSpace.sample_configurations`.
A record whose configuration does not fit the space (another parameter set, a value outside a range or the
choices) is refused with a one-line error: a model fitted on another search space would propose nonsense.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from expforge.errors import ExpforgeError
from expforge.tune.records import TrialRecord
from expforge.tune.space import Parameter, SearchSpace, _salt_words, trial_id

RANDOM_FRACTION = 1.0 / 3.0
MIN_OBSERVATIONS = 3
#: Candidates TPE scores per proposal (Optuna's default is 24; BOHB samples 64).
CANDIDATES = 64


def distributions(space: SearchSpace) -> dict[str, Any]:
    """The space as Optuna distributions (name → distribution), for ``study.ask``."""
    return {parameter.name: _distribution(parameter) for parameter in space.parameters}


def _distribution(parameter: Parameter) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if parameter.distribution == "choice":
        return CategoricalDistribution(list(parameter.values))
    if parameter.distribution == "int":
        return IntDistribution(int(parameter.low), int(parameter.high))  # type: ignore[arg-type]
    log = parameter.distribution == "log-uniform"
    return FloatDistribution(float(parameter.low), float(parameter.high), log=log)  # type: ignore[arg-type]


def check_record_fits(space: SearchSpace, record: TrialRecord, where: str) -> None:
    """One line naming the record and the parameter when ``record``'s configuration is not from ``space``."""
    config = record.item.config
    names = set(space.names)
    if set(config) != names:
        extra, missing = sorted(set(config) - names), sorted(names - set(config))
        detail = "; ".join(
            part
            for part in (
                f"parameter(s) {', '.join(extra)} not in the space" if extra else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise ExpforgeError(f"{where} (trial {record.trial_id}): a record from another search space ({detail})")
    for parameter in space.parameters:
        value = config[parameter.name]
        if parameter.distribution == "choice":
            fits = value in parameter.values
        else:
            number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
            fits = float(parameter.low) <= number <= float(parameter.high)  # type: ignore[arg-type]
        if not fits:
            raise ExpforgeError(
                f"{where}.item.config.{parameter.name} (trial {record.trial_id}): {value!r} is outside the "
                f"search space ({parameter.to_dict()}); a record from another search space"
            )


def model_budget(records: Sequence[TrialRecord], dimensions: int) -> int | None:
    """The epochs whose records the model is fitted on (see the module docstring); ``None`` without records."""
    counts = Counter(record.item.epochs for record in records)
    if not counts:
        return None
    enough = [epochs for epochs, count in counts.items() if count >= dimensions + 1]
    if enough:
        return max(enough)
    return max(counts, key=lambda epochs: (counts[epochs], epochs))


def propose_configurations(
    space: SearchSpace,
    records: Sequence[TrialRecord],
    count: int,
    seed: int,
    salt: str = "",
    *,
    metric: str = "val_accuracy",
    random_fraction: float = RANDOM_FRACTION,
    source: str = "records",
) -> tuple[list[dict[str, Any]], list[bool]]:
    """``count`` configurations and, for each, whether it came from the model (``False``: a random draw)."""
    import optuna

    if not 0.0 <= random_fraction <= 1.0:
        raise ExpforgeError(f"random_fraction: {random_fraction} is not a share in [0, 1]")
    for index, record in enumerate(records):
        check_record_fits(space, record, f"{source}[{index}]")
    budget = model_budget(records, len(space.parameters))
    fitted = [r for r in records if r.item.epochs == budget]
    scores = [r.metric(metric) for r in fitted]
    finite = [s for s in scores if s is not None]
    use_model = len(fitted) >= MIN_OBSERVATIONS and len(set(finite)) >= 2
    rng = np.random.default_rng(np.random.SeedSequence([seed, *_salt_words(salt), 0xB0B]))
    from_model = [use_model and bool(rng.random() >= random_fraction) for _ in range(count)]
    randoms = space.sample_configurations(count, seed, salt)
    if not any(from_model):
        return randoms, from_model

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    declared = distributions(space)
    sampler_seed = int(rng.integers(2**31))
    sampler = optuna.samplers.TPESampler(
        seed=sampler_seed,
        n_startup_trials=0,
        n_ei_candidates=CANDIDATES,
        multivariate=True,
        **_quiet_independent_sampling(optuna.__version__),
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    worst = min(finite)  # a diverged trial (no finite metric) counts as the worst one seen
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={p.name: _as_declared(p, record.item.config[p.name]) for p in space.parameters},
                distributions=declared,
                value=worst if score is None else score,
            )
            for record, score in zip(fitted, scores, strict=True)
        ]
    )
    proposals: list[dict[str, Any]] = []
    for index, modelled in enumerate(from_model):
        if not modelled:
            proposals.append(randoms[index])
            continue
        trial = study.ask(declared)
        proposals.append({name: _plain(trial.params[name]) for name in space.names})
    return proposals, from_model


def _quiet_independent_sampling(version: str) -> dict[str, Any]:
    """The keyword that keeps TPE from warning at every independent fallback, where one is needed: before Optuna
    4.9 it warns unless ``warn_independent_sampling=False``; 4.9 deprecated the flag (with a ``FutureWarning`` in
    every step's log) and made not warning the default."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return {} if (major, minor) >= (4, 9) else {"warn_independent_sampling": False}


def _as_declared(parameter: Parameter, value: Any) -> Any:
    """A recorded value as the space declares it (a pipeline's protobuf Struct turns the choice 16 into 16.0)."""
    if parameter.distribution == "choice":
        return next(choice for choice in parameter.values if choice == value)
    return int(value) if parameter.distribution == "int" else float(value)


def propose_trials(
    space: SearchSpace,
    records: Sequence[TrialRecord],
    count: int,
    seed: int,
    salt: str,
    id_prefix: str,
    *,
    random_fraction: float = RANDOM_FRACTION,
    source: str = "records",
) -> list[dict[str, Any]]:
    """Loop items like :func:`expforge.tune.space.sample_trials`, the configurations from
    :func:`propose_configurations`."""
    configs, _ = propose_configurations(
        space, records, count, seed, salt, random_fraction=random_fraction, source=source
    )
    return [{"trial_id": trial_id(id_prefix, i, count), "config": config} for i, config in enumerate(configs)]


def _plain(value: Any) -> Any:
    """JSON/TOML-safe Python values (no NumPy scalars), like :meth:`Parameter.sample`."""
    if isinstance(value, np.generic):
        return value.item()
    return value
