"""Resource requests of a task (``set_cpu_limit``, ``set_memory_limit``, ``set_accelerator_*``), the host's
capacity, and admission of tasks against it.

The spec states limits as Kubernetes quantities (``"500m"`` CPUs, ``"512M"``/``"1Gi"`` memory); Docker wants
nano-CPUs and bytes. Accelerators become a Docker GPU device request; whether this host has a GPU at all is
decided once, by asking ``nvidia-smi``.

Admission (:class:`Admission`): a task attempt starts only when its CPU, memory and GPU requests fit in what
the host has left, so I/O-bound fan-outs run wide and CPU-bound tasks do not oversubscribe the cores. A task
without a request counts as :data:`DEFAULT_CPU_REQUEST` CPUs and :data:`DEFAULT_MEMORY_REQUEST` bytes (small:
most unannotated steps read and write files). ``--max-parallel`` stays an upper bound on attempts at once.
Each task is told a thread count matching its CPU share (:func:`thread_env`) instead of the whole machine.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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


# --- admission ----------------------------------------------------------------------------------------------

# What a task without a CPU/memory request counts as (documented in the README and the module docstring).
DEFAULT_CPU_REQUEST = 0.5
DEFAULT_MEMORY_REQUEST = 512 * 2**20
# Default upper bound on attempts at once: resources are the real limit; this only caps runaway fan-outs of
# tasks that request next to nothing.
PARALLEL_PER_CORE = 4
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_EPSILON = 1e-9


@dataclass(frozen=True)
class HostCapacity:
    """What tasks may use on this host at once: CPUs, memory bytes and GPUs."""

    cpus: float
    memory: int
    gpus: int = 0

    def describe(self) -> str:
        """``2 CPUs, 23.4 GiB memory, 0 GPUs``."""
        return f"{self.cpus:g} CPUs, {self.memory / 2**30:.1f} GiB memory, {self.gpus} GPU(s)"


def _cgroup_value(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def host_cpus() -> float:
    """CPUs this process may use: the affinity mask, lowered by a cgroup v2 CPU quota (containers, CI)."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cpus = float(os.cpu_count() or 1)
    quota = _cgroup_value("/sys/fs/cgroup/cpu.max")
    if quota and not quota.startswith("max"):
        limit, _, period = quota.partition(" ")
        with contextlib.suppress(ValueError, ZeroDivisionError):
            cpus = min(cpus, float(limit) / float(period or 100000))
    return max(1.0, cpus)


def host_memory() -> int:
    """Bytes of memory on this host (``MemTotal``), lowered by a cgroup v2 memory limit."""
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    if not total:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_value("/sys/fs/cgroup/memory.max")
    if limit and limit.isdigit():
        total = min(total, int(limit)) if total else int(limit)
    return total or 2**62


def host_capacity(gpus: int = 0) -> HostCapacity:
    """This host's capacity (``gpus``: what the caller detected, :func:`host_gpu_count`)."""
    return HostCapacity(host_cpus(), host_memory(), gpus)


def default_max_parallel(capacity: HostCapacity | None = None) -> int:
    """The default upper bound on attempts at once (``--max-parallel`` when not given)."""
    cpus = (capacity or host_capacity()).cpus
    return max(1, int(cpus * PARALLEL_PER_CORE))


@dataclass(frozen=True)
class Demand:
    """What an attempt takes from the host while it runs (requests, or the defaults for what is unset)."""

    cpus: float
    memory: int
    gpus: int

    @classmethod
    def of(cls, request: ResourceRequest) -> Demand:
        """A request's demand; unset CPU/memory count as the documented defaults."""
        cpus = request.cpu_limit if request.cpu_limit is not None else DEFAULT_CPU_REQUEST
        memory = request.memory_limit if request.memory_limit is not None else DEFAULT_MEMORY_REQUEST
        return cls(cpus, memory, request.accelerator_count)


def exceeds_host(request: ResourceRequest, capacity: HostCapacity) -> str | None:
    """Why ``request`` can never run on this host (more than the whole host), or ``None`` when it fits."""
    demand = Demand.of(request)
    problems = []
    if demand.cpus > capacity.cpus + _EPSILON:
        problems.append(f"cpu={demand.cpus:g} but this host has {capacity.cpus:g} CPUs")
    if demand.memory > capacity.memory:
        problems.append(f"memory={demand.memory / 2**30:.1f} GiB but this host has {capacity.memory / 2**30:.1f} GiB")
    return "; ".join(problems) or None


def thread_count(request: ResourceRequest) -> int:
    """Threads a task should start: its CPU request rounded down (at least 1); the default request gives 1."""
    cpus = request.cpu_limit if request.cpu_limit is not None else DEFAULT_CPU_REQUEST
    return max(1, math.floor(cpus + _EPSILON))


def thread_env(request: ResourceRequest) -> dict[str, str]:
    """``OMP_NUM_THREADS`` (which torch and the trainers read), MKL/OpenBLAS/numexpr likewise, for one task.

    A CPU quota does not shrink the cores a process sees, and numerical libraries that start one thread per
    visible core run far slower when several tasks share the machine; so each task is told its share.
    """
    threads = str(thread_count(request))
    return dict.fromkeys(THREAD_VARIABLES, threads)


class Admission:
    """Admits task attempts in arrival order while their demands fit in what the host has left.

    Strictly first come, first served: a large task at the head of the queue is never overtaken by later small
    ones (no starvation, and the order is the order tasks became ready). ``max_parallel`` caps attempts at once.
    A demand larger than the whole host is admitted alone (when nothing else runs) rather than never; the run's
    preflight rejects such static requests before anything starts.
    """

    def __init__(self, max_parallel: int, capacity: HostCapacity) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self.max_parallel = max_parallel
        self.capacity = capacity
        self._cond = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()
        self._waiting: dict[int, tuple[str, Demand]] = {}
        self._running: dict[int, tuple[str, Demand]] = {}
        self._tickets = 0

    def _fits(self, demand: Demand) -> bool:
        if not self._running:
            return True
        if len(self._running) >= self.max_parallel:
            return False
        cpus = sum(d.cpus for _, d in self._running.values()) + demand.cpus
        memory = sum(d.memory for _, d in self._running.values()) + demand.memory
        gpus = sum(d.gpus for _, d in self._running.values()) + demand.gpus
        return (
            cpus <= self.capacity.cpus + _EPSILON
            and memory <= self.capacity.memory
            and (demand.gpus == 0 or gpus <= self.capacity.gpus)
        )

    def _dispatch(self) -> None:
        """Move attempts from the head of the queue to running while they fit (caller holds the lock).

        Done by whoever changes the state (an arrival, a release), so every state change is atomic: the
        snapshot never shows an attempt that may run but has not been admitted yet.
        """
        while self._queue:
            ticket = self._queue[0]
            key, demand = self._waiting[ticket]
            if not self._fits(demand):
                break
            self._queue.popleft()
            del self._waiting[ticket]
            self._running[ticket] = (key, demand)
        self._cond.notify_all()

    @contextlib.contextmanager
    def admit(self, key: str, request: ResourceRequest) -> Iterator[None]:
        """Block until this attempt may run; hold its share while the ``with`` body runs."""
        with self._cond:
            ticket = self._tickets
            self._tickets += 1
            self._queue.append(ticket)
            self._waiting[ticket] = (key, Demand.of(request))
            self._dispatch()
            self._cond.wait_for(lambda: ticket in self._running)
        try:
            yield
        finally:
            with self._cond:
                del self._running[ticket]
                self._dispatch()

    def snapshot(self) -> tuple[list[str], list[str]]:
        """``(running keys in admission order, waiting keys in queue order)``."""
        with self._cond:
            return [k for _, (k, _) in sorted(self._running.items())], [self._waiting[t][0] for t in self._queue]

    def wait_until(self, predicate: Callable[[list[str], list[str]], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(running, waiting)`` holds (or the timeout passes); for observers and tests."""
        with self._cond:
            return self._cond.wait_for(
                lambda: predicate(
                    [k for _, (k, _) in sorted(self._running.items())], [self._waiting[t][0] for t in self._queue]
                ),
                timeout,
            )


def check_requests_fit(
    executors: Mapping[str, ContainerSpec], parameters: Mapping[str, Any], capacity: HostCapacity
) -> None:
    """Before a run starts: fail with one line for any task whose request exceeds the whole host.

    ``executors`` maps executor labels (``exec-train``) to containers. Quantities set from pipeline parameters
    (``{{$.inputs.parameters['pipelinechannel--cpu']}}``) are resolved from the run's parameters; one that
    cannot be resolved yet is checked when its task starts.
    """
    from expforge.errors import ExpforgeError

    known = {**parameters, **{f"pipelinechannel--{name}": value for name, value in parameters.items()}}
    problems = []
    for label, container in sorted(executors.items()):
        try:
            request = resource_request(container, known)
        except (UnresolvedResource, ValueError):
            continue
        problem = exceeds_host(request, capacity)
        if problem:
            problems.append(f"task {label.removeprefix('exec-')} requests {problem}")
    if problems:
        raise ExpforgeError(
            f"{'; '.join(problems)} — lower its set_cpu_limit/set_memory_limit (or the pipeline parameter behind "
            "it) or run on a bigger machine"
        )
