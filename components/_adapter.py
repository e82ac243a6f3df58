"""The adapter pattern, written once: how a step-library function becomes a containerized KFP component.

Every component module declares one function with KFP ``Input``/``Output`` annotations and decorates it with
:func:`step_component`. The decorator

* builds a *containerized* Python component (``target_image``): the image already holds ``expforge`` and a
  ``kfp_config.ini`` naming the module, so the compiled YAML carries no inline source and no ``pip install``;
* registers the component under its step name, so the compiler can pin every step to the image that was
  actually built (:func:`pinned_images`);
* turns an :class:`~expforge.errors.ExpforgeError` into one clear line on stderr and exit status 2, instead
  of a traceback that buries the message in the task log (the policy of :mod:`expforge.cli_errors`, shared
  with every command-line entry point);
* tracks every execution (parameters, input datasets, the ``Metrics`` it logged, output URIs) with the
  configured backend, see :mod:`expforge.components._tracking`.

The small helpers below map library results onto KFP's artifact types (``Dataset``/``Model`` metadata,
``Metrics`` scalars, ``ClassificationMetrics`` confusion matrices, ``HTML``/``Markdown`` reports) so the Vertex
UI shows them.
"""

import contextlib
import functools
import inspect
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kfp import dsl
from kfp.dsl import python_component

from expforge.cli_errors import bad_input_exits
from expforge.executor_config import step_function_name

IMAGE_REPOSITORY_PREFIX = "expforge"
DEFAULT_IMAGE_TAG = "latest"

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

STEP_COMPONENTS: dict[str, python_component.PythonComponent] = {}


def default_image(step: str) -> str:
    """The image a step runs in when no image map is given (``make images`` tags it too)."""
    return f"{IMAGE_REPOSITORY_PREFIX}/{step}:{DEFAULT_IMAGE_TAG}"


def _tracked_and_clean_on_bad_input(step: str, func: F) -> F:
    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from expforge.components._tracking import call_tracked
        from expforge.task_env import TaskEnvironment, warn_unknown_variables

        with bad_input_exits():
            TaskEnvironment.from_env()  # a malformed EXPFORGE_* value is one line and exit 2, before any work
            warn_unknown_variables()
            return call_tracked(step, func, kwargs)

    # KFP's executor reads the parameters with inspect.getfullargspec, which does not follow __wrapped__.
    wrapper.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def step_component(step: str) -> Callable[[F], python_component.PythonComponent]:
    """Declare the containerized KFP component of ``step`` (its image: ``containers/<step>/Dockerfile``)."""

    def decorate(func: F) -> python_component.PythonComponent:
        if func.__name__ != step_function_name(step):
            raise ValueError(f"component for step {step!r} must be named {step_function_name(step)!r}")
        image = default_image(step)
        component = dsl.component(base_image=image, target_image=image, install_kfp_package=False)(
            _tracked_and_clean_on_bad_input(step, func)
        )
        STEP_COMPONENTS[step] = component
        return component

    return decorate


def load_all_components() -> dict[str, python_component.PythonComponent]:
    """Import every component module so the registry is complete; return it."""
    import importlib
    import pkgutil

    import expforge.components as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name != "kfp_config":
            importlib.import_module(f"{package.__name__}.{module.name}")
    return STEP_COMPONENTS


def _set_image(component: python_component.PythonComponent, image: str) -> None:
    container = component.component_spec.implementation.container
    assert container is not None, "step components are container components"
    container.image = image


@contextlib.contextmanager
def pinned_images(images: Mapping[str, str] | None) -> Iterator[None]:
    """Within the block, every step component names the image from ``images`` (step → image reference).

    Pipeline graphs copy a component's container spec when a task is created, so pipelines must be *built*
    inside this block (see ``expforge.pipelines``). Images are restored afterwards.
    """
    components = load_all_components()
    previous = {step: comp.component_spec.implementation.container.image for step, comp in components.items()}
    try:
        for step, component in components.items():
            _set_image(component, (images or {}).get(step, default_image(step)))
        yield
    finally:
        for step, image in previous.items():
            _set_image(components[step], image)


# --- mapping library results onto KFP artifacts ---------------------------------------------------------------


def artifact_dir(artifact: dsl.Artifact) -> Path:
    """The local path of an artifact that holds a directory (a dataset, an evaluation bundle)."""
    return Path(artifact.path)


def training_sets(synthetic: dsl.Artifact, real: dsl.Artifact, real_fraction: float) -> tuple[list[Path], list[float]]:
    """The trainers' ``train``/``train_fractions``: all synthetic digits, then ``real_fraction`` of real train
    (left out at 0) — the "synthetic first, then real" input every training step shares."""
    if real_fraction <= 0:
        return [artifact_dir(synthetic)], [1.0]
    return [artifact_dir(synthetic), artifact_dir(real)], [1.0, real_fraction]


def train_on_sets(
    train: Callable[..., T],
    synthetic: dsl.Artifact,
    real: dsl.Artifact,
    output: dsl.Artifact,
    tensorboard: dsl.Artifact,
    real_fraction: float,
    **options: Any,
) -> T:
    """Call a trainer the way every training step does: on :func:`training_sets`, validating on real val, the
    model (or checkpoint) at ``output``, each epoch's values into ``tensorboard``'s event files; ``options``
    are the trainer's own keywords."""
    from expforge.train.tensorboard_log import ScalarLog

    train_dirs, fractions = training_sets(synthetic, real, real_fraction)
    with ScalarLog(tensorboard.path) as board:
        return train(
            train_dirs, artifact_dir(real), output.path, train_fractions=fractions, on_epoch=board.record, **options
        )


def record_epoch_outputs(history: dsl.Artifact, tensorboard: dsl.Artifact, epochs: Sequence[Any]) -> None:
    """Write a training step's per-epoch history CSV (atomically, one writer for both trainers), mark it and the
    TensorBoard directory, and add the epoch-curve plot to the latter
    (see :func:`expforge.viz.epoch_curves.write_epoch_curves`)."""
    from expforge.train.history_csv import write_history_csv
    from expforge.viz.epoch_curves import write_epoch_curves

    write_history_csv(epochs, history.path)
    history.metadata["format"] = "csv"
    write_epoch_curves(epochs, tensorboard.path)
    tensorboard.metadata["format"] = "tensorboard"


def describe(artifact: dsl.Artifact, summary: Mapping[str, Any], **extra: Any) -> None:
    """Copy a step's summary into the artifact's metadata (JSON-safe scalars, lists and dicts only)."""
    for key, value in {**summary, **extra}.items():
        artifact.metadata[key] = json.loads(json.dumps(value, default=str))


def log_scalars(metrics: dsl.Metrics, values: Mapping[str, Any]) -> None:
    """Log every numeric value of ``values`` as a KFP metric (the Vertex UI lists them per run)."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metrics.log_metric(key, float(value))


def log_confusion_matrix(
    artifact: dsl.ClassificationMetrics, labels: list[int] | list[str], matrix: list[list[int]]
) -> None:
    """Log a confusion matrix so Vertex renders it as a ``system.ClassificationMetrics`` artifact."""
    artifact.log_confusion_matrix([str(label) for label in labels], [[int(v) for v in row] for row in matrix])


def write_text_artifact(artifact: dsl.Artifact, text: str) -> None:
    """Write an HTML/Markdown report artifact (a single file at ``artifact.path``)."""
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
