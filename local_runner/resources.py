"""Resource requests of a task (``set_cpu_limit``, ``set_memory_limit``, ``set_accelerator_*``) and GPU detection.

The spec states limits as Kubernetes quantities (``"500m"`` CPUs, ``"512M"``/``"1Gi"`` memory); Docker wants
nano-CPUs and bytes. Accelerators become a Docker GPU device request; whether this host has a GPU at all is
decided once, by asking ``nvidia-smi``.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expforge.local_runner.spec import ContainerSpec

_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[a-zA-Z]*)\s*$")


def parse_cpu(text: str) -> float:
    """CPUs from a Kubernetes quantity: ``"2"`` → 2.0, ``"500m"`` → 0.5."""
    match = _QUANTITY.match(text)
    if not match or match["unit"] not in ("", "m"):
        raise ValueError(f"bad CPU quantity {text!r}")
    value = float(match["number"])
    return value / 1000 if match["unit"] == "m" else value


def parse_memory(text: str) -> int:
    """Bytes from a Kubernetes quantity: ``"512M"`` → 512·10⁶, ``"1Gi"`` → 2³⁰ (also ``"1G"``-style ``"1GB"``)."""
    match = _QUANTITY.match(text)
    unit = match["unit"] if match else None
    if unit is not None and unit.endswith("B") and unit[:-1] in _MEMORY_UNITS:
        unit = unit[:-1]
    if unit is None or unit not in _MEMORY_UNITS:
        raise ValueError(f"bad memory quantity {text!r}")
    return int(float(match["number"]) * _MEMORY_UNITS[unit])  # type: ignore[index]


@dataclass(frozen=True)
class ResourceRequest:
    """What a task asks for; ``None``/0 means no request."""

    cpu_limit: float | None = None
    memory_limit: int | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 0

    @property
    def has_limits(self) -> bool:
        """Whether a CPU or memory limit is set (the subprocess backend cannot enforce them)."""
        return self.cpu_limit is not None or self.memory_limit is not None

    def describe(self) -> str:
        """Short human form for warnings: ``cpu=1, memory=512000000B, gpu=1×NVIDIA_TESLA_T4``."""
        parts = []
        if self.cpu_limit is not None:
            parts.append(f"cpu={self.cpu_limit:g}")
        if self.memory_limit is not None:
            parts.append(f"memory={self.memory_limit}B")
        if self.accelerator_count:
            parts.append(f"gpu={self.accelerator_count}×{self.accelerator_type or 'any'}")
        return ", ".join(parts) or "none"

    def without_accelerator(self) -> ResourceRequest:
        """The same request minus the GPU (``--allow-cpu-fallback``)."""
        return ResourceRequest(self.cpu_limit, self.memory_limit)


_PARAMETER_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(?P<name>[^']+)'\]\}\}")


class UnresolvedResource(Exception):
    """A resource quantity names a pipeline parameter whose value is not known yet (before the task runs)."""


def _substitute(text: str, parameters: Mapping[str, Any] | None, field: str) -> str:
    """Resolve ``{{$.inputs.parameters['x']}}`` in a quantity set from a pipeline parameter
    (``task.set_cpu_limit(cpu)`` with ``cpu`` a parameter compiles to that placeholder)."""

    def value(match: re.Match[str]) -> str:
        name = match["name"]
        if parameters is None or name not in parameters:
            raise UnresolvedResource(f"{field}: parameter {name!r} is not known")
        return str(parameters[name])

    return _PARAMETER_PLACEHOLDER.sub(value, text)


def resource_request(container: ContainerSpec, parameters: Mapping[str, Any] | None = None) -> ResourceRequest:
    """Read a container's resources, preferring the string quantities newer compilers write.

    Quantities set from pipeline parameters are resolved from the task's input ``parameters``; without them
    such a quantity raises :class:`UnresolvedResource`. A bad quantity raises ``ValueError``.
    """
    if not container.HasField("resources"):
        return ResourceRequest()
    res = container.resources
    cpu: float | None = None
    if res.resource_cpu_limit:
        cpu_text = _substitute(res.resource_cpu_limit, parameters, "cpu limit")
        cpu = parse_cpu(cpu_text) if cpu_text.strip() else None
    elif res.cpu_limit:
        cpu = res.cpu_limit
    memory: int | None = None
    if res.resource_memory_limit:
        memory_text = _substitute(res.resource_memory_limit, parameters, "memory limit")
        memory = parse_memory(memory_text) if memory_text.strip() else None
    elif res.memory_limit:
        memory = int(res.memory_limit * 10**9)  # the legacy float field is in GB
    accelerator_type: str | None = None
    count = 0
    if res.HasField("accelerator"):
        acc = res.accelerator
        accelerator_type = _substitute(acc.resource_type or acc.type or "", parameters, "accelerator type") or None
        count_text = _substitute(acc.resource_count, parameters, "accelerator count") if acc.resource_count else ""
        count_text = count_text or (str(acc.count) if acc.count else "")
        try:
            count = int(count_text) if count_text.strip() else (1 if accelerator_type else 0)
        except ValueError:
            raise ValueError(f"bad accelerator count {count_text!r}") from None
    return ResourceRequest(cpu, memory, accelerator_type if count else None, count)


@functools.lru_cache(maxsize=1)
def host_gpu_count() -> int:
    """Number of NVIDIA GPUs ``nvidia-smi -L`` lists on this host (0 when the tool is missing or fails)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        result = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if result.returncode != 0:
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))
