"""What each image holds and its content hash; staging build contexts. Nothing here calls Docker.

Every step image is two images, built in order (DESIGN.md, "Containers"):

* the **dependency image** ``expforge/<step>:deps-<hash>``: the recipe's Dockerfile — its parent plus the
  wheels its extra needs beyond the parent's (never the project wheel), and anything else the recipe adds
  (the font files). It changes only when the recipe, one of those wheels or the parent changes;
* the **step image** ``expforge/<step>:<hash>``: the dependency image plus one thin last layer with the
  project's own code (the unpacked project wheel, its console script and ``/app/kfp_config.ini``), from
  ``containers/base/code.Dockerfile``. A source edit rebuilds only this layer, in about a second per image.

Shared layers (``base``, ``torch-base``) are dependency images only, tagged ``expforge/<name>:<hash>``. Tags are
hashes of everything an image is made of (recipe files, wheels and their hashes, build arguments, parent image
ID, project wheel), so a tag names exactly what is inside.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imagebuild.common import (
    BUILD,
    CODE_DOCKERFILE,
    HASH_LEN,
    REPO,
    SITE_PACKAGES,
    SOURCE_DATE_EPOCH,
    STAGE_SCRIPT,
    WHEELHOUSE,
    BuildError,
    link_or_copy,
    sha256_file,
    sha256_json,
)
from imagebuild.fonts import font_packages, fonts_tar
from imagebuild.recipes import Recipe, ancestry, image_extras
from imagebuild.wheelhouse import is_project_wheel, resolve_closure

DEPS_TAG_PREFIX = "deps-"


@dataclass
class Plan:
    """One dependency image (a recipe's Dockerfile): its context files, build arguments and content hash."""

    recipe: Recipe
    parent_ref: str
    wheels: list[str]
    build_args: dict[str, str] = field(default_factory=dict)
    extra_files: dict[str, Path] = field(default_factory=dict)  # context name -> source file
    content_hash: str = ""
    # Builders elsewhere (Cloud Build) build a step in one go: the code layer appended to the recipe.
    code_wheel: Path | None = None

    @property
    def ref(self) -> str:
        """``expforge/<step>:deps-<hash>`` for a step, ``expforge/<layer>:<hash>`` for a shared layer."""
        prefix = DEPS_TAG_PREFIX if self.recipe.is_step else ""
        return f"{self.recipe.repository}:{prefix}{self.content_hash}"

    @property
    def labels(self) -> dict[str, str]:
        """Labels of the dependency image (the step image inherits them and adds its own)."""
        return {"org.expforge.image": self.recipe.name, "org.expforge.deps-hash": self.content_hash}


@dataclass
class CodePlan:
    """A step image: its dependency image plus the thin code layer."""

    recipe: Recipe
    deps_ref: str
    project_wheel: Path
    labels: dict[str, str]
    content_hash: str = ""

    @property
    def ref(self) -> str:
        """The hash-tagged reference, e.g. ``expforge/train-sklearn:0123456789ab``."""
        return f"{self.recipe.repository}:{self.content_hash}"


def recipe_files(recipe: Recipe) -> dict[str, Path]:
    """The files of a recipe's context besides wheels: its folder, and expforge-stage when it uses it."""
    files = {p.name: p for p in sorted(recipe.folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    text = recipe.dockerfile.read_text(encoding="utf-8")
    if "expforge-stage" in text and "expforge-stage" not in files:
        files["expforge-stage"] = STAGE_SCRIPT
    return files


def cached_file_hash(path: Path) -> str:
    """SHA-256 of a large generated file, cached next to it by size and mtime."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    if sidecar.is_file():
        cached_key, _, digest = sidecar.read_text().rpartition(" ")
        if cached_key == key:
            return digest
    digest = sha256_file(path)
    sidecar.write_text(f"{key} {digest}")
    return digest


def plan_image(
    recipes: dict[str, Recipe],
    recipe: Recipe,
    parent_ref: str,
    parent_id: str,
    manifest: dict[str, str],
    fonts_from: str,
    *,
    with_project: bool = False,
    with_code: bool = False,
) -> Plan:
    """Decide the context and the content hash of one dependency image (nothing is built here).

    ``with_project`` also stages the project wheel (a recipe that installs the project itself in one build,
    e.g. the Cloud Build GPU recipe). ``with_code`` (for builders that build each image once, Cloud Build)
    appends the code layer to a step recipe's context, so one build makes the whole step image.
    """
    chain = ancestry(recipes, recipe.name)
    installed: set[str] = set()
    for ancestor in chain[:-1]:
        installed.update(resolve_closure(ancestor.requirements, ancestor.no_deps, manifest))
    wheels = [
        w
        for w in resolve_closure(recipe.requirements, recipe.no_deps, manifest)
        if w not in installed and (with_project or not is_project_wheel(w))
    ]
    plan = Plan(recipe, parent_ref, wheels, build_args={"BASE_IMAGE": parent_ref})
    if with_code and recipe.is_step:
        project = sorted(name for name in manifest if is_project_wheel(name))
        if not project:
            raise BuildError("no project wheel in the wheelhouse: run `make wheelhouse`")
        plan.code_wheel = WHEELHOUSE / project[0]
    text = recipe.dockerfile.read_text(encoding="utf-8")
    if "fonts.tar" in text:
        packages = font_packages()
        plan.extra_files["fonts.tar"] = fonts_tar(packages, empty=fonts_from == "apt")
        plan.build_args["FONTS_FROM"] = fonts_from
        plan.build_args["FONT_PACKAGES"] = " ".join(packages)
    files = {name: sha256_file(path) for name, path in recipe_files(recipe).items()}
    extra = {name: cached_file_hash(path) for name, path in plan.extra_files.items()}
    plan.content_hash = sha256_json(
        {
            "recipe": files,
            "extra": extra,
            "wheels": {w: manifest[w] for w in wheels},
            "args": plan.build_args,
            "parent": parent_id,
            "code": sha256_file(plan.code_wheel) if plan.code_wheel else None,
        }
    )[:HASH_LEN]
    return plan


def declared_requirements(pyproject: dict, extras: list[str]) -> list[str]:
    """The requirement strings ``expforge[extras]`` declares (core dependencies plus those extras), sorted.

    Stored on each step image (label ``org.expforge.requires``) so ``expforge run --dev`` can name a dependency
    the working tree declares that the image lacks (``local_runner/devmode.py`` computes the same list).
    """
    project = pyproject.get("project", {})
    reqs = set(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        reqs.update(optional.get(extra, []))
    return sorted(reqs)


def plan_code(
    recipes: dict[str, Recipe],
    recipe: Recipe,
    deps_ref: str,
    deps_id: str,
    manifest: dict[str, str],
    wheelhouse: Path = WHEELHOUSE,
) -> CodePlan:
    """The step image on top of a dependency image: its labels and content hash (the project wheel is the
    one ``manifest`` names, in ``wheelhouse``)."""
    if recipe.step is None:
        raise BuildError(f"containers/{recipe.name}/Dockerfile: a step image needs `expforge-stage --step NAME`")
    wheel = next((name for name in manifest if is_project_wheel(name)), None)
    if wheel is None:
        raise BuildError("no project wheel in the wheelhouse: run `make wheelhouse`")
    extras = image_extras(recipes, recipe.name)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    labels = {
        "org.expforge.image": recipe.name,
        "org.expforge.step": recipe.step,
        "org.expforge.site-packages": SITE_PACKAGES,
        "org.expforge.extras": ",".join(extras),
        "org.expforge.requires": json.dumps(declared_requirements(pyproject, extras)),
    }
    plan = CodePlan(recipe, deps_ref, wheelhouse / wheel, labels)
    plan.content_hash = sha256_json(
        {
            "deps": deps_id,
            "dockerfile": sha256_file(CODE_DOCKERFILE),
            "project": manifest[wheel],
            "labels": labels,
            "layout": CODE_LAYOUT_VERSION,
        }
    )[:HASH_LEN]
    labels["org.expforge.hash"] = plan.content_hash
    return plan


# --- contexts -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_context(plan: Plan) -> Iterator[Path]:
    """A temporary build context: recipe files, expforge-stage, wheels/ and extra files (hard links)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"context-{plan.recipe.name}-", dir=BUILD) as tmp:
        root = Path(tmp)
        for name, source in {**recipe_files(plan.recipe), **plan.extra_files}.items():
            link_or_copy(source, root / name)
        (root / "wheels").mkdir()
        for wheel in plan.wheels:
            link_or_copy(WHEELHOUSE / wheel, root / "wheels" / wheel)
        if plan.code_wheel is not None:
            stage_code_tree(plan.code_wheel, plan.recipe.step or plan.recipe.name, root / "code")
            dockerfile = root / "Dockerfile"
            text = dockerfile.read_text(encoding="utf-8")
            dockerfile.unlink()  # a hard link to the recipe: never write through it
            dockerfile.write_text(text.rstrip("\n") + "\n" + CODE_LAYER_SUFFIX, encoding="utf-8")
        yield root


# What a one-build context (Cloud Build) appends to a step recipe: the code layer of code.Dockerfile.
CODE_LAYER_SUFFIX = (
    "# the project's own code, the thin last layer (containers/base/code.Dockerfile)\nCOPY --chown=0:0 code/ /\n"
)
# Bumped when the staged layout of the code layer changes (part of the step images' hash).
CODE_LAYOUT_VERSION = 2  # 2: the labels in one LABEL instruction
_CONSOLE_SCRIPT = """#!/opt/venv/bin/python3
import sys

from {module} import {function}

if __name__ == "__main__":
    sys.exit({function}())
"""


def _fixed(path: Path, mode: int) -> None:
    path.chmod(mode)
    os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


def stage_package_tree(wheel: Path, root: Path) -> None:
    """Lay out the step-independent part of the code layer under ``root``, as ``pip install --no-deps`` would.

    The wheel is unpacked on the host into ``root/opt/venv/lib/python3.11/site-packages`` (a pure-Python
    wheel: unpacking is what pip does) and its console scripts go to ``root/opt/venv/bin``. Modes and times
    are fixed, so the same wheel stages the same bytes. No container runs for this: the layer is one ``COPY``.
    ``make images`` stages this once per build and links it into every step's context.
    """
    site = root / SITE_PACKAGES.lstrip("/")
    site.mkdir(parents=True)
    entry_points = ""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise BuildError(f"{wheel.name}: unsafe path {member.filename!r} in the project wheel")
            if member.is_dir():
                continue
            target = site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
            _fixed(target, 0o644)
            if name.name == "entry_points.txt" and name.parent.name.endswith(".dist-info"):
                entry_points = target.read_text(encoding="utf-8")
            if name.name == "RECORD" and name.parent.name.endswith(".dist-info"):
                installer = target.with_name("INSTALLER")
                installer.write_text("expforge-build-images\n", encoding="utf-8")
                _fixed(installer, 0o644)
    bin_dir = root / "opt" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    section = False
    for line in entry_points.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line == "[console_scripts]"
        elif section and "=" in line:
            script, _, target_spec = (part.strip() for part in line.partition("="))
            module_path, _, function = target_spec.partition(":")
            path = bin_dir / script
            path.write_text(_CONSOLE_SCRIPT.format(module=module_path, function=function), encoding="utf-8")
            _fixed(path, 0o755)
    _fix_directories(root)


def _fix_directories(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        _fixed(directory, 0o755)


def add_step_config(root: Path, step: str) -> None:
    """The step-specific part of the code layer: ``root/app/kfp_config.ini``, mapping the step's function to
    its module (the KFP executor's lookup), after checking that module is in the staged package."""
    module_name = step.replace("-", "_")
    module = root / SITE_PACKAGES.lstrip("/") / "expforge" / "components" / f"{module_name}.py"
    if not module.is_file():
        raise BuildError(
            f"no component module for step '{step}' "
            f"(expected expforge/components/{module_name}.py in the project wheel)"
        )
    app = root / "app"
    app.mkdir()
    ini = app / "kfp_config.ini"
    ini.write_text(f"[Components]\n{module_name} = {SITE_PACKAGES}/expforge/components/{module_name}.py\n\n")
    _fixed(ini, 0o644)
    _fixed(app, 0o755)


def stage_code_tree(wheel: Path, step: str, root: Path) -> None:
    """The whole code layer of one step under ``root``: the unpacked project wheel and its kfp_config.ini."""
    stage_package_tree(wheel, root)
    add_step_config(root, step)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of ``source`` into a new ``target`` (same modes and times: same inodes)."""
    shutil.copytree(source, target, copy_function=os.link)
    _fix_directories(target)


def code_label_line(labels: dict[str, str]) -> str:
    """The step image's labels as one Dockerfile ``LABEL`` instruction.

    Why not ``docker build --label``: the legacy builder turns each ``--label`` into a step of its own (a
    container created and committed per label, six per image); one instruction is one step.
    """
    words = []
    for key, value in sorted(labels.items()):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", key) or any(ord(c) < 32 for c in value):
            raise BuildError(f"label {key!r}: only [A-Za-z0-9._-] keys and printable values fit a LABEL line")
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        words.append(f'{key}="{quoted}"')
    return "LABEL " + " ".join(words) + "\n"


@contextlib.contextmanager
def staged_code_context(plan: CodePlan, package_tree: Path | None = None) -> Iterator[Path]:
    """A temporary build context for the code layer: ``Dockerfile`` (code.Dockerfile plus the image's
    ``LABEL`` line) and ``code/``. ``package_tree``: a tree :func:`stage_package_tree` made from
    ``plan.project_wheel``, linked in instead of unpacking the wheel again."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"code-{plan.recipe.name}-", dir=BUILD) as tmp:
        root = Path(tmp)
        text = CODE_DOCKERFILE.read_text(encoding="utf-8").rstrip("\n") + "\n"
        (root / "Dockerfile").write_text(text + code_label_line(plan.labels), encoding="utf-8")
        if package_tree is None:
            stage_package_tree(plan.project_wheel, root / "code")
        else:
            _link_tree(package_tree, root / "code")
        add_step_config(root / "code", plan.recipe.step or plan.recipe.name)
        yield root
