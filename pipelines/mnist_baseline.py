"""mnist-baseline: the scikit-learn baseline of mnist-synthetic — a linear model on font-rendered digits
(plus an optional fraction of real ones), scored on real handwriting. Small and fast: the runner's own
end-to-end tests and benchmarks use it.

bootstrap real MNIST ─┐
                      ├─► train (synthetic [then a fraction of real] train, validated on real val)
render font digits ───┘        └─► evaluate on real test
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model

from expforge.components.bootstrap_mnist import bootstrap_mnist
from expforge.components.evaluate import evaluate
from expforge.components.render_font_digits import render_font_digits
from expforge.components.train_sklearn import train_sklearn

PIPELINE_NAME = "mnist-baseline"


class MnistBaselineOutputs(NamedTuple):
    """What a run of the pipeline yields: the trained model and its real-test accuracy."""

    model: Model
    accuracy: float


def build() -> dsl.graph_component.GraphComponent:
    """Build the pipeline graph (call inside ``pinned_images`` to choose the images)."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train on synthetic font digits (optionally plus a fraction of real MNIST), "
        "validate on real val, evaluate on real test.",
    )
    def mnist_baseline(
        mnist_limit: int = 5000,
        mnist_source: str = "auto",
        font_count: int = 10000,
        real_fraction: float = 0.0,
        model_type: str = "logreg",
        epochs: int = 10,
        schedule: str = "sequential",
        seed: int = 0,
    ) -> MnistBaselineOutputs:
        real = bootstrap_mnist(limit=mnist_limit, source=mnist_source, seed=seed).set_display_name(
            "bootstrap real MNIST"
        )
        synthetic = render_font_digits(count=font_count, seed=seed).set_display_name("render font digits")
        synthetic.set_cpu_limit("2").set_memory_limit("4G")
        train = train_sklearn(
            synthetic=synthetic.outputs["dataset"],
            real=real.outputs["dataset"],
            real_fraction=real_fraction,
            model_type=model_type,
            epochs=epochs,
            schedule=schedule,
            seed=seed,
        ).set_display_name("train (scikit-learn)")
        train.set_cpu_limit("2").set_memory_limit("4G")
        scored = evaluate(model=train.outputs["model"], dataset=real.outputs["dataset"], split="test").set_display_name(
            "evaluate on real test"
        )
        return MnistBaselineOutputs(model=train.outputs["model"], accuracy=scored.outputs["accuracy"])

    return mnist_baseline
