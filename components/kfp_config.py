"""Write the ``kfp_config.ini`` that KFP's executor reads inside a component image.

A containerized Python component's command is ``python3 -m kfp.dsl.executor_main --function_to_execute F``;
the executor finds ``F``'s module through ``kfp_config.ini`` in its working directory. Each image recipe runs
``python -m expforge.components.kfp_config <step>`` so the file points at the installed module.

(No KFP import here at module level beyond what the executor already needs.)
"""

import configparser
import importlib.util
import sys
from pathlib import Path

from expforge.components._adapter import step_function_name


def write_kfp_config(steps: list[str], directory: Path) -> Path:
    """Write ``directory/kfp_config.ini`` mapping each step's function name to its module file."""
    config = configparser.ConfigParser()
    config.optionxform = str  # type: ignore[assignment,method-assign]  # keep function names' case
    config["Components"] = {}
    for step in steps:
        name = step_function_name(step)
        spec = importlib.util.find_spec(f"expforge.components.{name}")
        if spec is None or spec.origin is None:
            raise SystemExit(f"kfp_config: no component module expforge.components.{name} for step {step!r}")
        config["Components"][name] = spec.origin
    target = directory / "kfp_config.ini"
    with open(target, "w", encoding="utf-8") as handle:
        config.write(handle)
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m expforge.components.kfp_config STEP [STEP ...]`` writes ./kfp_config.ini."""
    steps = list(sys.argv[1:] if argv is None else argv)
    if not steps:
        raise SystemExit("usage: python -m expforge.components.kfp_config STEP [STEP ...]")
    print(write_kfp_config(steps, Path.cwd()))


if __name__ == "__main__":
    main()
