"""How KFP's executor finds a step's component module: step names and the ``kfp_config.ini`` it reads.

A containerized Python component's command is ``python3 -m kfp.dsl.executor_main --function_to_execute F``;
the executor finds ``F``'s module through ``kfp_config.ini`` in its working directory. Image recipes write that
file into each image (``python -m expforge.components.kfp_config <step>``), and the runner's subprocess backend
writes the same file into a task's directory. Both sides need only the naming convention and the module's
file, so this sits below the components and the runner alike and imports neither (the module is located by
name, never imported).
"""

from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path

COMPONENTS_PACKAGE = "expforge.components"


def step_function_name(step: str) -> str:
    """Python name of a step's component function and module (``render-font-digits`` → ``render_font_digits``)."""
    return step.replace("-", "_")


def write_kfp_config(steps: list[str], directory: Path) -> Path:
    """Write ``directory/kfp_config.ini`` mapping each step's function name to its module file.

    A step without a component module is ``SystemExit`` with the reason (the image recipe's failure; the
    subprocess backend leaves such a task to KFP's executor to report).
    """
    config = configparser.ConfigParser()
    config.optionxform = str  # type: ignore[assignment,method-assign]  # keep function names' case
    config["Components"] = {}
    for step in steps:
        name = step_function_name(step)
        spec = importlib.util.find_spec(f"{COMPONENTS_PACKAGE}.{name}")
        if spec is None or spec.origin is None:
            raise SystemExit(f"kfp_config: no component module {COMPONENTS_PACKAGE}.{name} for step {step!r}")
        config["Components"][name] = spec.origin
    target = directory / "kfp_config.ini"
    with open(target, "w", encoding="utf-8") as handle:
        config.write(handle)
    return target
