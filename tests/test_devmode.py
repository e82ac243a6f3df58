"""``expforge run --dev``: the tree's code in the task images without an image build.

The Docker tests copy this checkout's package sources into a temporary tree, run a real step image
(``sample-configs``) with ``--dev`` from there, edit the step library in the copy, and run again: the edit is
what runs (no image build), the task is not served from the cache, and ``run.json`` records the tree hash.
The other tests use the real tree-hashing, snapshot and requirement code directly.
(No ``from __future__ import annotations``: KFP reads the components' annotations as real types.)
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docker_gate import docker_unavailable, require_images

from expforge.errors import ExpforgeError
from expforge.local_runner import devmode
from expforge.local_runner.api import run_pipeline

REPO = Path(__file__).resolve().parents[1]
IMAGES_JSON = REPO / "build" / "images.json"
STEP = "sample-configs"


def copy_tree(target: Path) -> Path:
    """The package sources of this checkout (what ``--dev`` mounts) and its pyproject, in ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "components", "pipelines", "local_runner"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def test_a_folder_outside_a_checkout_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    with pytest.raises(ExpforgeError) as caught:
        devmode.find_checkout(tmp_path / "deeper")
    message = str(caught.value)
    assert "--dev:" in message and "not inside an expforge checkout" in message and "\n" not in message


def test_checkout_is_found_from_a_subfolder_and_laid_out_as_the_installed_package(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    assert devmode.find_checkout(tree / "components") == tree
    source = devmode.tree_source(tree)
    assert source.files["__init__.py"] == tree / "src" / "expforge" / "__init__.py"
    assert source.files["components/sample_configs.py"] == tree / "components" / "sample_configs.py"
    assert source.files["local_runner/devmode.py"] == tree / "local_runner" / "devmode.py"
    assert not [name for name in source.files if "__pycache__" in name]
    package = devmode.snapshot(source, tmp_path / "dev")
    assert package == tmp_path / "dev" / source.tree_hash / "expforge"
    assert (package / "components" / "sample_configs.py").read_bytes() == source.files[
        "components/sample_configs.py"
    ].read_bytes()
    assert (package / "pipelines" / "__init__.py").is_file()


def test_tree_hash_follows_package_code_only(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    first = devmode.tree_source(tree).tree_hash
    (tree / "README.md").write_text("not package code\n")
    (tree / "src" / "expforge" / "__pycache__").mkdir(exist_ok=True)
    (tree / "src" / "expforge" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert devmode.tree_source(tree).tree_hash == first
    with (tree / "src" / "expforge" / "tune" / "space.py").open("a") as handle:
        handle.write("\n# one more line\n")
    assert devmode.tree_source(tree).tree_hash != first


def test_a_dependency_the_tree_declares_but_the_image_lacks_is_named() -> None:
    pyproject = {"project": {"dependencies": ["kfp>=2"], "optional-dependencies": {"tune": ["scipy>=1"]}}}
    built = {"org.expforge.extras": "gcp,tune", "org.expforge.requires": json.dumps(["kfp>=2"])}
    assert devmode.missing_requirements(built, pyproject) == ["scipy>=1"]
    assert devmode.missing_requirements({**built, "org.expforge.requires": '["kfp>=2", "scipy>=1"]'}, pyproject) == []


def test_subprocess_backend_records_that_it_runs_the_tree(tmp_path: Path) -> None:
    from kfp import compiler, dsl

    @dsl.component(base_image="unused", install_kfp_package=False)
    def hello() -> str:
        return "hi"

    @dsl.pipeline(name="dev-record")
    def pipeline() -> None:
        hello()

    spec = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(spec))
    result = run_pipeline(spec, {}, backend="subprocess", root=tmp_path / "runs", dev=True)
    assert result.succeeded
    code = result.record["code"]
    assert code["mode"] == "tree" and code["tree"] == str(REPO)
    assert code["tree_hash"] == devmode.tree_source(REPO).tree_hash


# --- real Docker --------------------------------------------------------------------------------------------


def _step_image() -> str:
    try:
        image = json.loads(IMAGES_JSON.read_text())[STEP]
    except (OSError, ValueError, KeyError):
        docker_unavailable(f"{STEP} is not in build/images.json (make images)")
    require_images([image])
    return image


def _image_id(ref: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def _compile(tmp_path: Path, image: str) -> Path:
    from kfp import compiler, dsl

    from expforge.components._adapter import pinned_images
    from expforge.components.sample_configs import sample_configs
    from expforge.tune.space import DEFAULT_SEARCH_SPACE

    with pinned_images({STEP: image}):

        @dsl.pipeline(name="dev-mode")
        def pipeline() -> list:
            return sample_configs(search_space=DEFAULT_SEARCH_SPACE, count=1).output

    spec = tmp_path / "dev-mode.yaml"
    compiler.Compiler().compile(pipeline, str(spec))
    return spec


def _run_from(tree: Path, spec: Path, root: Path) -> dict:
    """``expforge run --dev`` as a user types it, from inside ``tree``."""
    proc = subprocess.run(
        [sys.executable, "-m", "expforge", "run", "--dev", "--backend", "docker", "--root", str(root), str(spec)],
        cwd=tree,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.docker
def test_dev_mode_runs_the_edited_tree_in_the_image_without_a_build(tmp_path: Path) -> None:
    image = _step_image()
    before = _image_id(image)
    tree = copy_tree(tmp_path / "tree")
    spec = _compile(tmp_path, image)
    root = tmp_path / "runs"

    first = _run_from(tree, spec, root)
    task = first["tasks"]["sample-configs"]
    assert task["state"] == "SUCCEEDED" and not task["cached"]
    assert task["parameters"]["Output"][0]["trial_id"] != "edited-in-dev-mode"
    assert first["code"] == {"mode": "dev", "tree": str(tree), "tree_hash": devmode.tree_source(tree).tree_hash}

    # Edit the step library in the copy (not the component): the component imports it at call time.
    with (tree / "src" / "expforge" / "tune" / "space.py").open("a") as handle:
        handle.write(
            '\n\ndef sample_trials(*args, **kwargs):\n    return [{"trial_id": "edited-in-dev-mode", "config": {}}]\n'
        )
    second = _run_from(tree, spec, root)
    task = second["tasks"]["sample-configs"]
    assert task["state"] == "SUCCEEDED"
    assert task["cached"] is False, "a result computed by other code was reused"
    assert task["parameters"]["Output"] == [{"trial_id": "edited-in-dev-mode", "config": {}}]
    assert second["code"]["tree_hash"] == devmode.tree_source(tree).tree_hash != first["code"]["tree_hash"]
    assert _image_id(image) == before, "dev mode must not build or retag images"

    third = _run_from(tree, spec, root)  # same tree again: served from the cache
    assert third["tasks"]["sample-configs"]["cached"] is True


@pytest.mark.docker
def test_dev_mode_refuses_images_not_built_from_a_tree(tmp_path: Path) -> None:
    _step_image()
    from expforge.local_runner.docker_backend import docker_client

    client, problem = docker_client()
    assert client is not None, problem
    # An image without the build's labels, as one pulled from a registry would be: the debootstrap/upstream base.
    foreign = next(
        (ref for ref in ("python:3.11-slim", "expforge/python-base:3.11-bookworm") if _exists(client, ref)), None
    )
    client.close()
    if foreign is None:
        docker_unavailable("no unlabelled base image to stand for a registry image")
    spec = _compile(tmp_path, foreign)
    with pytest.raises(ExpforgeError) as caught:
        run_pipeline(spec, {}, backend="docker", root=tmp_path / "runs", dev=True)
    message = str(caught.value)
    assert foreign in message and "was not built from an expforge tree" in message and "make images" in message
    assert not (tmp_path / "runs").exists()  # nothing half-made


def _exists(client: object, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)  # type: ignore[attr-defined]
    except ImageNotFound:
        return False
    return True


def test_dev_mode_and_the_image_builder_compute_the_same_requirements() -> None:
    # Two copies on purpose: the image builder (containers/imagebuild) runs on the standard library alone and
    # imports no expforge code, while --dev compares what it stored as org.expforge.requires with this list.
    # If they drift, --dev names a dependency as missing that the image has (or misses one it lacks).
    import tomllib

    sys.path.insert(0, str(REPO / "containers"))
    try:
        from imagebuild.plan import declared_requirements as builder_requirements
    finally:
        sys.path.remove(str(REPO / "containers"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = list(pyproject["project"]["optional-dependencies"])
    for chosen in ([], *([extra] for extra in extras), extras):
        assert devmode.declared_requirements(pyproject, chosen) == builder_requirements(pyproject, chosen), chosen
    # Not an empty agreement: an extra's own packages are in its list, beside the core's.
    sklearn = devmode.declared_requirements(pyproject, ["sklearn"])
    assert any(req.startswith("skops") for req in sklearn) and any(req.startswith("kfp") for req in sklearn)


def test_subprocess_backend_cache_key_names_the_tree_it_runs() -> None:
    """The subprocess backend runs the checkout's code, so an edit must change its environment digest (and with
    it every cache key), as the tree hash does for ``--dev`` under Docker."""
    from expforge.local_runner.subprocess_backend import SubprocessBackend

    digest = SubprocessBackend().environment_digest("any-image")
    assert digest.endswith(f":tree:{devmode.tree_source(REPO).tree_hash}")
    edited = SubprocessBackend()
    edited._code = {"mode": "tree", "tree": "elsewhere", "tree_hash": "0" * 16}  # another tree's record
    assert edited.environment_digest("any-image") != digest
