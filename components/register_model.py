"""register-model: add the trained model to the model registry with its evaluation (champion/challenger)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model, Output

from expforge.components._adapter import artifact_dir, describe, step_component


class RegisterOutputs(NamedTuple):
    """Output parameters of ``register-model``: the new version and the aliases it holds."""

    version_id: str
    aliases: list


@step_component("register-model")
def register_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    registered: Output[Artifact],
    model_name: str = "mnist-digits",
    registry: str = "local",
    accuracy_key: str = "accuracy",
) -> RegisterOutputs:
    """Register ``model`` as a new version of ``model_name`` in the ``registry`` backend (``local`` or ``vertex``;
    settings from the environment). It becomes ``challenger``, and ``champion`` when its ``accuracy_key`` is at
    least the current champion's. ``evaluation`` is the evaluate step's output (its metrics.json); without it,
    nothing is registered. ``registered`` holds ``version.json`` describing the new version."""
    import json

    from expforge.registry.base import load_evaluation
    from expforge.registry.select import open_registry, register_with_policy

    metrics = load_evaluation(artifact_dir(evaluation), accuracy_key=accuracy_key)
    backend = open_registry(registry)
    source = {"model_uri": model.uri, "evaluation_uri": evaluation.uri}
    version = register_with_policy(
        backend, model_name, model.path, evaluation=metrics, accuracy_key=accuracy_key, metadata=source
    )
    path = artifact_dir(registered)
    path.mkdir(parents=True, exist_ok=True)
    (path / "version.json").write_text(json.dumps(version.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
    describe(
        registered,
        {"model_name": version.name, "version_id": version.version_id, "aliases": version.aliases},
        registry=backend.kind,
        uri=version.uri,
        resource=version.resource,
        accuracy=version.metric(accuracy_key),
    )
    return RegisterOutputs(version.version_id, list(version.aliases))
