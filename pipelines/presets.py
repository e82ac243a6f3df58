"""Presets: named sizes of a pipeline — the graph's compile-time shape plus default parameter values.

``demo`` (the default) keeps ``make demo`` within minutes on a 2-core laptop; ``full`` is what a real run on
Vertex AI uses (all of MNIST, 60,000 font digits, Hyperband with R = 27 epochs). A preset's ``shape`` is
passed to the pipeline factory (it decides how many trials the unrolled Hyperband graph has); its
``parameters`` become the compiled defaults, so `expforge run`/`make pipeline-submit` need no ``-p`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expforge.errors import ExpforgeError


@dataclass(frozen=True)
class Preset:
    """``shape``: factory keyword arguments (compile time). ``parameters``: pipeline parameter defaults."""

    shape: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


MNIST_SYNTHETIC_PRESETS: dict[str, Preset] = {
    # 2 brackets (3 trials at 1 epoch → 1 at 3; 2 at 3): 6 trials, 11 epochs with warm start.
    # fine_tune_epochs: 36 passes over the 3,500 real train digits are about 2,000 steps, the length the fine-tune
    # recipe was measured at (bench/reference/adapt.json); its weight average needs a run that long.
    "demo": Preset(
        shape={"max_epochs": 3, "eta": 3},
        parameters={"mnist_limit": 5000, "mnist_source": "auto", "font_count": 5000, "fine_tune_epochs": 36},
    ),
    # 4 brackets (27 trials at 1 epoch ... 4 at 27 epochs): 69 trials, 357 epochs with warm start.
    "full": Preset(
        shape={"max_epochs": 27, "eta": 3},
        parameters={
            "mnist_limit": 70000,
            "mnist_source": "idx",
            "font_count": 60000,
            "accuracy_threshold": 0.95,
            "fine_tune_epochs": 20,
        },  # fmt: skip
    ),
}

PRESETS: dict[str, dict[str, Preset]] = {
    "mnist-synthetic": MNIST_SYNTHETIC_PRESETS,
    "mnist-synthetic-random": MNIST_SYNTHETIC_PRESETS,
    "mnist-synthetic-bohb": MNIST_SYNTHETIC_PRESETS,
    "mnist-synthetic-adapt": MNIST_SYNTHETIC_PRESETS,
    "mnist-synthetic-adapt-finetune": MNIST_SYNTHETIC_PRESETS,
}
DEFAULT_PRESET = "demo"


def get_preset(pipeline: str, name: str | None) -> Preset:
    """The preset ``name`` of ``pipeline`` (``None``: the default one, or no preset for pipelines without)."""
    presets = PRESETS.get(pipeline)
    if presets is None:
        if name not in (None, DEFAULT_PRESET):
            raise ExpforgeError(f"--preset: pipeline {pipeline!r} has no presets")
        return Preset()
    chosen = name or DEFAULT_PRESET
    if chosen not in presets:
        raise ExpforgeError(f"--preset: unknown preset {chosen!r} for {pipeline}; expected one of {', '.join(presets)}")
    return presets[chosen]
