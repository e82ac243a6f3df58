"""The search comparison of `make bench-hpo`: five searches, the same trainer, the same budget, many seeds.

For one seed, :func:`run_search` runs each of these on one trial function (font digits → the real val split):

* ``random_1x`` / ``random_2x`` — random search at 1× and 2× Hyperband's epoch budget (1× is the first trials of
  the 2× run: sampling is prefix-consistent and each trial trains alone, which is checked, not assumed);
* ``hyperband`` — the schedule with warm-started promotions (``expforge.tune.driver.run_hyperband``);
* ``bohb`` — the same schedule, later brackets proposed by TPE on earlier brackets' records;
* ``optuna`` — Optuna's own ``TPESampler`` + ``HyperbandPruner`` at the same epoch budget, in process.

Every search is summarised the same way (:func:`summarise`): (a) epochs until some trial first reached random
search's best val accuracy (1× — the equal-budget run — and 2×), (b) the best val accuracy at equal budget
(Hyperband's), (c) the real-test accuracy of the model it selects (its best trial trained the full ``R`` epochs),
(d) its wall seconds. :func:`aggregate` turns the seeds into median and interquartile range per search.

The unit of work is one search of one seed (:func:`run_search`); :func:`run_seeds` runs them in ``workers``
processes, each pinned to its own core with one torch thread, so every search is timed under the same conditions
and a 2-core machine runs two at once. Each search's record is kept as it finishes (``seeds-<key>/seed-<k>/``):
a stopped run loses only what was in flight, and a search added later trains alone (:func:`combine_seed`);
``random_2x`` added to a kept ``random_1x`` trains only the trials after it (:func:`extend_record`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file

METHODS = ("random_1x", "random_2x", "hyperband", "bohb", "optuna")
Timeline = list[tuple[int, float]]


def log(message: str) -> None:
    print(f"[bench-hpo] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class SearchRun:
    """What one search did: epochs, the best-so-far timeline, the model it selects, its trials and wall time."""

    total_epochs: int
    timeline: Timeline
    selected: dict[str, Any] | None  # {"trial_id", "val_accuracy", "config", "checkpoint"}
    trials: list[dict[str, Any]]
    wall_seconds: float
    checkpoints: dict[str, str] = dataclasses.field(default_factory=dict)  # trial id → its last checkpoint


def make_train_fn(
    fonts: Path, real: Path, *, seed: int, horizon: int, fraction: float, device: str, seconds: dict[str, float]
) -> Callable[[dict[str, Any], int, Path | None, Path], Mapping[str, Any]]:
    """The trial function every search shares: fonts (a stratified ``fraction``) → real val, LR horizon ``R``."""
    from expforge.train.torch_trainer import TorchTrainConfig, train_torch

    def train_fn(config: dict[str, Any], epochs: int, resume_from: Path | None, checkpoint_out: Path) -> dict[str, Any]:
        started = time.perf_counter()
        result = train_torch(
            [fonts],
            real,
            checkpoint_out,
            config=TorchTrainConfig.from_dict({**config, "seed": seed, "schedule_epochs": horizon}),
            epochs=epochs,
            train_fractions=[fraction],
            curriculum="mixed",
            resume_from=resume_from,
            device=device,
        )
        seconds[str(checkpoint_out)] = time.perf_counter() - started
        return {
            "val_accuracy": result.final["val_accuracy"],
            "val_loss": result.final["val_loss"],
            "history": [dataclasses.asdict(h) for h in result.history],
        }

    return train_fn


def run_optuna_hyperband(
    space: Any, schedule: Any, seed: int, train_fn: Callable[..., Mapping[str, Any]], *, workdir: Path, budget: int
) -> SearchRun:
    """Optuna's own answer at the same epoch budget: ``TPESampler`` + ``HyperbandPruner`` (same R, η), each trial
    trained one epoch at a time (resuming its checkpoint) and pruned when the pruner says so. It selects its best
    trial that trained all ``R`` epochs, as the other searches do.

    Its timeline has one point per trial, at the trial's end, with the value it ended on (pruned or complete), as
    every other search's timeline has: the pruner reads every epoch, but counting each epoch's val reading as
    found would take the maximum over five times as many noisy readings as Hyperband's rung ends, and of models
    that are deleted as soon as the next epoch is written."""
    import optuna

    from expforge.tune.bohb import distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    declared = distributions(space)
    study = optuna.create_study(
        # HyperbandPruner puts a trial in a bracket by hashing the study's name with the trial number: without a
        # name of its own the study gets a random one, and which trials are pruned changes from run to run.
        study_name=f"bench-hpo-optuna-seed-{seed}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=schedule.max_resource, reduction_factor=schedule.eta
        ),
    )
    started = time.perf_counter()
    spent, best = 0, -math.inf
    timeline: Timeline = []
    trials: list[dict[str, Any]] = []
    selected: dict[str, Any] | None = None
    while spent < budget:
        trial = study.ask(declared)
        trial_started = time.perf_counter()
        previous: Path | None = None
        value, pruned, epoch = -math.inf, False, 0
        for epoch in range(1, schedule.max_resource + 1):
            out = workdir / f"trial-{trial.number:03d}" / f"epoch-{epoch}.pt"
            out.parent.mkdir(parents=True, exist_ok=True)
            value = float(train_fn(dict(trial.params), epoch, previous, out)["val_accuracy"])
            if previous is not None:
                previous.unlink(missing_ok=True)
            previous, spent = out, spent + 1
            trial.report(value, epoch)
            if spent >= budget:
                break
            if trial.should_prune():
                pruned = True
                break
        study.tell(trial, None if pruned else value, state=optuna.trial.TrialState.PRUNED if pruned else None)
        best = max(best, value)
        timeline.append((spent, best))
        row = {
            "trial_id": f"optuna-{trial.number:03d}",
            "config": dict(trial.params),
            "epochs": epoch,
            "epochs_trained": epoch,
            "cumulative_epochs": spent,
            "val_accuracy": value,
            "pruned": pruned,
            "seconds": round(time.perf_counter() - trial_started, 3),
        }
        trials.append(row)
        if epoch == schedule.max_resource and (selected is None or value > selected["val_accuracy"]):
            selected = {**{k: row[k] for k in ("trial_id", "val_accuracy", "config")}, "checkpoint": str(previous)}
    return SearchRun(spent, timeline, selected, trials, time.perf_counter() - started)


def _tune_run(result: Any, seconds: Mapping[str, float], wall: float) -> SearchRun:
    """A driver ``TuneResult`` as a :class:`SearchRun` (its ``best`` is its best full-``R`` trial)."""
    keys = ("trial_id", "bracket", "rung", "epochs", "epochs_trained", "cumulative_epochs", "val_accuracy", "val_loss")
    keys += ("config",)
    rows = [
        {**{k: t.get(k) for k in keys}, "seconds": round(seconds.get(t["checkpoint"], 0.0), 3)} for t in result.rows()
    ]
    best = result.best
    selected = None
    if best is not None:
        selected = {
            "trial_id": best.trial_id,
            "val_accuracy": best.metric(result.metric),
            "config": dict(best.item.config),
            "checkpoint": best.checkpoint,
        }
    checkpoints = {t["trial_id"]: t["checkpoint"] for t in result.rows()}
    timeline = [(int(epochs), float(best)) for epochs, best in result.timeline]
    return SearchRun(result.total_epochs, timeline, selected, rows, wall, checkpoints)


def _random_prefix(run: SearchRun, trials: int, max_epochs: int) -> SearchRun:
    """The first ``trials`` trials of a random-search run: exactly what a run with that budget trains."""
    rows = run.trials[:trials]
    best = max(rows, key=lambda r: -math.inf if r["val_accuracy"] is None else r["val_accuracy"])
    selected = {
        "trial_id": best["trial_id"],
        "val_accuracy": best["val_accuracy"],
        "config": best["config"],
        "checkpoint": run.checkpoints[best["trial_id"]],
    }
    wall = sum(float(r["seconds"] or 0.0) for r in rows)
    return SearchRun(trials * max_epochs, run.timeline[:trials], selected, rows, wall, run.checkpoints)


def epochs_to_reach(timeline: Sequence[Sequence[float]], accuracy: float) -> int | None:
    """Epochs trained when the best-so-far first reached ``accuracy``; ``None`` when it never did."""
    return next((int(epochs) for epochs, best in timeline if best >= accuracy), None)


def best_within(timeline: Sequence[Sequence[float]], budget: int) -> float | None:
    """The best val accuracy after at most ``budget`` epochs (``None`` before the first result)."""
    values = [best for epochs, best in timeline if epochs <= budget]
    return max(values) if values else None


def test_accuracy(checkpoint: str | None, real: Path) -> float | None:
    """Real-test accuracy of a selected checkpoint (``None`` when the search selected nothing)."""
    if checkpoint is None:
        return None
    from expforge.train.classifier import load_classifier
    from expforge.train.torch_data import load_split

    images, labels = load_split(real, "test")
    predicted = load_classifier(checkpoint, device="cpu").predict(images)
    return float((predicted == labels).mean())


@dataclasses.dataclass(frozen=True)
class Reference:
    """Random search's run as the yardstick: its best val accuracy, its whole epoch budget, and the epochs it had
    trained when it first reached that best (its own best trial's end)."""

    accuracy: float
    epochs: int
    first_reach: int

    @classmethod
    def of(cls, kept: Mapping[str, Any]) -> Reference:
        accuracy = float(kept["best_val_accuracy"])
        first = epochs_to_reach(kept["timeline"], accuracy)
        assert first is not None  # the best of a timeline is reached on it
        return cls(accuracy, int(kept["total_epochs"]), first)

    def to_dict(self) -> dict[str, Any]:
        return {"best_val_accuracy": self.accuracy, "epochs": self.epochs, "epochs_to_first_reach": self.first_reach}


def record(run: SearchRun, *, real: Path) -> dict[str, Any]:
    """What one search's run is worth keeping, independent of the other searches: its totals, selected model
    (scored on the real test split now, while its checkpoint exists), wall time, timeline and trials."""
    return {
        "total_epochs": run.total_epochs,
        "best_val_accuracy": max((best for _, best in run.timeline), default=None),
        "selected": None if run.selected is None else {k: v for k, v in run.selected.items() if k != "checkpoint"},
        "selected_test_accuracy": test_accuracy(None if run.selected is None else run.selected["checkpoint"], real),
        "wall_seconds": round(run.wall_seconds, 2),
        "timeline": [list(point) for point in run.timeline],
        "trials": run.trials,
    }


def summarise(kept: Mapping[str, Any], *, references: Mapping[str, Reference], budget: int) -> dict[str, Any]:
    """The four figures of one search for one seed from its :func:`record`, against random search's
    ``references`` (``1x``/``2x``): epochs to reach its best as a share of its whole budget (``ratio_to_...``) and
    of the epochs it took to first reach that best itself (``..._first_reach``, the stricter speed-up)."""
    timeline = kept["timeline"]
    summary: dict[str, Any] = {
        **{k: kept[k] for k in ("total_epochs", "best_val_accuracy")},
        "best_val_accuracy_at_equal_budget": best_within(timeline, budget),
        **{k: kept[k] for k in ("selected", "selected_test_accuracy", "wall_seconds")},
    }
    for name, reference in references.items():
        reach = epochs_to_reach(timeline, reference.accuracy)
        summary[f"epochs_to_reach_random_{name}_best"] = reach
        summary[f"ratio_to_random_{name}"] = None if reach is None else reach / reference.epochs
        summary[f"ratio_to_random_{name}_first_reach"] = None if reach is None else reach / reference.first_reach
    return summary | {"timeline": timeline, "trials": kept["trials"]}


# A search is one unit of work: ``random`` trains random search at the widest budget asked for and yields
# ``random_1x`` (and ``random_2x``); each other search yields the method of its name.
SEARCHES = ("random", "hyperband", "bohb", "optuna")


def searches_for(methods: Sequence[str]) -> list[str]:
    """The searches that produce ``methods`` (random search always: ``random_1x`` is the reference)."""
    return [search for search in SEARCHES if search == "random" or search in methods]


def run_search(
    seed: int,
    search: str,
    *,
    fonts: Path,
    real: Path,
    max_epochs: int,
    eta: int,
    fraction: float,
    device: str,
    workdir: Path,
    methods: Sequence[str] = METHODS,
    extend: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run one search for one seed and :func:`record` what it yields (method name → record). ``random`` trains
    2× when ``random_2x`` is in ``methods`` (1× is then its first trials, which is checked), else 1× only.

    ``extend`` is a kept ``random_1x`` record of this seed: when it is the 2× plan's first trials (same ids, same
    configurations) only the rest is trained and appended to it (:func:`extend_record`), half the epochs of a
    whole 2× run; otherwise it is ignored and 2× trains whole."""
    from expforge.tune.driver import run_hyperband, run_random_search
    from expforge.tune.hyperband import hyperband_schedule
    from expforge.tune.random_search import matched_budget, random_search_trials
    from expforge.tune.space import SearchSpace

    if search not in SEARCHES:
        raise ValueError(f"search {search!r}: expected one of {', '.join(SEARCHES)}")
    schedule = hyperband_schedule(max_epochs, eta)
    space = SearchSpace.default()
    budget = schedule.total_epochs()
    seconds: dict[str, float] = {}
    train_fn = make_train_fn(
        fonts, real, seed=seed, horizon=max_epochs, fraction=fraction, device=device, seconds=seconds
    )
    base = workdir / f"seed-{seed}"
    started = time.perf_counter()
    if search == "hyperband":
        log(f"seed {seed}: Hyperband, {schedule.trials} trials, {budget} epochs")
        result = run_hyperband(schedule, space, seed, train_fn, workdir=base / "hyperband")
        return {"hyperband": record(_tune_run(result, seconds, time.perf_counter() - started), real=real)}
    if search == "bohb":
        log(f"seed {seed}: BOHB (later brackets proposed by TPE on earlier brackets' records)")
        result = run_hyperband(schedule, space, seed, train_fn, workdir=base / "bohb", model_based=True)
        return {"bohb": record(_tune_run(result, seconds, time.perf_counter() - started), real=real)}
    if search == "optuna":
        log(f"seed {seed}: Optuna TPESampler + HyperbandPruner, {budget} epochs")
        run = run_optuna_hyperband(space, schedule, seed, train_fn, workdir=base / "optuna", budget=budget)
        return {"optuna": record(run, real=real)}

    budgets = {"1x": matched_budget(schedule, 1.0), "2x": matched_budget(schedule, 2.0)}
    widest = "2x" if "random_2x" in methods else "1x"
    if widest == "2x" and extend is not None:
        one_x = random_search_trials(space, budgets["1x"], max_epochs, seed)
        two_x = random_search_trials(space, budgets["2x"], max_epochs, seed)
        planned = [(item["trial_id"], item["config"]) for item in two_x[: len(one_x)]]
        if [(row["trial_id"], row["config"]) for row in extend["trials"]] == planned:
            rest_count = len(two_x) - len(one_x)
            log(f"seed {seed}: random search 2x, its last {rest_count} trials (the kept 1x run is the rest)")
            result = run_random_search(
                space, budgets["2x"], max_epochs, seed, train_fn, workdir=base / "random-search", first=len(one_x)
            )
            rest = record(_tune_run(result, seconds, time.perf_counter() - started), real=real)
            head = {**extend, "is_prefix_of_2x": True}
            return {"random_1x": head, "random_2x": extend_record(head, rest)}
        log(f"seed {seed}: the kept random_1x run is not the 2x plan's first trials; training 2x whole")
    log(f"seed {seed}: random search, {budgets[widest] // max_epochs} trials of {max_epochs} epochs")
    result = run_random_search(space, budgets[widest], max_epochs, seed, train_fn, workdir=base / "random-search")
    runs = {f"random_{widest}": _tune_run(result, seconds, time.perf_counter() - started)}
    prefix = None
    if widest == "2x":
        one_x = random_search_trials(space, budgets["1x"], max_epochs, seed)
        prefix = [row["config"] for row in result.rows()[: len(one_x)]] == [item["config"] for item in one_x]
        if prefix:
            runs["random_1x"] = _random_prefix(runs["random_2x"], len(one_x), max_epochs)
        else:  # sampling stopped being prefix-consistent: train the 1× run on its own
            started = time.perf_counter()
            result = run_random_search(space, budgets["1x"], max_epochs, seed, train_fn, workdir=base / "random-1x")
            runs["random_1x"] = _tune_run(result, seconds, time.perf_counter() - started)
    return {name: record(run, real=real) | {"is_prefix_of_2x": prefix} for name, run in runs.items()}


def extend_record(head: Mapping[str, Any], rest: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`record` of one random search from the records of its first trials (``head``) and of the trials
    after them (``rest``, trained alone with ``first=``): what the whole run would have recorded, since each trial
    trains alone. ``rest``'s epochs and best-so-far continue ``head``'s; its selected model replaces ``head``'s only
    when strictly better (a tie goes to the earlier trial id, as ``promote`` ranks); wall seconds add up."""
    offset = int(head["total_epochs"])
    head_best = max((best for _, best in head["timeline"]), default=-math.inf)
    timeline = [list(point) for point in head["timeline"]]
    timeline += [[offset + int(epochs), max(head_best, best)] for epochs, best in rest["timeline"]]
    trials = [dict(row) for row in head["trials"]]
    trials += [{**row, "cumulative_epochs": offset + int(row["cumulative_epochs"])} for row in rest["trials"]]
    chosen = head
    if rest["selected"] is not None and (
        head["selected"] is None or rest["selected"]["val_accuracy"] > head["selected"]["val_accuracy"]
    ):
        chosen = rest
    return {
        "total_epochs": offset + int(rest["total_epochs"]),
        "best_val_accuracy": max((best for _, best in timeline), default=None),
        "selected": chosen["selected"],
        "selected_test_accuracy": chosen["selected_test_accuracy"],
        "wall_seconds": round(float(head["wall_seconds"]) + float(rest["wall_seconds"]), 2),
        "timeline": timeline,
        "trials": trials,
        "is_prefix_of_2x": True,
    }


def combine_seed(
    seed: int, kept: Mapping[str, Mapping[str, Any]], *, budget: int, methods: Sequence[str] = METHODS
) -> dict[str, Any]:
    """One seed's result from its searches' records: random search's references, then every method summarised
    against them (``methods`` picks which are reported; ``random_1x`` must be among the records)."""
    references = {
        name: Reference.of(kept[f"random_{name}"])
        for name in ("1x", "2x")
        if f"random_{name}" in kept and (name == "1x" or "random_2x" in methods)
    }
    reported = [name for name in METHODS if name in kept and (name == "random_1x" or name in methods)]
    return {
        "seed": seed,
        "budget_epochs": budget,
        "random_1x_is_prefix_of_2x": kept["random_1x"].get("is_prefix_of_2x") if "random_2x" in reported else None,
        "references": {name: reference.to_dict() for name, reference in references.items()},
        "methods": {name: summarise(kept[name], references=references, budget=budget) for name in reported},
    }


def _pin_worker(cores: Any) -> None:
    """Pool initializer: take one core from the queue and run this worker on it alone (torch then uses one
    thread: ``expforge.train.device`` sizes its pool from the affinity mask)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cores.get()})


def _yields(search: str, methods: Sequence[str]) -> list[str]:
    """The methods one search's run must produce."""
    if search != "random":
        return [search]
    return ["random_1x", "random_2x"] if "random_2x" in methods else ["random_1x"]


def run_seeds(
    seeds: Sequence[int],
    workers: int,
    *,
    saved: Path | None = None,
    reuse: bool = False,
    methods: Sequence[str] = METHODS,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Every search of ``methods`` for every seed, combined per seed (results in seed order). The unit of work
    is one search of one seed (:func:`run_search`): in this process when ``workers`` is 1, else in a pool of
    ``workers`` spawned processes, one core each: longest first, then random search (the reference every
    other figure needs), Hyperband, and BOHB and Optuna seed by seed.

    Each search's records are written to ``saved/seed-<k>/<method>.json`` (atomically) as soon as it finishes,
    so a stopped hours-long run loses only the searches in flight, and a later run that adds a search trains
    only that one; with ``reuse`` the records found there are read back (the seed is then marked
    ``"reused"``) instead of trained again, and a kept ``random_1x`` is extended to ``random_2x`` rather than
    retrained. ``saved`` is keyed by the caller on everything that makes a record.
    """
    from expforge.tune.hyperband import hyperband_schedule

    kept: dict[int, dict[str, dict[str, Any]]] = {seed: {} for seed in seeds}
    reused: set[int] = set()
    if saved is not None and reuse:
        for seed in seeds:
            for path in sorted((saved / f"seed-{seed}").glob("*.json")):
                kept[seed][path.stem] = json.loads(path.read_text(encoding="utf-8"))
            if kept[seed]:
                reused.add(seed)
                log(f"seed {seed}: reused {', '.join(sorted(kept[seed]))} from {saved / f'seed-{seed}'}")

    def keep(seed: int, records: Mapping[str, dict[str, Any]]) -> None:
        kept[seed].update(records)
        if saved is None:
            return
        (saved / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
        for name, value in records.items():
            with staged_file(saved / f"seed-{seed}" / f"{name}.json") as staging:
                staging.write_text(json.dumps(value, default=str) + "\n", encoding="utf-8")

    def extend(seed: int, search: str) -> Mapping[str, Any] | None:  # a kept 1× run that 2× can continue
        return kept[seed].get("random_1x") if search == "random" and "random_2x" in methods else None

    def cost(seed: int, search: str) -> int:  # epochs trained, in Hyperband budgets: ~1 each, a whole random 2× two
        return 2 if search == "random" and "random_2x" in methods and extend(seed, search) is None else 1

    todo = [
        (seed, search)
        for seed in seeds
        for search in searches_for(methods)
        if not all(name in kept[seed] for name in _yields(search, methods))
    ]
    # Longest first; then random search (the reference), then Hyperband, then the model-based searches seed by
    # seed, so a run stopped early still holds BOHB and Optuna on the same seeds to compare.
    todo.sort(key=lambda task: (-cost(*task), min(SEARCHES.index(task[1]), 2), task[0], SEARCHES.index(task[1])))
    if workers <= 1 or len(todo) <= 1:
        for seed, search in todo:
            keep(seed, run_search(seed, search, methods=methods, extend=extend(seed, search), **kwargs))
    else:
        usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(workers))
        context = multiprocessing.get_context("spawn")
        cores = context.Queue()
        for index in range(workers):
            cores.put(usable[index % len(usable)])
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_pin_worker, initargs=(cores,)) as pool:
            futures = {
                pool.submit(run_search, seed, search, methods=methods, extend=extend(seed, search), **kwargs): seed
                for seed, search in todo
            }
            for future in as_completed(futures):
                keep(futures[future], future.result())
    budget = hyperband_schedule(kwargs["max_epochs"], kwargs["eta"]).total_epochs()
    return [
        combine_seed(seed, kept[seed], budget=budget, methods=methods) | ({"reused": True} if seed in reused else {})
        for seed in seeds
    ]


def _quantile(ordered: Sequence[float], share: float) -> float:
    """The inclusive (linear) quantile of sorted values that may end in +∞: interpolating towards +∞ is +∞."""
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    fraction = position - low
    if fraction == 0:
        return ordered[low]
    high = ordered[low + 1]
    return math.inf if math.isinf(high) else ordered[low] + fraction * (high - ordered[low])


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and interquartile range over seeds; ``None`` (never reached) ranks above every number, and a
    quantile that lands on it is ``None`` too."""
    ordered = sorted(math.inf if v is None else float(v) for v in values)
    if not ordered:
        return {"median": None, "q1": None, "q3": None, "iqr": None, "values": []}
    q1, median, q3 = (_quantile(ordered, share) for share in (0.25, 0.5, 0.75))

    def finite(x: float) -> float | None:
        return None if math.isinf(x) else round(x, 6)

    return {
        "median": finite(median),
        "q1": finite(q1),
        "q3": finite(q3),
        "iqr": None if math.isinf(q3) else round(q3 - q1, 6),
        "values": list(values),
    }


FIGURES = (
    "epochs_to_reach_random_1x_best",
    "ratio_to_random_1x",
    "ratio_to_random_1x_first_reach",
    "epochs_to_reach_random_2x_best",
    "ratio_to_random_2x",
    "ratio_to_random_2x_first_reach",
    "best_val_accuracy_at_equal_budget",
    "best_val_accuracy",
    "selected_test_accuracy",
    "wall_seconds",
)


def aggregate(per_seed: Sequence[Mapping[str, Any]], *, target_ratio: float) -> dict[str, Any]:
    """Per search and figure, the median and IQR over the seeds; the two goals as booleans (``None`` when a
    search a goal needs did not run)."""
    ran = per_seed[0]["methods"]
    by_method = {
        name: {
            figure: spread([seed["methods"][name][figure] for seed in per_seed])
            for figure in FIGURES
            if figure in ran[name]
        }
        for name in METHODS
        if name in ran
    }

    def median(name: str, figure: str) -> float | None:
        return by_method[name][figure]["median"] if name in by_method else None

    ratio = median("hyperband", "ratio_to_random_1x")
    strict = median("hyperband", "ratio_to_random_1x_first_reach")
    bohb = median("bohb", "best_val_accuracy_at_equal_budget")
    optuna = median("optuna", "best_val_accuracy_at_equal_budget")
    return {
        "by_method": by_method,
        "goals": {
            "hyperband_ratio_to_random_1x_median": ratio,
            "hyperband_at_most_target_of_random_epochs": None
            if "hyperband" not in by_method
            else ratio is not None and ratio <= target_ratio,
            "target_ratio": target_ratio,
            "hyperband_ratio_to_random_1x_first_reach_median": strict,
            "hyperband_at_most_target_of_random_first_reach": None
            if "hyperband" not in by_method
            else strict is not None and strict <= target_ratio,
            "bohb_median_best_val_at_equal_budget": bohb,
            "optuna_median_best_val_at_equal_budget": optuna,
            "bohb_at_least_as_good_as_optuna": None
            if "bohb" not in by_method or "optuna" not in by_method
            else bohb is not None and optuna is not None and bohb >= optuna,
        },
    }
