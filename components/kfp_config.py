"""Write the ``kfp_config.ini`` that KFP's executor reads inside a component image.

A containerized Python component's command is ``python3 -m kfp.dsl.executor_main --function_to_execute F``;
the executor finds ``F``'s module through ``kfp_config.ini`` in its working directory. Each image recipe runs
``python -m expforge.components.kfp_config <step>`` so the file points at the installed module. The writing
itself is :func:`expforge.executor_config.write_kfp_config`, shared with the runner's subprocess backend.

(No KFP import here at module level beyond what the executor already needs.)
"""

import sys
from pathlib import Path

from expforge.executor_config import write_kfp_config

__all__ = ["main", "write_kfp_config"]


def main(argv: list[str] | None = None) -> None:
    """``python -m expforge.components.kfp_config STEP [STEP ...]`` writes ./kfp_config.ini."""
    steps = list(sys.argv[1:] if argv is None else argv)
    if not steps:
        raise SystemExit("usage: python -m expforge.components.kfp_config STEP [STEP ...]")
    print(write_kfp_config(steps, Path.cwd()))


if __name__ == "__main__":
    main()
