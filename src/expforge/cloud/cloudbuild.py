"""Cloud Build helpers: stage every image's context, write the build script and the image map; upload templates.

Why a helper instead of one ``cloudbuild.yaml`` step per image: images are discovered from
``containers/*/Dockerfile`` (a new component is a new folder, nothing else changes), their parents come from
each recipe's ``ARG BASE_IMAGE=expforge/<parent>:latest``, and their contexts and build arguments from
``containers/build_images.py`` — the same code ``make images`` uses, so Cloud Build builds exactly what a
laptop builds, only tagged with the commit SHA and pushed to Artifact Registry.

``python -m expforge.cloud.cloudbuild stage --registry REG --tag SHA --output build/cloudbuild`` writes
``contexts/<image>/``, ``build.sh`` (docker build + push, parents first) and ``images.json`` (step → pushed
image, for ``expforge compile --images``). ``upload DIR gs://BUCKET/PREFIX/`` copies compiled templates.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from expforge.errors import ExpforgeError

DEFAULT_BASE_IMAGE = "python:3.11-slim"


@dataclass(frozen=True)
class ImageBuild:
    """One image Cloud Build builds: its recipe, parent, pushed reference and build arguments."""

    name: str
    parent: str | None  # another image of this build, or None (an external base)
    ref: str
    step: str | None  # the KFP component it runs (None for shared layers)
    gpu: bool
    build_args: dict[str, str] = field(default_factory=dict)


def load_build_images(repo: Path) -> ModuleType:
    """Import ``containers/build_images.py`` of ``repo`` (a script, not a package module)."""
    path = repo / "containers" / "build_images.py"
    if not path.is_file():
        raise ExpforgeError(f"--repo: {path} not found (run from the repository root)")
    spec = importlib.util.spec_from_file_location("expforge_build_images", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def check_registry(registry: str) -> str:
    """``REGION-docker.pkg.dev/PROJECT/REPOSITORY`` (or any host/path); no tag, no trailing slash."""
    registry = registry.strip().rstrip("/")
    if not registry or "/" not in registry or ":" in registry.split("/", 1)[1] or " " in registry:
        raise ExpforgeError(f"--registry: {registry!r}: expected HOST/PROJECT/REPOSITORY without a tag")
    return registry


def plan_builds(
    build_images: ModuleType, *, registry: str, tag: str, base_image: str, cuda_base: str | None
) -> list[ImageBuild]:
    """Every ``containers/*/Dockerfile`` as an :class:`ImageBuild`, parents before children, GPU recipes last.

    Build arguments here are the ones that depend on this build (the parent's pushed reference, the CUDA
    base); :func:`stage` adds the recipe's own (fonts) from ``build_images.plan_image``.
    """
    registry = check_registry(registry)
    if not tag.strip() or "/" in tag or ":" in tag:
        raise ExpforgeError(f"--tag: {tag!r}: expected an image tag such as the commit SHA")
    recipes = build_images.discover_recipes()
    if "base" not in recipes:
        raise ExpforgeError("containers/base/Dockerfile is missing")
    order: list[str] = []
    for name in sorted(recipes, key=lambda n: (recipes[n].is_gpu_recipe, len(build_images.ancestry(recipes, n)), n)):
        for recipe in build_images.ancestry(recipes, name):
            if recipe.name not in order:
                order.append(recipe.name)
    builds: list[ImageBuild] = []
    for name in order:
        recipe = recipes[name]
        ref = f"{registry}/{name}:{tag}"
        if recipe.is_gpu_recipe:
            args = {"CUDA_BASE": cuda_base} if cuda_base else {}
        elif recipe.parent is None:
            args = {"BASE_IMAGE": base_image}
        else:
            args = {"BASE_IMAGE": f"{registry}/{recipe.parent}:{tag}"}
        builds.append(ImageBuild(name, recipe.parent, ref, recipe.step, recipe.is_gpu_recipe, args))
    return builds


def image_map(builds: Sequence[ImageBuild], *, gpu_trainer: bool = False) -> dict[str, str]:
    """Step → pushed image for the compiler; with ``gpu_trainer`` a GPU recipe replaces its step's CPU image."""
    images = {b.step: b.ref for b in builds if b.step and not b.gpu}
    if gpu_trainer:
        images.update({b.step: b.ref for b in builds if b.step and b.gpu})
    return dict(sorted(images.items()))


def build_script(builds: Sequence[ImageBuild], contexts: Path) -> str:
    """A POSIX shell script: ``docker build`` then ``docker push`` of every image, parents first.

    ``--network none`` as in ``make images``: every package comes from the staged wheels. ``PUSH=0`` builds only.
    """
    lines = [
        "#!/bin/sh",
        "# Written by `python -m expforge.cloud.cloudbuild stage`; run by cloudbuild.yaml.",
        "set -eu",
    ]
    for build in builds:
        command = ["docker", "build", "--network", "none", "--tag", build.ref]
        for key, value in build.build_args.items():
            command += ["--build-arg", f"{key}={value}"]
        command += ["--label", f"org.expforge.image={build.name}"]
        if build.step:
            command += ["--label", f"org.expforge.step={build.step}"]
        command.append(str(contexts / build.name))
        lines.append(f"echo {shlex.quote(f'== {build.name} -> {build.ref}')}")
        lines.append(shlex.join(command))
        lines.append(f'if [ "${{PUSH:-1}}" = 1 ]; then docker push {shlex.quote(build.ref)}; fi')
    return "\n".join(lines) + "\n"


def stage(
    repo: Path,
    output: Path,
    *,
    registry: str,
    tag: str,
    base_image: str = DEFAULT_BASE_IMAGE,
    cuda_base: str | None = None,
    fonts_from: str = "context",
    gpu_trainer: bool = False,
    only: Sequence[str] | None = None,
) -> list[ImageBuild]:
    """Stage contexts under ``output/contexts``, write ``output/build.sh`` and ``output/images.json``."""
    build_images = load_build_images(repo)
    try:
        return _stage(build_images, output, registry, tag, base_image, cuda_base, fonts_from, gpu_trainer, only)
    except build_images.BuildError as exc:
        raise ExpforgeError(str(exc)) from None


def _stage(
    build_images: ModuleType,
    output: Path,
    registry: str,
    tag: str,
    base_image: str,
    cuda_base: str | None,
    fonts_from: str,
    gpu_trainer: bool,
    only: Sequence[str] | None,
) -> list[ImageBuild]:
    builds = plan_builds(build_images, registry=registry, tag=tag, base_image=base_image, cuda_base=cuda_base)
    if only:
        unknown = sorted(set(only) - {b.name for b in builds})
        if unknown:
            raise ExpforgeError(f"--only: no containers/<name>/Dockerfile for {', '.join(unknown)}")
        wanted = {r.name for name in only for r in build_images.ancestry(build_images.discover_recipes(), name)}
        builds = [b for b in builds if b.name in wanted]
    if output.exists() and any(output.iterdir()):
        raise ExpforgeError(f"--output: {output} exists and is not empty")
    contexts = output / "contexts"
    contexts.mkdir(parents=True, exist_ok=True)
    recipes = build_images.discover_recipes()
    manifest = build_images.build_wheelhouse(recipes)
    staged: list[ImageBuild] = []
    for build in builds:
        recipe = recipes[build.name]
        plan = build_images.plan_image(recipes, recipe, "<parent>", "<parent>", manifest, fonts_from, with_code=True)
        if recipe.is_gpu_recipe:  # the CUDA base image brings torch; every other wheel comes from the wheelhouse
            wheels = build_images.resolve_closure(recipe.requirements, recipe.no_deps, manifest)
            plan.wheels = [w for w in wheels if not w.startswith("torch-")]
        with build_images.staged_context(plan) as context:
            shutil.copytree(context, contexts / build.name)
        args = {k: v for k, v in plan.build_args.items() if k != "BASE_IMAGE"}
        staged.append(
            ImageBuild(build.name, build.parent, build.ref, build.step, build.gpu, {**build.build_args, **args})
        )
    (output / "build.sh").write_text(build_script(staged, contexts), encoding="utf-8")
    (output / "build.sh").chmod(0o755)
    images = image_map(staged, gpu_trainer=gpu_trainer)
    (output / "images.json").write_text(json.dumps(images, indent=2) + "\n", encoding="utf-8")
    return staged


def upload(source: Path, destination: str) -> list[str]:
    """Copy every ``*.yaml`` of ``source`` to ``gs://BUCKET/PREFIX/`` (Cloud Storage client, default credentials)."""
    if not destination.startswith("gs://") or len(destination) <= len("gs://"):
        raise ExpforgeError(f"DESTINATION: {destination!r}: expected gs://BUCKET/PREFIX/")
    files = sorted(source.glob("*.yaml"))
    if not files:
        raise ExpforgeError(f"SOURCE: no compiled templates (*.yaml) in {source}")
    from google.cloud import storage

    bucket_name, _, prefix = destination.removeprefix("gs://").partition("/")
    prefix = prefix.strip("/")
    bucket = storage.Client().bucket(bucket_name)
    uploaded = []
    for path in files:
        name = f"{prefix}/{path.name}" if prefix else path.name
        bucket.blob(name).upload_from_filename(str(path), content_type="application/x-yaml")
        uploaded.append(f"gs://{bucket_name}/{name}")
    return uploaded


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m expforge.cloud.cloudbuild`` (tests parse cloudbuild.yaml's calls with it)."""
    parser = argparse.ArgumentParser(prog="expforge.cloud.cloudbuild", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    staging = sub.add_parser("stage", help="stage image contexts; write build.sh and images.json")
    staging.add_argument("--registry", required=True, help="REGION-docker.pkg.dev/PROJECT/REPOSITORY")
    staging.add_argument("--tag", required=True, help="image tag (the commit SHA)")
    staging.add_argument("--output", type=Path, required=True)
    staging.add_argument("--base-image", default=DEFAULT_BASE_IMAGE)
    staging.add_argument("--cuda-base", default=None, help="CUDA PyTorch base of the *-gpu recipes")
    staging.add_argument("--fonts-from", choices=("context", "apt"), default="context")
    staging.add_argument("--gpu-trainer", action="store_true", help="map train-torch to its GPU image")
    staging.add_argument("--only", nargs="+", help="stage only these images (and their parents)")
    staging.add_argument("--repo", type=Path, default=Path.cwd())
    uploading = sub.add_parser("upload", help="copy compiled templates to Cloud Storage")
    uploading.add_argument("source", type=Path)
    uploading.add_argument("destination")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m expforge.cloud.cloudbuild stage|upload ...`` (errors: one line, exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stage":
            builds = stage(
                args.repo.resolve(),
                args.output,
                registry=args.registry,
                tag=args.tag,
                base_image=args.base_image,
                cuda_base=args.cuda_base,
                fonts_from=args.fonts_from,
                gpu_trainer=args.gpu_trainer,
                only=args.only,
            )
            for build in builds:
                print(build.ref)
        else:
            for uri in upload(args.source, args.destination):
                print(uri)
    except ExpforgeError as exc:
        print(f"expforge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
