"""Reading the image recipes: ``containers/<name>/Dockerfile`` declares its parent and what it installs.

A recipe names its parent with ``ARG BASE_IMAGE=expforge/<parent>:latest`` and its packages (and the KFP step
it runs) on its ``expforge-stage`` line, so adding a step is a 5-line Dockerfile and no build code changes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagebuild.common import CONTAINERS, GPU_SUFFIX, PREFIX, SHARED_LAYERS, BuildError, rel


@dataclass(frozen=True)
class Recipe:
    """One ``containers/<name>/Dockerfile`` and what it declares."""

    name: str
    folder: Path
    parent: str | None  # another recipe's name, or None when FROM is an external base image
    requirements: tuple[str, ...]  # the expforge-stage requirements (with dependencies)
    no_deps: tuple[str, ...]  # the expforge-stage requirements after --no-deps
    step: str | None  # the --step of expforge-stage (the KFP component this image runs)

    @property
    def dockerfile(self) -> Path:
        """The recipe's Dockerfile."""
        return self.folder / "Dockerfile"

    @property
    def is_gpu_recipe(self) -> bool:
        """Cloud Build recipes (CUDA base images): never built locally."""
        return self.name.endswith(GPU_SUFFIX)

    @property
    def is_step(self) -> bool:
        """A component image (as opposed to a shared layer or a GPU recipe)."""
        return self.name not in SHARED_LAYERS and not self.is_gpu_recipe

    @property
    def repository(self) -> str:
        """Image repository name, e.g. ``expforge/train-sklearn``."""
        return f"{PREFIX}/{self.name}"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    return result


def parse_recipe(folder: Path) -> Recipe:
    """Read a recipe's parent (``ARG BASE_IMAGE=...``) and its ``expforge-stage`` line from its Dockerfile."""
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(f"no Dockerfile for {folder.name!r}: expected {rel(dockerfile)}")
    instructions = _instructions(dockerfile.read_text(encoding="utf-8"))
    parent: str | None = None
    base_arg = None
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and rest.split("=", 1)[0] in ("BASE_IMAGE", "CUDA_BASE"):
            base_arg = rest.partition("=")[2].strip().strip('"')
    if base_arg is None:
        raise BuildError(f"{rel(dockerfile)}: needs `ARG BASE_IMAGE=...` before its first FROM")
    match = re.fullmatch(rf"{PREFIX}/([a-z0-9-]+):latest", base_arg)
    if match:
        parent = match.group(1)
    requirements: list[str] = []
    no_deps: list[str] = []
    step: str | None = None
    for keyword, rest in instructions:
        if keyword != "RUN" or "expforge-stage" not in rest:
            continue
        words = shlex.split(rest.split("expforge-stage", 1)[1].split("&&")[0])
        target = requirements
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--step":
                step = words[i + 1]
                i += 2
                continue
            if word == "--no-deps":
                target = no_deps
            elif not word.startswith("-"):
                target.append(word)
            i += 1
    return Recipe(folder.name, folder, parent, tuple(requirements), tuple(no_deps), step)


def discover_recipes() -> dict[str, Recipe]:
    """Every ``containers/<name>/Dockerfile``, by name."""
    return {p.parent.name: parse_recipe(p.parent) for p in sorted(CONTAINERS.glob("*/Dockerfile"))}


def ancestry(recipes: dict[str, Recipe], name: str) -> list[Recipe]:
    """The recipe and its local parents, root first (``base``, ``torch-base``, ``train-torch``)."""
    chain: list[Recipe] = []
    current: str | None = name
    while current is not None:
        if current not in recipes:
            raise BuildError(f"{name}: parent image {PREFIX}/{current} has no containers/{current}/Dockerfile")
        if any(r.name == current for r in chain):
            raise BuildError(f"{name}: parent images form a cycle")
        chain.append(recipes[current])
        current = recipes[current].parent
    return chain[::-1]


def select(recipes: dict[str, Recipe], only: Sequence[str] | None) -> list[Recipe]:
    """The recipes to build, parents first: the steps (or ``only``) and every image they start FROM."""
    if only:
        unknown = [name for name in only if name not in recipes]
        if unknown:
            known = ", ".join(sorted(recipes))
            raise BuildError(f"no containers/<name>/Dockerfile for {', '.join(unknown)} (known: {known})")
        gpu = [name for name in only if recipes[name].is_gpu_recipe]
        if gpu:
            raise BuildError(f"{', '.join(gpu)}: GPU recipes are built by Cloud Build, not locally")
        wanted = list(only)
    else:
        wanted = [r.name for r in recipes.values() if r.is_step]
    ordered: list[Recipe] = []
    for name in ["base", *wanted]:
        for recipe in ancestry(recipes, name):
            if recipe not in ordered:
                ordered.append(recipe)
    return ordered


def merge_expforge_extras(reqs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split requirements into the extras of ``expforge[...]`` and the other requirements."""
    extras: set[str] = set()
    others: list[str] = []
    for req in reqs:
        match = re.fullmatch(r"expforge(?:\[([a-z0-9_,-]*)\])?", req.replace(" ", ""))
        if match:
            extras.update(e for e in (match.group(1) or "").split(",") if e)
        else:
            others.append(req)
    return sorted(extras), others


def image_extras(recipes: dict[str, Recipe], name: str) -> list[str]:
    """The expforge extras an image holds: its own and every parent's (``base`` brings ``gcp``)."""
    extras: set[str] = set()
    for recipe in ancestry(recipes, name):
        extras.update(merge_expforge_extras(recipe.requirements)[0])
    return sorted(extras)
