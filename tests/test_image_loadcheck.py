"""The image build's record of passed load checks, and the code layer's LABEL line (no Docker needed).

A load check is skipped only when its inputs are those of a check that passed (imagebuild/loadcheck.py): these
tests change each kind of input in a staged code layer and expect the digest, hence the decision, to change —
and change files the check does not read and expect it to stay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_modules import load_build_images

REPO = Path(__file__).resolve().parents[1]


build_images = load_build_images()
from imagebuild import loadcheck  # noqa: E402  (on sys.path once build_images is loaded)
from imagebuild.plan import code_label_line  # noqa: E402

LOADED = ["expforge", "expforge/components"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    """A staged code layer: site-packages with a few expforge packages, the dist-info and kfp_config.ini."""
    root = tmp_path / "code"
    site = root / build_images.SITE_PACKAGES.lstrip("/")
    _write(site / "expforge" / "__init__.py", "")
    _write(site / "expforge" / "components" / "__init__.py", "")
    _write(site / "expforge" / "components" / "step.py", "from expforge.components import _adapter\n")
    _write(site / "expforge" / "components" / "_adapter.py", "X = 1\n")
    _write(site / "expforge" / "data" / "__init__.py", "")
    _write(site / "expforge" / "data" / "manifest.py", "Y = 1\n")
    _write(site / "expforge" / "schemas" / "run.json", "{}\n")  # a data folder (no __init__.py)
    _write(site / "expforge-0.1.0.dist-info" / "METADATA", "Name: expforge\n")
    _write(site / "expforge-0.1.0.dist-info" / "RECORD", "a,b,c\n")
    _write(root / "app" / "kfp_config.ini", "[Components]\nstep = x\n")
    return root


def _site(layer: Path) -> Path:
    return layer / build_images.SITE_PACKAGES.lstrip("/")


def test_files_the_import_does_not_read_leave_the_digest_alone(layer: Path) -> None:
    before = loadcheck.inputs_digest(layer, LOADED)
    (_site(layer) / "expforge" / "data" / "manifest.py").write_text("Y = 2\n", encoding="utf-8")
    _write(_site(layer) / "expforge" / "data" / "new.py", "")
    (_site(layer) / "expforge-0.1.0.dist-info" / "RECORD").write_text("changed\n", encoding="utf-8")
    assert loadcheck.inputs_digest(layer, LOADED) == before


@pytest.mark.parametrize(
    "change",
    [
        "edit a loaded module",
        "add a module next to loaded ones",
        "add a sub-package",
        "edit a data file",
        "edit the metadata",
        "edit kfp_config.ini",
        "remove a loaded folder",
    ],
)
def test_every_input_of_the_check_changes_the_digest(layer: Path, change: str) -> None:
    site = _site(layer)
    before = loadcheck.inputs_digest(layer, LOADED)
    if change == "edit a loaded module":
        (site / "expforge" / "components" / "_adapter.py").write_text("X = 2\n", encoding="utf-8")
    elif change == "add a module next to loaded ones":
        _write(site / "expforge" / "components" / "json.py", "")  # could shadow an import from that folder
    elif change == "add a sub-package":
        _write(site / "expforge" / "extra" / "__init__.py", "")
    elif change == "edit a data file":
        (site / "expforge" / "schemas" / "run.json").write_text("[]\n", encoding="utf-8")
    elif change == "edit the metadata":
        (site / "expforge-0.1.0.dist-info" / "METADATA").write_text("Name: expforge\nVersion: 2\n")
    elif change == "edit kfp_config.ini":
        (layer / "app" / "kfp_config.ini").write_text("[Components]\nstep = y\n", encoding="utf-8")
    else:
        for path in sorted((site / "expforge" / "components").iterdir()):
            path.unlink()
        (site / "expforge" / "components").rmdir()
    assert loadcheck.inputs_digest(layer, LOADED) != before


def test_the_record_keeps_a_check_only_for_the_same_image_check_and_inputs(layer: Path, tmp_path: Path) -> None:
    path = tmp_path / "load-checks.json"
    record = loadcheck.LoadCheckRecord("check v1", path)
    assert not record.already_passed("sha256:deps", "step", layer)  # nothing recorded yet
    record.passed("sha256:deps", "step", layer, LOADED)
    record.passed("sha256:old", "old-step", layer, LOADED)
    record.save()

    again = loadcheck.LoadCheckRecord("check v1", path)
    assert again.already_passed("sha256:deps", "step", layer)
    assert not again.already_passed("sha256:deps2", "step", layer)  # another dependency image
    assert not again.already_passed("sha256:deps", "step-b", layer)  # another step
    assert not loadcheck.LoadCheckRecord("check v2", path).already_passed("sha256:deps", "step", layer)
    again.save({("sha256:deps", "step")})  # entries of images no longer current are dropped
    assert set(json.loads(path.read_text())) == {"sha256:deps step " + again.check}

    (_site(layer) / "expforge" / "components" / "_adapter.py").write_text("X = 3\n", encoding="utf-8")
    assert not loadcheck.LoadCheckRecord("check v1", path).already_passed("sha256:deps", "step", layer)


def test_a_damaged_record_means_every_check_runs(layer: Path, tmp_path: Path) -> None:
    path = tmp_path / "load-checks.json"
    path.write_text("{not json", encoding="utf-8")
    assert not loadcheck.LoadCheckRecord("check", path).already_passed("sha256:deps", "step", layer)


def test_the_label_line_quotes_what_the_dockerfile_would_expand() -> None:
    line = code_label_line({"org.expforge.requires": '["a>=1", "b$HOME"]', "org.expforge.x": "back\\slash"})
    assert line == ('LABEL org.expforge.requires="[\\"a>=1\\", \\"b\\$HOME\\"]" org.expforge.x="back\\\\slash"\n')
    with pytest.raises(build_images.BuildError, match="LABEL"):
        code_label_line({"org.expforge.x": "two\nlines"})
    with pytest.raises(build_images.BuildError, match="LABEL"):
        code_label_line({"bad key": "v"})
