"""Where training runs: device choice, seeding, determinism, mixed precision and CPU threads.

Shared by every PyTorch trainer (digit CNN, Hyperband trials, the text language model), so "CUDA when
present, else CPU; AMP on GPU; deterministic on CPU" is decided in one place. Torch is imported inside the
functions: importing this module is cheap and works where torch is absent.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from expforge.errors import ExpforgeError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")


def available_cpus() -> int:
    """CPUs this process may use (the affinity mask honours `docker --cpuset-cpus` and taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """Threads for CPU training: ``OMP_NUM_THREADS`` when set (e.g. one per parallel test worker), else every
    CPU this process may use. Oversubscribing cores makes small models many times slower, not faster."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return min(int(configured), available_cpus())
    return available_cpus()


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a clear error."""
    import torch

    if requested not in DEVICE_CHOICES:
        raise ExpforgeError(f"--device: unknown device {requested!r}; expected one of {', '.join(DEVICE_CHOICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ExpforgeError("--device: cuda was requested but torch sees no CUDA GPU; use --device auto or cpu")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        torch.set_num_threads(cpu_threads())
    return torch.device(requested)


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed Python, NumPy and torch; on CPU also ask torch for deterministic kernels (same seed, same weights)."""
    import numpy as np
    import torch

    if seed < 0:
        raise ExpforgeError(f"--seed: {seed} is negative; expected an integer ≥ 0")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=False)
        # Deterministic mode also fills every fresh tensor with NaN/max values, a debugging aid against reading
        # uninitialised memory that no kernel used here does. The fills showed as 13% of a CNN training
        # step on CPU in torch.profiler.
        # A property of a module subclass that torch installs at import time, hence invisible to type checkers.
        setattr(torch.utils.deterministic, "fill_uninitialized_memory", False)  # noqa: B010
    else:
        # cuDNN autotuning picks the fastest kernels; bit-exactness on GPU is not promised. Deterministic mode
        # must be off (an earlier CPU run in the same process may have turned it on): cuBLAS refuses otherwise.
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16), read from ``/proc/cpuinfo``.

    Elsewhere torch emulates bfloat16 on CPU, which is slower than float32, so CPU autocast is only worth it here.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def cpu_autocast_used(device: torch.device, cpu: bool) -> bool:
    """bfloat16 autocast on CPU: asked for (``cpu``), on a CPU device, with native bfloat16 units."""
    return cpu and device.type == "cpu" and cpu_has_bf16_units()


def autocast(
    device: torch.device, enabled: bool = True, *, cpu: bool = False
) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on GPU (bfloat16 where supported, else float16). On CPU full precision, unless ``cpu``
    asks for bfloat16 and the CPU has native bfloat16 units (``cpu_autocast_used``)."""
    import torch

    if device.type == "cpu" and cpu_autocast_used(device, cpu):
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU: oneDNN's convolution, batch-norm and pooling kernels work in NHWC, so an NCHW model
    pays a layout conversion around every layer."""
    import torch

    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def place_model(model: ModuleT, device: torch.device) -> ModuleT:
    """``model`` on ``device`` in that device's :func:`memory_format` (4-D weights channels-last on CPU)."""
    # ``Module.to`` accepts ``memory_format`` (its docstring and code), but torch's typed overloads omit it.
    move: Callable[..., ModuleT] = model.to
    return move(device, memory_format=memory_format(device))


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    """float16 autocast needs loss scaling; bfloat16 and CPU do not."""
    import torch

    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()


def describe_device(device: torch.device) -> dict[str, Any]:
    """What a run record keeps about the hardware: device, GPU name, CUDA/torch versions, CPU threads."""
    import torch

    info: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_count"] = torch.cuda.device_count()
    return info


@contextlib.contextmanager
def inference_mode() -> Iterator[None]:
    """``torch.inference_mode`` without importing torch at module import time."""
    import torch

    with torch.inference_mode():
        yield
