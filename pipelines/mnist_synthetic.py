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
over the same space and a budget of ``budget_multiple`` × Hyperband's epochs. The graph's size comes from a
preset (:mod:`expforge.pipelines.presets`): ``demo`` by default, ``full`` for real runs.
"""

from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Model

from expforge.components.bootstrap_mnist import bootstrap_mnist
from expforge.components.drift_check import drift_check
from expforge.components.evaluate import evaluate
from expforge.components.register_model import register_model
from expforge.components.render_font_digits import render_font_digits
from expforge.errors import ExpforgeError
from expforge.pipelines.hpo import TrialSettings, add_hyperband, add_random_search
from expforge.pipelines.presets import MNIST_SYNTHETIC_PRESETS, get_preset
from expforge.tune.hyperband import hyperband_schedule
from expforge.tune.random_search import matched_budget
from expforge.tune.space import DEFAULT_SEARCH_SPACE

PIPELINE_NAME = "mnist-synthetic"
RANDOM_PIPELINE_NAME = "mnist-synthetic-random"
SEARCHES = ("hyperband", "random")


class MnistSyntheticOutputs(NamedTuple):
    """The winning model, its configuration, its real-val and real-test accuracy."""

    model: Model
    config: dict
    val_accuracy: float
    accuracy: float


def build(
    preset: str | None = None, *, search: str = "hyperband", budget_multiple: float = 1.0
) -> dsl.graph_component.GraphComponent:
    """Build the pipeline graph (call inside ``pinned_images``): the preset fixes the Hyperband schedule
    (the number of trial tasks) and the parameters' defaults."""
    if search not in SEARCHES:
        raise ExpforgeError(f"search: unknown search {search!r}; expected one of {', '.join(SEARCHES)}")
    chosen = get_preset(PIPELINE_NAME, preset)
    defaults: dict[str, Any] = {**MNIST_SYNTHETIC_PRESETS["demo"].parameters, **chosen.parameters}
    schedule = hyperband_schedule(chosen.shape["max_epochs"], chosen.shape["eta"])
    name = PIPELINE_NAME if search == "hyperband" else RANDOM_PIPELINE_NAME
    if search == "hyperband":
        description = (
            f"Hyperband (R={schedule.max_resource}, η={schedule.eta}: {schedule.trials} trials, "
            f"{schedule.total_epochs()} epochs with warm start)"
        )
    else:
        budget = matched_budget(schedule, budget_multiple)
        description = f"Random search ({budget // schedule.max_resource} trials at {schedule.max_resource} epochs)"

    @dsl.pipeline(
        name=name,
        description=f"{description} over a CNN trained on font digits (+ a fraction of real MNIST), selected on "
        "real val, evaluated on real test, drift-checked, registered when good enough.",
    )
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
    ) -> MnistSyntheticOutputs:
        real = bootstrap_mnist(limit=mnist_limit, source=mnist_source, seed=seed).set_display_name(
            "bootstrap real MNIST"
        )
        synthetic = render_font_digits(count=font_count, seed=seed).set_display_name("render font digits")
        synthetic.set_cpu_limit("2").set_memory_limit("4G")
        trials = TrialSettings(
            synthetic.outputs["dataset"],
            real.outputs["dataset"],
            real_fraction=real_fraction,
            curriculum=curriculum,
            device=device,
            seed=seed,
            cpu=cpu,
            memory=memory,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
        )
        if search == "hyperband":
            best = add_hyperband(trials, schedule=schedule, search_space=search_space)
        else:
            best = add_random_search(
                trials,
                budget_epochs=matched_budget(schedule, budget_multiple),
                epochs_per_trial=schedule.max_resource,
                search_space=search_space,
            )
        scored = evaluate(model=best.best_model, dataset=real.outputs["dataset"], split="test").set_display_name(
            "evaluate the winner on real test"
        )
        drift_settings = {
            "model": best.best_model,
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
                model=best.best_model,
                evaluation=scored.outputs["evaluation"],
                model_name=model_name,
                registry=registry,
            ).set_display_name("register the model")
        return MnistSyntheticOutputs(
            model=best.best_model,
            config=best.best_config,
            val_accuracy=best.best_val_accuracy,
            accuracy=scored.outputs["accuracy"],
        )

    return mnist_synthetic


def build_random(preset: str | None = None) -> dsl.graph_component.GraphComponent:
    """The random-search baseline (same space, Hyperband's epoch budget): pipeline ``mnist-synthetic-random``."""
    return build(preset, search="random")
