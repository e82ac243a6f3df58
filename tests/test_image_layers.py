"""Thin, ordered image layers: a source edit changes only the last layer of a step image, and its tag.

Real Docker: the test builds the ``sample-configs`` code layer twice with the build's own functions
(``plan_code``, ``build_code_image``) on the real dependency image — once from the project wheel as it is,
once from a wheel of an edited copy of the sources — under a test-only repository name, so the images
``make images`` made are never retagged. Then it compares the two images' layers, history and labels, and
checks the record of passed load checks: the edited image's check is kept only when the component's import
does not read the edited module's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docker_gate import docker_unavailable, require_images
from script_modules import load_build_images

REPO = Path(__file__).resolve().parents[1]
STEP = "sample-configs"
TEST_NAME = "layertest-sample-configs"


build_images = load_build_images()


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _history(ref: str) -> list[tuple[str, str]]:
    """``docker image history``, newest first: (instruction, size) of each step that made a filesystem layer
    (metadata-only steps — the build's labels, ENV, USER — have no layer and are left out)."""
    rows = _docker("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}\t{{.Size}}", ref).splitlines()
    steps = [tuple(row.split("\t", 1)) for row in rows]
    return [step for step in steps if not (step[1] == "0B" and "#(nop)" in step[0] and "COPY" not in step[0])]  # type: ignore[misc]


def _deps_image_of(step_ref: str) -> str:
    """The ``expforge/<step>:deps-<hash>`` image a step image was built on (its layers minus the last)."""
    layers = build_images.layer_ids(step_ref)
    repository = step_ref.rsplit(":", 1)[0]
    for tag in _docker("image", "ls", repository, "--format", "{{.Tag}}").split():
        if tag.startswith("deps-") and build_images.layer_ids(f"{repository}:{tag}") == layers[:-1]:
            return f"{repository}:{tag}"
    docker_unavailable(f"no dependency image under {step_ref}: rebuild with `make images`")
    raise AssertionError  # unreachable


def _wheel(tmp_path: Path, name: str, *, edited: bool) -> Path:
    """The project wheel built from a copy of the sources, with (``edited``) or without one line added to a
    step-library module. Both wheels come from the same copy, so the edit is their only difference (the
    wheelhouse's wheel may predate other edits of the working tree)."""
    from imagebuild.wheelhouse import project_files

    source = tmp_path / f"src-{name}"
    for path in project_files():
        target = source / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if edited:
        with (source / "src" / "expforge" / "tune" / "space.py").open("a", encoding="utf-8") as handle:
            handle.write("\n# edited by test_image_layers\n")
    out = tmp_path / f"wheel-{name}"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out)]
        + [str(source)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    return next(out.glob("expforge-*.whl"))


@pytest.mark.docker
def test_a_source_edit_changes_only_the_last_layer_and_the_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        step_ref = json.loads((REPO / "build" / "images.json").read_text())[STEP]
    except (OSError, ValueError, KeyError):
        docker_unavailable(f"{STEP} is not in build/images.json (make images)")
    require_images([step_ref])
    deps_ref = _deps_image_of(step_ref)
    deps_id = _docker("image", "inspect", "-f", "{{.Id}}", deps_ref).strip()
    recipes = build_images.discover_recipes()
    renamed = dataclasses.replace(recipes[STEP], name=TEST_NAME)  # test-only repository; step stays sample-configs

    original = _wheel(tmp_path, "original", edited=False)
    edited = _wheel(tmp_path, "edited", edited=True)
    plans = []
    for wheel in (original, edited):
        manifest = {wheel.name: build_images.sha256_file(wheel)}
        plan = build_images.plan_code(recipes, recipes[STEP], deps_ref, deps_id, manifest, wheelhouse=wheel.parent)
        plans.append(dataclasses.replace(plan, recipe=renamed))
    before, after = plans
    env = build_images.docker_env()
    record_path = tmp_path / "load-checks.json"
    try:
        for plan in plans:  # one `make images` each: the record is read at the start and saved at the end
            record = build_images.LoadCheckRecord(build_images.LOAD_CHECK, record_path)
            build_images.build_code_image(plan, env, checks=record, deps_id=deps_id)
            record.save()
        logged = capsys.readouterr().err
        assert before.ref != after.ref, "a different project wheel must give a different tag"
        base_layers = build_images.layer_ids(deps_ref)
        layers_before, layers_after = build_images.layer_ids(before.ref), build_images.layer_ids(after.ref)
        assert layers_before[:-1] == layers_after[:-1] == base_layers  # every dependency layer shared
        assert layers_before[-1] != layers_after[-1]  # and only the code layer differs
        history_before, history_after = _history(before.ref), _history(after.ref)
        assert history_before[1:] == history_after[1:]
        assert "COPY" in history_after[0][0] or "copy" in history_after[0][0].lower()
        size = history_after[0][1]
        assert size.endswith(("kB", "MB")) and not (size.endswith("MB") and float(size[:-2]) > 20), size
        shown = _docker(
            "run",
            "--rm",
            "--network",
            "none",
            after.ref,
            "tail",
            "-n1",
            f"{build_images.SITE_PACKAGES}/expforge/tune/space.py",
        )
        assert shown.strip() == "# edited by test_image_layers"
        labels = json.loads(_docker("image", "inspect", "-f", "{{json .Config.Labels}}", after.ref))
        assert labels["org.expforge.hash"] == after.content_hash and labels["org.expforge.step"] == STEP
        assert {k: labels.get(k) for k in after.labels} == after.labels  # every label exact, through one LABEL

        # The load check ran on the first image and recorded what the component's import read; the edited
        # image's check is kept exactly when the edited module's folder is not among those.
        (entry,) = json.loads(record_path.read_text()).values()
        assert {"expforge", "expforge/components"} <= set(entry["folders"])
        assert logged.count("load check run") + logged.count("load check passed before") == 2
        assert ("load check passed before" in logged) == ("expforge/tune" not in entry["folders"]), logged
    finally:
        for plan in plans:
            subprocess.run(["docker", "image", "rm", plan.ref], capture_output=True, check=False)
