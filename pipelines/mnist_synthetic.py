"""mnist-synthetic: can a CNN trained on font-rendered digits recognise real handwriting — and is it good and
safe enough to register?

bootstrap real MNIST ─┐
                      ├─► Hyperband over the digit CNN (font digits [+ a fraction of real train], selected
render font digits ───┘   on real val; brackets and rungs unrolled here, trials warm-started between rungs)
                              └─► evaluate the winner on real test
                              └─► drift check: font digits vs real test (report only)
                              └─► drift check: real train vs real test (the registration gate)
                                    └─► if accuracy ≥ threshold and the gate passes: register the model

``search="random"`` (pipeline ``mnist-synthetic-random``) replaces Hyperband with the random-search baseline
over the same space and a budget of ``budget_multiple`` × Hyperband's epochs; ``search="bohb"`` (pipeline
``mnist-synthetic-bohb``) keeps Hyperband's graph but draws every later bracket's configurations from a TPE
fitted on the previous bracket's trial records. ``adapt_unlabeled_real=True`` (pipeline
``mnist-synthetic-adapt``) inserts ``adapt`` after the search: the winner is adapted to the *unlabeled* real
train digits (candidate chosen on real val), and that model is what is evaluated, drift-checked and registered —
fonts → adapt on unlabeled real → evaluate. ``fine_tune_real_labels=True`` (pipeline
``mnist-synthetic-adapt-finetune``, with the adaptation) adds ``fine-tune`` after it: the adapted model fine-tuned
on the real train *labels* for ``fine_tune_epochs`` (the epoch chosen on real val), so the graph tells the whole
story — fonts → adapt on unlabeled real → fine-tune on real labels → evaluate — and what is evaluated, drift-checked
and registered is the fine-tuned model. (``real_fraction`` > 0 instead mixes real labels into the search's trials.)
The graph's size comes from a preset (:mod:`expforge.pipelines.presets`): ``demo`` by default, ``full`` for real runs.
"""

import inspect
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Model

from expforge.components.adapt import adapt
from expforge.components.drift_check import drift_check
from expforge.components.evaluate import evaluate
from expforge.components.fine_tune import fine_tune
from expforge.components.register_model import register_model
from expforge.errors import ExpforgeError
from expforge.pipelines.hpo import add_digit_data, add_hyperband, add_random_search, set_resources
from expforge.pipelines.presets import MNIST_SYNTHETIC_PRESETS, get_preset
from expforge.tune.hyperband import hyperband_schedule
from expforge.tune.random_search import matched_budget
from expforge.tune.space import DEFAULT_SEARCH_SPACE

PIPELINE_NAME = "mnist-synthetic"
RANDOM_PIPELINE_NAME = "mnist-synthetic-random"
BOHB_PIPELINE_NAME = "mnist-synthetic-bohb"
ADAPT_PIPELINE_NAME = "mnist-synthetic-adapt"
FINE_TUNE_PIPELINE_NAME = "mnist-synthetic-adapt-finetune"
SEARCHES = ("hyperband", "bohb", "random")


class MnistSyntheticOutputs(NamedTuple):
    """The model that was evaluated (the search's winner, adapted and fine-tuned where the graph does so), the
    winner's configuration, and that model's real-val and real-test accuracy."""

    model: Model
    config: dict
    val_accuracy: float
    accuracy: float


def pipeline_name(search: str, adapt_unlabeled_real: bool, fine_tune_real_labels: bool = False) -> str:
    """``mnist-synthetic`` plus ``-random``/``-bohb`` for the search, ``-adapt`` for the adaptation step and
    ``-finetune`` for the labelled fine-tune after it."""
    if search not in SEARCHES:
        raise ExpforgeError(f"--search: unknown search {search!r}; expected one of {', '.join(SEARCHES)}")
    name = {"hyperband": PIPELINE_NAME, "random": RANDOM_PIPELINE_NAME, "bohb": BOHB_PIPELINE_NAME}[search]
    name = f"{name}-adapt" if adapt_unlabeled_real else name
    return f"{name}-finetune" if fine_tune_real_labels else name


def build(
    preset: str | None = None,
    *,
    search: str = "hyperband",
    budget_multiple: float = 1.0,
    adapt_unlabeled_real: bool = False,
    fine_tune_real_labels: bool = False,
) -> dsl.graph_component.GraphComponent:
    """Build the pipeline graph (call inside ``pinned_images``): the preset fixes the Hyperband schedule
    (the number of trial tasks) and the parameters' defaults."""
    if fine_tune_real_labels and not adapt_unlabeled_real:
        raise ExpforgeError("fine_tune_real_labels: the fine-tune follows the adaptation (adapt_unlabeled_real)")
    name = pipeline_name(search, adapt_unlabeled_real, fine_tune_real_labels)
    chosen = get_preset(PIPELINE_NAME, preset)
    defaults: dict[str, Any] = {**MNIST_SYNTHETIC_PRESETS["demo"].parameters, **chosen.parameters}
    schedule = hyperband_schedule(chosen.shape["max_epochs"], chosen.shape["eta"])
    if search != "random":
        method = "BOHB" if search == "bohb" else "Hyperband"
        description = (
            f"{method} (R={schedule.max_resource}, η={schedule.eta}: {schedule.trials} trials, "
            f"{schedule.total_epochs()} epochs with warm start)"
        )
    else:
        budget = matched_budget(schedule, budget_multiple)
        description = f"Random search ({budget // schedule.max_resource} trials at {schedule.max_resource} epochs)"

    def mnist_synthetic(
        mnist_limit: int = defaults["mnist_limit"],
        mnist_source: str = defaults["mnist_source"],
        font_count: int = defaults["font_count"],
        real_fraction: float = 0.0,
        curriculum: str = "sequential",
        search_space: dict = DEFAULT_SEARCH_SPACE,
        device: str = "auto",
        seed: int = 0,
        cpu: str = "2",
        memory: str = "4G",
        accelerator_type: str = "NVIDIA_L4",
        accelerator_count: int = 0,
        accuracy_threshold: float = defaults.get("accuracy_threshold", 0.5),
        js_threshold: float = 0.1,
        psi_threshold: float = 0.2,
        max_drift_share: float = 0.5,
        model_name: str = "mnist-digits",
        registry: str = "local",
        fine_tune_epochs: int = defaults["fine_tune_epochs"],
    ) -> MnistSyntheticOutputs:
        data = add_digit_data(mnist_limit, mnist_source, font_count, seed)
        real, synthetic = data.real, data.synthetic
        trials = data.trials(
            real_fraction=real_fraction,
            curriculum=curriculum,
            device=device,
            seed=seed,
            cpu=cpu,
            memory=memory,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
        )
        if search != "random":
            best = add_hyperband(trials, schedule=schedule, search_space=search_space, model_based=search == "bohb")
        else:
            best = add_random_search(
                trials,
                budget_epochs=matched_budget(schedule, budget_multiple),
                epochs_per_trial=schedule.max_resource,
                search_space=search_space,
            )
        winner, winner_val = best.best_model, best.best_val_accuracy
        if adapt_unlabeled_real:
            adapted = adapt(model=best.best_model, real=real.outputs["dataset"], device=device, seed=seed)
            adapted.set_display_name("adapt the winner to unlabeled real train digits")
            set_resources(
                adapted, cpu=cpu, memory=memory, accelerator_type=accelerator_type, accelerator_count=accelerator_count
            )
            winner, winner_val = adapted.outputs["adapted"], adapted.outputs["val_accuracy"]
        if fine_tune_real_labels:
            tuned = fine_tune(model=winner, labelled=real.outputs["dataset"], epochs=fine_tune_epochs, device=device)
            tuned.set_display_name("fine-tune on the real train labels")
            set_resources(
                tuned, cpu=cpu, memory=memory, accelerator_type=accelerator_type, accelerator_count=accelerator_count
            )
            winner, winner_val = tuned.outputs["tuned"], tuned.outputs["val_accuracy"]
        scored = evaluate(model=winner, dataset=real.outputs["dataset"], split="test").set_display_name(
            "evaluate the winner on real test"
        )
        drift_settings = {
            "model": winner,
            "current": real.outputs["dataset"],
            "reference_split": "train",
            "current_split": "test",
            "js_threshold": js_threshold,
            "psi_threshold": psi_threshold,
            "max_drift_share": max_drift_share,
            "seed": seed,
        }
        drift_check(reference=synthetic.outputs["dataset"], **drift_settings).set_display_name(
            "drift: font digits vs real test (report)"
        )
        gate = drift_check(reference=real.outputs["dataset"], **drift_settings).set_display_name(
            "drift: real train vs real test (gate)"
        )
        accurate = dsl.If(scored.outputs["accuracy"] >= accuracy_threshold, name="accurate enough")
        no_drift = dsl.If(gate.outputs["gate_passed"] == True, name="no drift")  # noqa: E712 (a KFP condition)
        with accurate, no_drift:
            register_model(
                model=winner,
                evaluation=scored.outputs["evaluation"],
                model_name=model_name,
                registry=registry,
            ).set_display_name("register the model")
        return MnistSyntheticOutputs(
            model=winner,
            config=best.best_config,
            val_accuracy=winner_val,
            accuracy=scored.outputs["accuracy"],
        )

    steps_after = " adapted to unlabeled real train digits," if adapt_unlabeled_real else ""
    steps_after += " fine-tuned on the real train labels," if fine_tune_real_labels else ""
    if not fine_tune_real_labels:
        # fine_tune_epochs is a parameter only where the graph has the fine-tune step. KFP reads the pipeline's
        # parameters from the signature and calls the function with one channel per parameter, in order, so the
        # dropped last one keeps its Python default there, which nothing reads.
        signature = inspect.signature(mnist_synthetic)
        kept = [p for p in signature.parameters.values() if p.name != "fine_tune_epochs"]
        mnist_synthetic.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    return dsl.pipeline(
        name=name,
        description=f"{description} over a CNN trained on font digits (+ a fraction of real MNIST), selected on "
        f"real val,{steps_after} evaluated on real test, drift-checked, registered when good enough.",
    )(mnist_synthetic)


def build_random(preset: str | None = None) -> dsl.graph_component.GraphComponent:
    """The random-search baseline (same space, Hyperband's epoch budget): pipeline ``mnist-synthetic-random``."""
    return build(preset, search="random")


def build_bohb(preset: str | None = None) -> dsl.graph_component.GraphComponent:
    """BOHB: Hyperband's brackets, later brackets proposed by TPE on earlier records (``mnist-synthetic-bohb``)."""
    return build(preset, search="bohb")


def build_adapt(preset: str | None = None) -> dsl.graph_component.GraphComponent:
    """Hyperband, then adaptation to unlabeled real digits before evaluation (``mnist-synthetic-adapt``)."""
    return build(preset, adapt_unlabeled_real=True)


def build_adapt_finetune(preset: str | None = None) -> dsl.graph_component.GraphComponent:
    """Hyperband, adaptation, then the fine-tune on real labels before evaluation
    (``mnist-synthetic-adapt-finetune``): fonts → adapt on unlabeled real → fine-tune on real labels → evaluate."""
    return build(preset, adapt_unlabeled_real=True, fine_tune_real_labels=True)
