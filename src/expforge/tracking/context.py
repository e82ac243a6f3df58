"""Provenance of a run, captured where it runs: git state, command line, Python, installed packages, device.

Why: a number on a leaderboard is only worth something if the run can be reproduced, so every run row carries
the code version (commit and the uncommitted diff), the exact environment (``pip freeze``) and the hardware.
Inside a component image there is no git checkout: then ``EXPFORGE_GIT_COMMIT`` (set at compile time or by the
local runner) stands in for it. Nothing here needs torch or a GPU library: device details come from torch only
when the caller already imported it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_DIFF_BYTES = 256 * 1024


@dataclass(frozen=True)
class GitState:
    """The code version a run used; all ``None`` outside a git checkout."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff: str | None = None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False, errors="replace"
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(cwd: Path | str | None = None, env: Mapping[str, str] | None = None) -> GitState:
    """Commit, branch, dirty flag and uncommitted diff (tracked files, capped at 256 KiB) of ``cwd``'s repo.

    Falls back to ``EXPFORGE_GIT_COMMIT`` / ``EXPFORGE_GIT_DIRTY`` when there is no repository (images).
    """
    env = os.environ if env is None else env
    where = Path(cwd or os.getcwd())
    commit = _git(["rev-parse", "HEAD"], where) if shutil.which("git") else None
    if commit is None:
        fallback = env.get("EXPFORGE_GIT_COMMIT") or None
        dirty_text = env.get("EXPFORGE_GIT_DIRTY")
        return GitState(commit=fallback, dirty=None if dirty_text is None else dirty_text.lower() in ("1", "true"))
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], where) or "").strip() or None
    diff = _git(["diff", "HEAD", "--no-color", "--no-ext-diff"], where) or ""
    if len(diff.encode()) > MAX_DIFF_BYTES:
        diff = diff.encode()[:MAX_DIFF_BYTES].decode(errors="ignore") + "\n[diff truncated at 256 KiB]\n"
    return GitState(commit=commit.strip(), branch=branch, dirty=bool(diff), diff=diff or None)


def python_version() -> str:
    """``CPython 3.11.7 (main, ...)`` — implementation plus the full version string."""
    return f"{platform.python_implementation()} {sys.version.splitlines()[0]}"


@functools.cache
def pip_freeze() -> tuple[str, ...]:
    """``name==version`` of every installed distribution, sorted, like ``pip freeze`` (no subprocess).

    Read from the names of the ``*.dist-info``/``*.egg-info`` directories on ``sys.path`` (the first one on the
    path wins, as for imports): parsing every METADATA file costs half a second, the directory names nothing.
    Cached per process: the environment does not change during a run.
    """
    seen: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            project, _, version = stem.partition("-")
            version = version.split("-py")[0]
            key = project.lower().replace("_", "-").replace(".", "-")
            if project and version and key not in seen:
                seen[key] = f"{project}=={version}"
    return tuple(seen[key] for key in sorted(seen))


def _gpus_from_nvidia_smi() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def device_info() -> dict[str, Any]:
    """Host, CPU count, memory and GPUs (torch's view when torch is already imported, else ``nvidia-smi``)."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError):  # not Linux
        info["cpus_available"] = len(os.sched_getaffinity(0))
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_bytes"] = int(pages * page_size)
    except (ValueError, OSError, AttributeError):
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = getattr(torch, "__version__", None)
        try:
            if torch.cuda.is_available():
                info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                info["cuda"] = torch.version.cuda
        except Exception:  # noqa: BLE001 - a broken CUDA setup must not break tracking
            pass
    if "gpus" not in info:
        gpus = _gpus_from_nvidia_smi()
        if gpus:
            info["gpus"] = gpus
    return info


@dataclass(frozen=True)
class RunContext:
    """Everything :func:`capture` collects, ready to spread into a :class:`~expforge.tracking.base.RunStart`."""

    git: GitState
    command: list[str] = field(default_factory=list)
    python: str = ""
    pip_freeze: list[str] = field(default_factory=list)
    device: dict[str, Any] = field(default_factory=dict)

    def start_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``RunStart``."""
        return {
            "git_commit": self.git.commit,
            "git_branch": self.git.branch,
            "git_dirty": self.git.dirty,
            "git_diff": self.git.diff,
            "command": list(self.command),
            "python": self.python,
            "pip_freeze": list(self.pip_freeze),
            "device": dict(self.device),
        }


def capture(cwd: Path | str | None = None, env: Mapping[str, str] | None = None) -> RunContext:
    """Provenance of the current process."""
    return RunContext(
        git=git_state(cwd, env),
        command=[sys.executable, *sys.argv],
        python=python_version(),
        pip_freeze=list(pip_freeze()),
        device=device_info(),
    )
