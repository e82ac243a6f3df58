"""cloudbuild.yaml: every image it builds has a recipe and a component, and every command it runs exists."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import click
import pytest
import typer
import yaml
from docker_gate import docker_unavailable

from expforge.cli import app
from expforge.cloud import cloudbuild
from expforge.components._adapter import load_all_components
from expforge.errors import ExpforgeError
from expforge.pipelines import PIPELINES
from expforge.pipelines.compile import check_image_map, compile_pipeline

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
BUILT_IN = {"PROJECT_ID": "proj-1", "COMMIT_SHA": "0123abcd", "SHORT_SHA": "0123abc", "BRANCH_NAME": "main"}
REGISTRY = "us-central1-docker.pkg.dev/proj-1/expforge"
STEP_ORDER = ["test", "stage-images", "build-push-images", "compile", "upload-templates", "submit"]


def steps() -> dict[str, dict]:
    return {step["id"]: step for step in CONFIG["steps"]}


def substitutions() -> dict[str, str]:
    values = {**BUILT_IN, **{k: str(v) for k, v in CONFIG["substitutions"].items()}}
    return {k: v.replace("${PROJECT_ID}", BUILT_IN["PROJECT_ID"]) for k, v in values.items()}


def commands(script: str) -> list[list[str]]:
    """Simple command lines of a step script, variables expanded with sample substitution values."""
    values = substitutions()
    joined = re.sub(r"\\\n\s*", " ", script)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith(("if ", "fi", "extra", "set ", "gpu_trainer")):
            continue
        line = line.replace('"${extra[@]}"', "").replace("$gpu_trainer", "")
        line = re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: values[m.group(1)], line)
        found.append(shlex.split(line.split("#", 1)[0]))
    return found


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_./-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE))


def parse_expforge(args: list[str]) -> click.Context:
    """Parse an ``expforge ...`` command line with the real CLI (unknown commands/options raise)."""
    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group, info_name="expforge"), args[0])
    assert command is not None, f"no expforge command {args[0]!r}"
    return command.make_context(args[0], list(args[1:]))


def test_steps_run_in_the_documented_order_with_declared_substitutions() -> None:
    by_id = steps()
    assert list(by_id) == STEP_ORDER
    seen: set[str] = set()
    for step_id, step in by_id.items():
        assert set(step.get("waitFor", [])) <= seen, f"{step_id} waits for a later step"
        seen.add(step_id)
        image = step["name"]
        host = image.split("/", 1)[0] if "/" in image else ""
        assert "." not in host and ":" not in host, f"{step_id}: builder {image} names a registry host"
        for variable in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", step["script"]):
            assert variable in substitutions(), f"{step_id}: ${variable} is not a substitution"
    assert CONFIG["options"]["automapSubstitutions"] is True
    assert by_id["build-push-images"]["waitFor"] == ["stage-images"]
    assert set(by_id["upload-templates"]["waitFor"]) == {"compile", "build-push-images"}
    submit = by_id["submit"]["script"]
    assert '"$_SUBMIT" != "true"' in submit and '"${BRANCH_NAME:-}" != "main"' in submit
    assert CONFIG["substitutions"]["_SUBMIT"] == "false"


def test_every_command_of_every_step_exists() -> None:
    targets = makefile_targets()
    stage_output = None
    checked = 0
    for step_id, step in steps().items():
        for argv in commands(step["script"]):
            program, args = argv[0], argv[1:]
            if program in ("echo", "cat", "export", "exit"):
                continue
            checked += 1
            if program == "make":
                goals = [a for a in args if "=" not in a and not a.startswith("-")]
                assert set(goals) <= targets, f"{step_id}: make {goals}"
            elif program == ".venv/bin/expforge":
                context = parse_expforge(args)
                if context.info_name == "compile":
                    assert stage_output is not None
                    assert context.params["images"] == stage_output / "images.json"
            elif program == ".venv/bin/python" and args[:2] == ["-m", "expforge.cloud.cloudbuild"]:
                parsed = cloudbuild.build_parser().parse_args(args[2:])
                if parsed.command == "stage":
                    stage_output = parsed.output
                    assert parsed.registry == REGISTRY and parsed.tag == BUILT_IN["COMMIT_SHA"]
                else:
                    assert parsed.destination == "gs://proj-1-expforge/templates/0123abcd/"
            elif program == "sh":
                assert stage_output is not None and Path(args[0]) == stage_output / "build.sh", step_id
            else:
                pytest.fail(f"{step_id}: unchecked command {argv}")
    assert checked >= 6


def test_images_are_the_recipes_and_the_recipes_are_the_components() -> None:
    build_images = cloudbuild.load_build_images(REPO)
    builds = cloudbuild.plan_builds(
        build_images, registry=REGISTRY, tag="abc123", base_image="python:3.11-slim", cuda_base="cuda/torch:1"
    )
    names = [b.name for b in builds]
    assert set(names) == {p.parent.name for p in (REPO / "containers").glob("*/Dockerfile")}
    for index, build in enumerate(builds):
        assert build.ref == f"{REGISTRY}/{build.name}:abc123"
        if build.parent is not None:
            assert names.index(build.parent) < index, f"{build.name} is built before its parent"
            assert build.build_args == {"BASE_IMAGE": f"{REGISTRY}/{build.parent}:abc123"}
    assert next(b for b in builds if b.name == "base").build_args == {"BASE_IMAGE": "python:3.11-slim"}
    assert {"base", "torch-base", "train-torch-gpu"} <= set(names)
    gpu = next(b for b in builds if b.name == "train-torch-gpu")
    assert gpu.gpu and gpu.step == "train-torch" and gpu.build_args == {"CUDA_BASE": "cuda/torch:1"}

    components = load_all_components()
    step_images = {b.step for b in builds if b.step and not b.gpu}
    assert step_images == set(components), "every component has exactly one CPU image and vice versa"
    images = cloudbuild.image_map(builds)
    assert set(images) == set(components)
    check_image_map(images, list(components), source="cloud build image map")
    assert cloudbuild.image_map(builds, gpu_trainer=True)["train-torch"] == gpu.ref


def test_every_component_command_runs_an_existing_module() -> None:
    for step, component in load_all_components().items():
        container = component.component_spec.implementation.container
        assert container.command[:2] == ["python3", "-m"], step
        assert importlib.util.find_spec(container.command[2]) is not None, container.command
        function = container.args[container.args.index("--function_to_execute") + 1]
        module = importlib.import_module(f"expforge.components.{function}")
        assert callable(getattr(module, function)), step


def test_compiled_pipelines_name_only_pushed_images(tmp_path: Path) -> None:
    build_images = cloudbuild.load_build_images(REPO)
    builds = cloudbuild.plan_builds(build_images, registry=REGISTRY, tag="abc", base_image="b:1", cuda_base=None)
    images = cloudbuild.image_map(builds)
    for name in PIPELINES:
        document = yaml.safe_load(compile_pipeline(name, tmp_path / f"{name}.yaml", images).read_text())
        used = {e["container"]["image"] for e in document["deploymentSpec"]["executors"].values()}
        assert used and used <= set(images.values()), f"{name}: {used - set(images.values())}"


def test_build_script_is_valid_shell_and_builds_parents_first(tmp_path: Path) -> None:
    build_images = cloudbuild.load_build_images(REPO)
    builds = cloudbuild.plan_builds(build_images, registry=REGISTRY, tag="abc", base_image="b:1", cuda_base="c:1")
    script = cloudbuild.build_script(builds, Path("build/cloudbuild/contexts"))
    (tmp_path / "build.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "build.sh")]).returncode == 0
    built = re.findall(r"^docker build .* --tag (\S+) ", script, flags=re.MULTILINE)
    assert built == [b.ref for b in builds]
    assert script.count("docker push") == len(builds)


def test_bad_registry_or_tag_is_one_line() -> None:
    build_images = cloudbuild.load_build_images(REPO)
    with pytest.raises(ExpforgeError, match="--registry"):
        cloudbuild.plan_builds(build_images, registry="nohost", tag="a", base_image="b", cuda_base=None)
    with pytest.raises(ExpforgeError, match="--tag"):
        cloudbuild.plan_builds(build_images, registry=REGISTRY, tag="a:b", base_image="b", cuda_base=None)


def test_upload_copies_templates_to_cloud_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expforge.standins.gcs import start_fake_gcs

    (tmp_path / "a.yaml").write_text("pipelineInfo: {name: a}\n")
    (tmp_path / "b.yaml").write_text("pipelineInfo: {name: b}\n")
    with start_fake_gcs(buckets=["templates-bucket"]) as gcs:
        for key, value in gcs.env().items():
            monkeypatch.setenv(key, value)
        uploaded = cloudbuild.upload(tmp_path, "gs://templates-bucket/templates/abc/")
        assert uploaded == ["gs://templates-bucket/templates/abc/a.yaml", "gs://templates-bucket/templates/abc/b.yaml"]
        blob = gcs.client().bucket("templates-bucket").blob("templates/abc/b.yaml")
        assert blob.download_as_text() == "pipelineInfo: {name: b}\n"
    with pytest.raises(ExpforgeError, match="DESTINATION"):
        cloudbuild.upload(tmp_path, "s3://x/")


@pytest.mark.docker
def test_staged_contexts_build_with_the_generated_script(tmp_path: Path) -> None:
    """Stage train-sklearn (and base), run build.sh without pushing, and run the component's module inside."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        docker_unavailable("no Docker daemon")
    base = next(
        (
            ref
            for ref in ("python:3.11-slim", "expforge/python-base:3.11-bookworm")
            if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0
        ),
        None,
    )
    if base is None:
        docker_unavailable("no Python 3.11 base image present (make base-image)")
    registry = f"localhost/expforge-cloudbuild-test-{uuid.uuid4().hex[:8]}"
    output = tmp_path / "cloudbuild"
    builds = cloudbuild.stage(REPO, output, registry=registry, tag="t1", base_image=base, only=["train-sklearn"])
    assert [b.name for b in builds] == ["base", "train-sklearn"]
    assert json.loads((output / "images.json").read_text()) == {"train-sklearn": f"{registry}/train-sklearn:t1"}
    try:
        proc = subprocess.run(
            ["sh", str(output / "build.sh")],
            env={"PUSH": "0", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        check = "import kfp.dsl.executor_main, expforge.components.train_sklearn as m; print(m.train_sklearn)"
        run = subprocess.run(
            ["docker", "run", "--rm", f"{registry}/train-sklearn:t1", "python3", "-c", check],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
    finally:
        for build in builds:
            subprocess.run(["docker", "image", "rm", "--force", build.ref], capture_output=True)
