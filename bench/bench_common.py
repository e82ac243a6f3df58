"""What every benchmark script shares: the CPU model for the report and writing the JSON result.

Each script is run as ``python bench/<name>.py`` and puts this folder on ``sys.path`` to import it.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for comparing figures across machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_report(report: dict[str, Any], output: Path, *, echo: bool = True) -> None:
    """Write ``report`` to ``output`` atomically (whole or untouched), and echo it on stdout."""
    with staged_file(output) as staging:
        staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if echo:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
