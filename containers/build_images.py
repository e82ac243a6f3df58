"""Build the wheelhouse and the component images, offline and content-addressed, in thin ordered layers.

Why this script exists (see DESIGN.md, "Containers"):

* **Offline, reproducible installs.** Every Python package an image holds comes from ``build/wheelhouse``,
  built on the host with the host's own pip configuration, and is installed in the image with
  ``pip install --no-index``. ``docker build`` runs with ``--network none``: nothing is downloaded during a build.
* **Dependencies low, code last.** A step image is its recipe's *dependency image* (parent + the wheels of its
  extra, ``expforge/<step>:deps-<hash>``) plus one thin *code layer* (``containers/base/code.Dockerfile``: the
  unpacked project wheel and ``kfp_config.ini``). The shared layers (``base``, ``torch-base``) hold no project
  code. So a source edit rebuilds only the code layers (seconds), and a changed extra rebuilds only the images
  whose dependency set it changes.
* **A code edit's rebuild does only what it must.** The project wheel is built with setuptools' PEP 517 hook
  in one process, unpacked once and hard-linked into every step's context; each code layer is one ``COPY`` and
  one ``LABEL`` step, several at a time; the load check of a step runs again only when its inputs changed
  (``imagebuild/loadcheck.py``); old tags go with one listing and one removal.
* **Small build contexts.** Each image is built from a staged temporary context holding just its recipe
  folder, ``expforge-stage`` and the wheels that image adds over its parent (hard links), never the repository.
* **Content-hash tags.** An image's tag is a hash of its recipe, the wheels it installs, its build arguments
  and its parent's image ID (for a step image: its dependency image's ID and the project wheel), so ``make
  images`` with nothing changed only checks that tags exist, and a tag names exactly what is inside. Each
  image is also tagged ``:latest`` (the compiler's default, ``components/_adapter.py:default_image``);
  ``build/images.json`` maps every step to its exact hash tag for the compiler.
* **One recipe per step.** ``containers/<step>/Dockerfile`` declares everything: its parent
  (``ARG BASE_IMAGE=expforge/<parent>:latest``) and what it installs (its ``expforge-stage`` line), so adding
  a step is a 5-line Dockerfile and nothing here changes. ``base`` and ``torch-base`` are shared layers, not
  steps; ``*-gpu`` folders are Cloud Build recipes and are never built locally.

The work is split by job under ``containers/imagebuild/`` (recipes, wheelhouse, fonts, plan, dockercli); this
file puts them together and is the command line. Subcommands: ``wheelhouse``, ``images [--base-image REF]
[--only NAME ...]``, ``context NAME --output DIR`` (stage a context without building, e.g. for Cloud Build).
Uses only the standard library and the ``docker`` CLI. Run it with the project's Python 3.11 (the venv).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# This file runs as a script (and is imported by path from tests and expforge.cloud.cloudbuild): its helper
# package sits next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagebuild.common import (  # noqa: E402
    BUILD,
    CONTAINERS,
    DEBOOTSTRAP_BASE,
    HASH_LEN,
    IMAGES_JSON,
    PREFIX,
    REPO,
    SHARED_LAYERS,
    SITE_PACKAGES,
    TORCH_PIN,
    UPSTREAM_BASE,
    WHEELHOUSE,
    BuildError,
    log,
    rel,
    sha256_file,
    sha256_json,
    write_atomic,
)
from imagebuild.dockercli import (  # noqa: E402
    LOAD_CHECK,
    check_step_loads,
    choose_base_image,
    docker_build,
    docker_env,
    image_id,
    image_ids,
    layer_ids,
    remove_old_images,
    require_docker,
    tag,
)
from imagebuild.fonts import font_packages, fonts_tar  # noqa: E402
from imagebuild.loadcheck import LoadCheckRecord  # noqa: E402
from imagebuild.plan import (  # noqa: E402
    CodePlan,
    Plan,
    plan_code,
    plan_image,
    recipe_files,
    stage_code_tree,
    stage_package_tree,
    staged_code_context,
    staged_context,
)
from imagebuild.recipes import (  # noqa: E402
    Recipe,
    _instructions,
    ancestry,
    discover_recipes,
    image_extras,
    merge_expforge_extras,
    parse_recipe,
    select,
)
from imagebuild.wheelhouse import build_wheelhouse, resolve_closure, wheel_manifest  # noqa: E402

_merge_expforge_extras = merge_expforge_extras  # (older name, used by tests)

__all__ = [
    "BUILD",
    "CONTAINERS",
    "DEBOOTSTRAP_BASE",
    "HASH_LEN",
    "IMAGES_JSON",
    "PREFIX",
    "REPO",
    "SHARED_LAYERS",
    "SITE_PACKAGES",
    "TORCH_PIN",
    "UPSTREAM_BASE",
    "BuildError",
    "CodePlan",
    "LoadCheckRecord",
    "Plan",
    "Recipe",
    "_instructions",
    "ancestry",
    "build_images",
    "build_wheelhouse",
    "discover_recipes",
    "font_packages",
    "fonts_tar",
    "image_extras",
    "layer_ids",
    "main",
    "parse_recipe",
    "plan_code",
    "plan_image",
    "recipe_files",
    "require_docker",
    "resolve_closure",
    "select",
    "sha256_file",
    "sha256_json",
    "stage_code_tree",
    "stage_package_tree",
    "staged_code_context",
    "staged_context",
    "wheel_manifest",
]


CODE_JOBS = 4


def build_dependency_image(plan: Plan, env: dict[str, str]) -> None:
    """Build one recipe (a shared layer, or a step's dependency image) from its staged context."""
    size = sum((WHEELHOUSE / w).stat().st_size for w in plan.wheels) + sum(
        p.stat().st_size for p in plan.extra_files.values()
    )
    log(f"building {plan.ref} from {plan.parent_ref} ({len(plan.wheels)} wheels, context {size / 1e6:.0f} MB)")
    started = time.monotonic()
    with staged_context(plan) as context:
        docker_build(context, plan.ref, name=plan.recipe.name, build_args=plan.build_args, labels=plan.labels, env=env)
    log(f"built {plan.ref} in {time.monotonic() - started:.1f}s")


def build_code_image(
    plan: CodePlan,
    env: dict[str, str],
    package_tree: Path | None = None,
    checks: LoadCheckRecord | None = None,
    deps_id: str | None = None,
) -> None:
    """Build a step image's code layer on its dependency image, then check the component loads in it.

    ``package_tree``: the project wheel already unpacked (linked into the context, not unpacked again).
    ``checks`` and ``deps_id``: the record of passed load checks; a check whose inputs are unchanged is not
    run again (imagebuild/loadcheck.py says why that gives the same answer).
    """
    started = time.monotonic()
    step = plan.recipe.step or plan.recipe.name
    with staged_code_context(plan, package_tree) as context:
        name = f"{plan.recipe.name} (code layer)"
        docker_build(context, plan.ref, name=name, build_args={"DEPS_IMAGE": plan.deps_ref}, labels={}, env=env)
        if checks is not None and deps_id is not None and checks.already_passed(deps_id, step, context / "code"):
            checked = "load check passed before with the same inputs"
        else:
            folders = check_step_loads(plan.ref, step)
            if checks is not None and deps_id is not None:
                checks.passed(deps_id, step, context / "code", folders)
            checked = "load check run"
    log(f"built {plan.ref} (code layer) in {time.monotonic() - started:.1f}s; {checked}")


def _run_parallel(jobs: int, work: Sequence[Callable[[], None]]) -> None:
    """Run the callables ``jobs`` at a time; re-raise the first error after all finished."""
    if not work:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(item) for item in work]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


def build_images(
    base_image: str | None, only: Sequence[str] | None, fonts_from: str, jobs: int = 2, keep_old: int = 1
) -> dict[str, str]:
    """Build (or find) every selected image; write build/images.json; return the map.

    Dependency images are built level by level (base, then everything FROM base, ...), ``jobs`` at a time;
    then every step's code layer, ``jobs`` at a time. Anything whose tag exists is not built again.
    """
    require_docker()
    recipes = discover_recipes()
    if "base" not in recipes:
        raise BuildError("containers/base/Dockerfile is missing")
    selected = select(recipes, only)
    manifest = build_wheelhouse(recipes)
    external = choose_base_image(base_image)
    env = docker_env()
    refs: dict[str, str] = {}  # recipe -> dependency image (shared layers: the image itself)
    ids: dict[str, str] = {}
    built = 0
    built_deps = 0
    levels: dict[int, list[Recipe]] = {}
    for recipe in selected:
        levels.setdefault(len(ancestry(recipes, recipe.name)), []).append(recipe)
    for depth in sorted(levels):
        plans: list[Plan] = []
        for recipe in levels[depth]:
            parent_ref = external if recipe.parent is None else refs[recipe.parent]
            parent_id = ids.get(recipe.parent or "") or image_id(parent_ref)
            if parent_id is None:
                raise BuildError(f"{recipe.name}: parent image {parent_ref} is not present")
            plans.append(plan_image(recipes, recipe, parent_ref, parent_id, manifest, fonts_from))
        present = image_ids([plan.ref for plan in plans])
        missing = [plan for plan in plans if present[plan.ref] is None]
        _run_parallel(jobs, [functools.partial(build_dependency_image, plan, env) for plan in missing])
        built += len(missing)
        built_deps += len(missing)
        found = image_ids([plan.ref for plan in plans])
        for plan in plans:
            if found[plan.ref] is None:
                raise BuildError(f"{plan.ref} was built but is not present")
            refs[plan.recipe.name] = plan.ref
            ids[plan.recipe.name] = found[plan.ref]  # type: ignore[assignment]

    final: dict[str, str] = {name: refs[name] for name in refs if not recipes[name].is_step}
    code_plans = [
        plan_code(recipes, recipe, refs[recipe.name], ids[recipe.name], manifest)
        for recipe in selected
        if recipe.is_step
    ]
    present = image_ids([plan.ref for plan in code_plans])
    missing_code = [plan for plan in code_plans if present[plan.ref] is None]
    if missing_code:
        checks = LoadCheckRecord(LOAD_CHECK)
        with tempfile.TemporaryDirectory(prefix="code-package-", dir=BUILD) as package_tree:
            # The project wheel is unpacked once; every step's context links these files (only kfp_config.ini
            # differs from step to step).
            stage_package_tree(missing_code[0].project_wheel, Path(package_tree) / "code")
            tree = Path(package_tree) / "code"
            work = [
                functools.partial(build_code_image, plan, env, tree, checks, ids[plan.recipe.name])
                for plan in missing_code
            ]
            try:
                # One COPY and (sometimes) a load check each: mostly waiting on the daemon, so more at a time.
                _run_parallel(max(jobs, CODE_JOBS), work)
            finally:
                current_pairs = {(ids[p.recipe.name], p.recipe.step or p.recipe.name) for p in code_plans}
                checks.save(None if only else current_pairs)
    built += len(missing_code)
    final.update({plan.recipe.name: plan.ref for plan in code_plans})

    latest = image_ids([f"{PREFIX}/{name}:latest" for name in final])
    current = image_ids(list(final.values()))
    retag: list[Callable[[], None]] = []
    for name, ref in final.items():
        if current[ref] is None:
            raise BuildError(f"{ref} was built but is not present")
        if latest[f"{PREFIX}/{name}:latest"] != current[ref]:
            retag.append(functools.partial(tag, ref, f"{PREFIX}/{name}:latest"))
    _run_parallel(CODE_JOBS, retag)  # one `docker tag` per image after an edit: a CLI start each

    images: dict[str, str] = {}
    if only and IMAGES_JSON.is_file():
        previous = json.loads(IMAGES_JSON.read_text())
        images.update({k: v for k, v in previous.items() if k in recipes and image_id(v) is not None})
    images.update(final)
    write_atomic(IMAGES_JSON, json.dumps(dict(sorted(images.items())), indent=2) + "\n")
    total = len(selected) + len(code_plans)
    log(f"{built} built, {total - built} up to date (dependency and code layers); wrote {rel(IMAGES_JSON)}")
    if built:
        in_use = {**{f"{n}#deps": r for n, r in refs.items()}, **images}
        remove_old_images(in_use, keep_old, prune_stages=built_deps > 0)
    return images


def stage_context(name: str, output: Path, fonts_from: str) -> None:
    """Copy the build context of ``name`` to ``output`` (for builders elsewhere, e.g. Cloud Build GPU images).

    Such builders build each image once: a step's context holds its code layer too (appended to the recipe),
    and a GPU recipe installs the project in the same build (its context holds the project wheel).
    """
    recipes = discover_recipes()
    if name not in recipes:
        raise BuildError(f"no containers/{name}/Dockerfile")
    manifest = build_wheelhouse(recipes)
    recipe = recipes[name]
    plan = plan_image(recipes, recipe, "<parent>", "<parent>", manifest, fonts_from, with_code=True)
    if recipe.is_gpu_recipe:
        # Starts from a CUDA PyTorch image: all wheels but torch, whose CUDA build the base image provides.
        wheels = resolve_closure(recipe.requirements, recipe.no_deps, manifest)
        plan.wheels = [w for w in wheels if not w.startswith("torch-")]
    if output.exists() and any(output.iterdir()):
        raise BuildError(f"{output} exists and is not empty")
    with staged_context(plan) as context:
        shutil.copytree(context, output, dirs_exist_ok=True)
    log(f"staged {name}'s context in {output} ({len(plan.wheels)} wheels)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; errors are one line (plus the failing command's tail) and exit status 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wheelhouse = sub.add_parser("wheelhouse", help="build build/wheelhouse (incremental)")
    wheelhouse.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    images = sub.add_parser("images", help="build the base and every component image; write build/images.json")
    images.add_argument("--base-image", help=f"external base image (default: {UPSTREAM_BASE} or {DEBOOTSTRAP_BASE})")
    images.add_argument("--only", nargs="+", metavar="NAME", help="build only these images (and their parents)")
    fonts_help = "where the font image gets its fonts: the host's installed packages, or apt in the build"
    images.add_argument("--fonts-from", choices=("context", "apt"), default="context", help=fonts_help)
    images.add_argument("--jobs", type=int, default=2, help="images built at the same time (default 2)")
    images.add_argument("--keep-old", type=int, default=1, help="superseded hash tags kept per image (default 1)")
    context = sub.add_parser("context", help="stage one image's build context into a folder (no build)")
    context.add_argument("name")
    context.add_argument("--output", type=Path, required=True)
    context.add_argument("--fonts-from", choices=("context", "apt"), default="context", help=fonts_help)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.command == "wheelhouse":
            manifest = build_wheelhouse(force=args.force)
            size = sum((WHEELHOUSE / w).stat().st_size for w in manifest)
            log(f"wheelhouse: {len(manifest)} wheels, {size / 1e6:.0f} MB in {rel(WHEELHOUSE)}")
        elif args.command == "images":
            build_images(args.base_image, args.only, args.fonts_from, args.jobs, args.keep_old)
        else:
            stage_context(args.name, args.output, args.fonts_from)
    except BuildError as exc:
        print(f"build_images: error: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
