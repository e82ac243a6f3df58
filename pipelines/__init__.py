"""Pipelines: graphs of components, built by factories so the compiler can pin each task's image.

``PIPELINES`` maps a pipeline's name to its factory (``module:function``); a factory returns a KFP
``GraphComponent`` and may take a ``preset`` (see :mod:`expforge.pipelines.presets`). Factories are called
inside :func:`expforge.components._adapter.pinned_images`, because
KFP copies a component's image into each task at the moment the graph is built.
"""

PIPELINES: dict[str, str] = {
    "mnist-synthetic": "expforge.pipelines.mnist_synthetic:build",
    "mnist-synthetic-random": "expforge.pipelines.mnist_synthetic:build_random",
    "mnist-synthetic-bohb": "expforge.pipelines.mnist_synthetic:build_bohb",
    "mnist-synthetic-adapt": "expforge.pipelines.mnist_synthetic:build_adapt",
    "mnist-synthetic-adapt-finetune": "expforge.pipelines.mnist_synthetic:build_adapt_finetune",
    "mnist-baseline": "expforge.pipelines.mnist_baseline:build",
    "text-corpus": "expforge.pipelines.text_corpus:build",
}
