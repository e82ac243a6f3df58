"""Put a task environment into a compiled pipeline spec: the variables every container of a pipeline starts with.

Vertex AI gives a task nothing but what its compiled spec names, so whatever a task must know there (the
tracking backend, the Google Cloud project, ...) is written into each executor's ``container.env`` list when the
pipeline is compiled (``expforge compile --env``) or submitted (``submit_pipeline(task_env=...)``). The local
runner starts the same containers with a task environment of its own (run id, tracking store, registry); a
variable the spec names wins there too, so a spec runs with the settings it was compiled with, here as on Vertex.

One rule serves all three, :func:`layer_environment`: the variables of the layer above replace those of the
same name below, the others below keep their order, and the layer above follows in sorted order (so the YAML
is the same for the same variables, whatever order they were given in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from expforge.task_env import TaskEnvironment

#: A task environment as its producers hold it: the dataclass, or variables (``--env`` also takes names that
#: are not ``EXPFORGE_*``, e.g. ``HF_HOME``).
Variables: TypeAlias = TaskEnvironment | Mapping[str, str]


def as_variables(env: Variables) -> dict[str, str]:
    """``env`` as ``name → value`` (a :class:`TaskEnvironment` as its :meth:`~TaskEnvironment.to_env`)."""
    return env.to_env() if isinstance(env, TaskEnvironment) else dict(env)


def layer_environment(below: Iterable[Mapping[str, Any]], above: Variables) -> list[dict[str, Any]]:
    """The ``env`` entries (``{"name": ..., "value": ...}``, as the spec writes them) of ``below`` with ``above``
    laid over them: the entries below not named above, unchanged and in their order, then ``above``'s, sorted."""
    top = as_variables(above)
    kept = [dict(entry) for entry in below if entry.get("name") not in top]
    return kept + [{"name": name, "value": value} for name, value in sorted(top.items())]


def inject_into_spec(document: dict[str, Any], env: Variables) -> None:
    """Lay ``env`` over the ``env`` list of every container executor of a pipeline spec document (in place;
    no variables: left as it is)."""
    if not as_variables(env):
        return
    executors = document.get("deploymentSpec", {}).get("executors", {})
    for executor in executors.values():
        container = executor.get("container")
        if container is not None:
            container["env"] = layer_environment(container.get("env", []), env)


def inject_task_environment(compiled: Path | str, env: Variables) -> None:
    """Rewrite the compiled pipeline YAML ``compiled`` with ``env`` on every container (see the module
    docstring). The file is rewritten in place: callers write a staging file (:func:`expforge.atomic.staged_file`)
    and rename it when done, so no reader sees it half-written."""
    path = Path(compiled)
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    inject_into_spec(documents[0], env)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")


def container_environment(runtime: Mapping[str, str], compiled: Mapping[str, str]) -> dict[str, str]:
    """The environment a task's process starts with under the local runner: the runner's ``runtime``
    variables with the container's ``compiled`` ones laid over them (the spec wins, as on Vertex)."""
    below = [{"name": name, "value": value} for name, value in runtime.items()]
    return {entry["name"]: entry["value"] for entry in layer_environment(below, compiled)}
