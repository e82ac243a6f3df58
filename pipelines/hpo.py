"""Hyperband (and its random-search baseline) as pipeline structure, unrolled at compile time.

The schedule (:func:`expforge.tune.hyperband.hyperband_schedule`) is fixed before anything runs, so the graph
is too. For every bracket ``s`` (most aggressive first)::

    sample-configs (n_0 configurations, this bracket's own random stream)
      └─► rung 0: ParallelFor trial ─► hyperband-trial (r_0 epochs, from scratch)
            └─► dsl.Collected(checkpoints, records) ─► select-top (keep ⌊n_0/η⌋)
                  │ survivors (loop items)      promoted (<trial_id>.pt of the kept trials)
                  ▼                             ▼
            rung 1: ParallelFor survivors ─► hyperband-trial (r_1 epochs, resumes <promoted>/<trial_id>.pt)
            ...
            last rung (R epochs) ─► select-top (keep 1; incumbent = the previous bracket's best)

The brackets' final ``select-top`` tasks form a chain through their ``incumbent`` input, so the last one's
``best`` is the best model over all brackets. (KFP cannot pass several separate tasks' artifacts as one
``List[Model]`` input — only ``dsl.Collected`` of a loop makes an artifact list — hence the chain; only those
cheap selection tasks wait on each other, every bracket's trials run concurrently.)

Random search is one ``ParallelFor`` of ``budget // R`` trials at ``R`` epochs and a ``select-top`` keeping 1.

:func:`add_hyperband` / :func:`add_random_search` build that structure inside any ``@dsl.pipeline`` body;
:func:`build_hyperband_digits` / :func:`build_random_search_digits` are complete pipelines on real MNIST plus
font-rendered digits.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Model
from kfp.dsl.pipeline_channel import PipelineChannel

from expforge.components.bootstrap_mnist import bootstrap_mnist
from expforge.components.hyperband_trial import hyperband_trial
from expforge.components.propose_configs import propose_configs
from expforge.components.render_font_digits import render_font_digits
from expforge.components.sample_configs import sample_configs
from expforge.components.select_top import select_top
from expforge.errors import ExpforgeError
from expforge.tune.hyperband import HyperbandSchedule, hyperband_schedule
from expforge.tune.random_search import matched_budget, random_search_size
from expforge.tune.space import (
    DEFAULT_SEARCH_SPACE,
    RANDOM_SEARCH_PREFIX,
    RANDOM_SEARCH_SALT,
    SearchSpace,
    bracket_prefix,
    bracket_salt,
)

HYPERBAND_PIPELINE_NAME = "hyperband-digits"
RANDOM_SEARCH_PIPELINE_NAME = "random-search-digits"
# At most this many trials of one rung run at once: enough to fill a few GPUs on Vertex, few enough that a
# workstation running the local runner is not asked for dozens of containers at a time.
DEFAULT_PARALLELISM = 4

Value = Any  # a compile-time constant or a pipeline-parameter channel


class HpoResult(NamedTuple):
    """Channels of the tuner's result, for the enclosing pipeline to consume or return."""

    best_model: PipelineChannel
    best_config: PipelineChannel
    best_val_accuracy: PipelineChannel


class HpoOutputs(NamedTuple):
    """Outputs of the demo pipelines: the best trial's checkpoint, its configuration and validation accuracy."""

    model: Model
    config: dict
    val_accuracy: float


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _check_search_space(search_space: Value) -> Value:
    """A constant space is validated now (a compile error beats a failed run); a channel at run time."""
    if isinstance(search_space, PipelineChannel):
        return search_space
    if not isinstance(search_space, Mapping):
        raise ExpforgeError("search_space: expected a mapping or a pipeline parameter")
    return SearchSpace.from_dict(search_space, source="search_space").to_dict()


def _resource_arguments(resources: Mapping[str, Value]) -> dict[str, Value]:
    """The limits as the trial's own inputs (recorded with the trial). Passing them as inputs is what makes a
    pipeline-parameter limit reach a task inside a ``ParallelFor``: KFP 2.17 adds a parameter to the loop's
    inputs only when a task consumes it as an input, not for a resource setting alone."""
    return {f"limit_{name}": value for name, value in resources.items() if value is not None}


def set_resources(
    task: dsl.PipelineTask, *, cpu: Value, memory: Value, accelerator_type: Value, accelerator_count: Value
) -> None:
    """CPU/memory limits and the accelerator request of a training task (constants or pipeline parameters).

    A constant ``accelerator_count`` of 0 requests no accelerator; a channel is left for the backend to
    resolve at run time (then ``accelerator_type`` must be given too).
    """
    if cpu is not None:
        task.set_cpu_limit(cpu)
    if memory is not None:
        task.set_memory_limit(memory)
    wants_accelerator = isinstance(accelerator_count, PipelineChannel) or bool(accelerator_count)
    if wants_accelerator:
        # (no `== ""` on a channel: PipelineChannel overloads == to build a dsl.If condition)
        if accelerator_type is None or (isinstance(accelerator_type, str) and not accelerator_type.strip()):
            raise ExpforgeError("accelerator_type: required when accelerator_count is set (e.g. NVIDIA_TESLA_T4)")
        task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)


class TrialSettings(NamedTuple):
    """What every trial task of one search shares: the data, the training settings and the resource limits.

    Each value may be a compile-time constant or a pipeline parameter. ``real`` is validated on its val split;
    ``seed`` also seeds the sampling of configurations. A search builder takes one of these, so Hyperband and
    random search are given exactly the same trials to compare.
    """

    synthetic: PipelineChannel
    real: PipelineChannel
    real_fraction: Value = 0.0
    curriculum: Value = "mixed"
    device: Value = "auto"
    seed: Value = 0
    cpu: Value = "2"
    memory: Value = "4G"
    accelerator_type: Value = None
    accelerator_count: Value = 0

    def add(
        self,
        item: PipelineChannel,
        *,
        epochs: int,
        max_epochs: int,
        bracket: int,
        rung: int,
        display_name: str,
        previous: PipelineChannel | None = None,
    ) -> dsl.PipelineTask:
        """One ``hyperband-trial`` task for the configuration ``item``, its limits given both as inputs and as
        task settings (see :func:`_resource_arguments`); ``previous``: checkpoints to warm-start from."""
        values = self._asdict()
        resources = {name: values.pop(name) for name in ("cpu", "memory", "accelerator_type", "accelerator_count")}
        arguments: dict[str, Any] = {
            **values,
            "trial": item,
            "epochs": epochs,
            "max_epochs": max_epochs,
            "bracket": bracket,
            "rung": rung,
            **_resource_arguments(resources),
        }
        if previous is not None:
            arguments["previous"] = previous
        task = hyperband_trial(**arguments).set_display_name(display_name)
        set_resources(task, **resources)
        return task


class DigitData(NamedTuple):
    """The two dataset tasks every digit pipeline starts from: real MNIST and font-rendered digits."""

    real: dsl.PipelineTask
    synthetic: dsl.PipelineTask

    def trials(self, **settings: Value) -> TrialSettings:
        """The :class:`TrialSettings` of a search that trains on these datasets (``settings``: its other fields)."""
        return TrialSettings(self.synthetic.outputs["dataset"], self.real.outputs["dataset"], **settings)


def add_digit_data(mnist_limit: Value, mnist_source: Value, font_count: Value, seed: Value) -> DigitData:
    """Add both dataset tasks to the enclosing pipeline, named and sized alike in every digit pipeline."""
    real = bootstrap_mnist(limit=mnist_limit, source=mnist_source, seed=seed).set_display_name("bootstrap real MNIST")
    synthetic = render_font_digits(count=font_count, seed=seed).set_display_name("render font digits")
    synthetic.set_cpu_limit("2").set_memory_limit("4G")
    return DigitData(real, synthetic)


#: Adds one search over the given trials and search space to the enclosing pipeline (the demo pipelines' hook).
SearchBuilder = Callable[[TrialSettings, Value], HpoResult]


def add_hyperband(
    trials: TrialSettings,
    *,
    schedule: HyperbandSchedule,
    search_space: Value = DEFAULT_SEARCH_SPACE,
    parallelism: int = DEFAULT_PARALLELISM,
    model_based: bool = False,
) -> HpoResult:
    """Unroll ``schedule`` into the enclosing pipeline; return the best model, its config and val accuracy.

    ``schedule`` and ``parallelism`` shape the graph, so they are fixed at compile time; ``search_space`` may be a
    pipeline parameter. ``model_based`` makes it BOHB: every bracket after the first draws its configurations
    with ``propose-configs``, fitted on the records of the previous bracket's first rung (its widest), so the
    brackets are chained through their records and the graph stays static.
    """
    if not isinstance(schedule, HyperbandSchedule):
        raise TypeError("schedule must be a HyperbandSchedule (the graph is unrolled at compile time)")
    search_space = _check_search_space(search_space)
    incumbent: dsl.PipelineTask | None = None
    earlier: Any = None  # BOHB: the collected records of the previous bracket's first rung
    for bracket in schedule.brackets:
        s = bracket.s
        sampling: dict[str, Any] = {
            "search_space": search_space,
            "count": bracket.configs,
            "seed": trials.seed,
            "salt": bracket_salt(s),
            "id_prefix": bracket_prefix(s),
        }
        if model_based and earlier is not None:
            sampled = propose_configs(records=earlier, **sampling).set_display_name(
                f"bracket {s} · propose {bracket.configs} configurations (TPE on bracket {s + 1})"
            )
        else:
            sampled = sample_configs(**sampling).set_display_name(
                f"bracket {s} · sample {bracket.configs} configurations"
            )
        items: PipelineChannel = sampled.output
        promoted: PipelineChannel | None = None
        for rung in bracket.rungs:
            final = rung.index == len(bracket.rungs) - 1
            label = f"bracket {s} · rung {rung.index} · {rung.configs} trials at {_epochs(rung.epochs)}"
            with dsl.ParallelFor(items, parallelism=parallelism, name=label) as item:
                trial = trials.add(
                    item,
                    epochs=rung.epochs,
                    max_epochs=schedule.max_resource,
                    bracket=s,
                    rung=rung.index,
                    display_name=f"trial · bracket {s} · rung {rung.index} · {_epochs(rung.epochs)}",
                    previous=promoted,  # warm start: the previous rung's kept checkpoints
                )
            if rung.index == 0:
                earlier = dsl.Collected(trial.outputs["record"])
            selection: dict[str, Any] = {
                "trials": dsl.Collected(trial.outputs["checkpoint"]),
                "records": dsl.Collected(trial.outputs["record"]),
                "keep": 1 if final else rung.keep,
            }
            if final and incumbent is not None:
                selection["incumbent"] = incumbent.outputs["best"]
                selection["incumbent_record"] = incumbent.outputs["best_record"]
            chosen = select_top(**selection).set_display_name(
                f"bracket {s} · rung {rung.index} · best overall"
                if final
                else f"bracket {s} · rung {rung.index} · keep {rung.keep} of {rung.configs}"
            )
            items, promoted = chosen.outputs["survivors"], chosen.outputs["promoted"]
        incumbent = chosen
    assert incumbent is not None  # a schedule has at least one bracket
    return HpoResult(
        incumbent.outputs["best"], incumbent.outputs["best_config"], incumbent.outputs["best_val_accuracy"]
    )


def add_random_search(
    trials: TrialSettings,
    *,
    budget_epochs: int,
    epochs_per_trial: int,
    search_space: Value = DEFAULT_SEARCH_SPACE,
    parallelism: int = DEFAULT_PARALLELISM,
) -> HpoResult:
    """``budget_epochs // epochs_per_trial`` random configurations at ``epochs_per_trial`` epochs; keep the best."""
    count = random_search_size(budget_epochs, epochs_per_trial)
    search_space = _check_search_space(search_space)
    sampled = sample_configs(
        search_space=search_space,
        count=count,
        seed=trials.seed,
        salt=RANDOM_SEARCH_SALT,
        id_prefix=RANDOM_SEARCH_PREFIX,
    ).set_display_name(f"random search · sample {count} configurations")
    label = f"random search · {count} trials at {_epochs(epochs_per_trial)}"
    with dsl.ParallelFor(sampled.output, parallelism=parallelism, name=label) as item:
        trial = trials.add(
            item,
            epochs=epochs_per_trial,
            max_epochs=epochs_per_trial,
            bracket=-1,
            rung=0,
            display_name=f"trial · random search · {_epochs(epochs_per_trial)}",
        )
    chosen = select_top(
        trials=dsl.Collected(trial.outputs["checkpoint"]), records=dsl.Collected(trial.outputs["record"]), keep=1
    ).set_display_name("random search · best")
    return HpoResult(chosen.outputs["best"], chosen.outputs["best_config"], chosen.outputs["best_val_accuracy"])


def _digits_pipeline(
    name: str, description: str, add_search: SearchBuilder, resources: Mapping[str, Value]
) -> dsl.graph_component.GraphComponent:
    @dsl.pipeline(name=name, description=description)
    def hpo_digits(
        mnist_limit: int = 5000,
        mnist_source: str = "auto",
        font_count: int = 10000,
        real_fraction: float = 0.1,
        curriculum: str = "mixed",
        device: str = "auto",
        seed: int = 0,
        search_space: dict = DEFAULT_SEARCH_SPACE,
    ) -> HpoOutputs:
        trials = add_digit_data(mnist_limit, mnist_source, font_count, seed).trials(
            real_fraction=real_fraction, curriculum=curriculum, device=device, seed=seed, **resources
        )
        result = add_search(trials, search_space)
        return HpoOutputs(model=result.best_model, config=result.best_config, val_accuracy=result.best_val_accuracy)

    return hpo_digits


def build_hyperband_digits(
    max_epochs: int = 9,
    eta: int = 3,
    min_epochs: int = 1,
    *,
    cpu: str = "2",
    memory: str = "4G",
    accelerator_type: str | None = None,
    accelerator_count: int = 0,
    parallelism: int = DEFAULT_PARALLELISM,
) -> dsl.graph_component.GraphComponent:
    """Hyperband over the digit CNN's search space (the schedule's shape is fixed here, at compile time)."""
    schedule = hyperband_schedule(max_epochs, eta, min_epochs)

    def add_search(trials: TrialSettings, search_space: Value) -> HpoResult:
        return add_hyperband(trials, schedule=schedule, search_space=search_space, parallelism=parallelism)

    return _digits_pipeline(
        HYPERBAND_PIPELINE_NAME,
        f"Hyperband (R={schedule.max_resource}, η={schedule.eta}, {schedule.trials} trials, "
        f"{schedule.total_epochs()} epochs with warm start) over the digit CNN, trained on font digits "
        "(+ a fraction of real MNIST), selected on real val.",
        add_search,
        {"cpu": cpu, "memory": memory, "accelerator_type": accelerator_type, "accelerator_count": accelerator_count},
    )


def build_random_search_digits(
    max_epochs: int = 9,
    eta: int = 3,
    min_epochs: int = 1,
    budget_multiple: float = 1.0,
    *,
    budget_epochs: int | None = None,
    cpu: str = "2",
    memory: str = "4G",
    accelerator_type: str | None = None,
    accelerator_count: int = 0,
    parallelism: int = DEFAULT_PARALLELISM,
) -> dsl.graph_component.GraphComponent:
    """Random search with ``budget_multiple`` × the epochs of the matching Hyperband schedule (or
    ``budget_epochs``), every trial at ``max_epochs``: the baseline of the benchmark."""
    if budget_epochs is None:
        budget_epochs = matched_budget(hyperband_schedule(max_epochs, eta, min_epochs), budget_multiple)

    def add_search(trials: TrialSettings, search_space: Value) -> HpoResult:
        return add_random_search(
            trials,
            budget_epochs=budget_epochs,
            epochs_per_trial=max_epochs,
            search_space=search_space,
            parallelism=parallelism,
        )

    return _digits_pipeline(
        RANDOM_SEARCH_PIPELINE_NAME,
        f"Random search ({budget_epochs // max_epochs} trials at {max_epochs} epochs, budget {budget_epochs} "
        "epochs) over the digit CNN, trained on font digits (+ a fraction of real MNIST), selected on real val.",
        add_search,
        {"cpu": cpu, "memory": memory, "accelerator_type": accelerator_type, "accelerator_count": accelerator_count},
    )
