"""Every call to the ``docker`` CLI the build makes: daemon checks, image lookups, builds, load checks, cleanup."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from imagebuild.common import (
    DEBOOTSTRAP_BASE,
    DEBOOTSTRAP_SCRIPT,
    SITE_PACKAGES,
    UPSTREAM_BASE,
    BuildError,
    log,
    run,
)


def docker_env() -> dict[str, str]:
    """The environment for ``docker build``: the legacy builder when the buildx plugin is absent."""
    env = dict(os.environ)
    if "DOCKER_BUILDKIT" not in env:
        has_buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode
        if has_buildx != 0:
            env["DOCKER_BUILDKIT"] = "0"
    return env


def require_docker() -> None:
    """Fail with one actionable line when there is no Docker daemon."""
    if shutil.which("docker") is None:
        raise BuildError("the docker CLI is not installed (Debian: apt-get install docker.io), then: make docker-up")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise BuildError("Docker is not running (or not reachable): run `make docker-up`")


def image_id(ref: str) -> str | None:
    """The local image ID of ``ref``, or None when the image is not present."""
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_ids(refs: list[str]) -> dict[str, str | None]:
    """:func:`image_id` of many references with one ``docker image inspect`` (no-op builds stay fast)."""
    if not refs:
        return {}
    proc = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .RepoTags}} {{.Id}}", *refs], capture_output=True, text=True
    )
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        tags, _, ident = line.rpartition(" ")
        for tag in re.findall(r'"([^"]+)"', tags):
            found[tag] = ident
    return {ref: found.get(ref) for ref in refs}


def choose_base_image(explicit: str | None) -> str:
    """The external base: --base-image, else python:3.11-slim when present, else the debootstrap base."""
    if explicit:
        if image_id(explicit) is None:
            log(f"{explicit} is not present locally: docker pull {explicit}")
            run(["docker", "pull", "--quiet", explicit])
        return explicit
    if image_id(UPSTREAM_BASE) is not None:
        return UPSTREAM_BASE
    if image_id(DEBOOTSTRAP_BASE) is None:
        log(f"neither {UPSTREAM_BASE} nor {DEBOOTSTRAP_BASE} is present: building the latter (make base-image)")
        if subprocess.run(["bash", str(DEBOOTSTRAP_SCRIPT)], check=False).returncode != 0:
            raise BuildError(f"could not build {DEBOOTSTRAP_BASE}; or `docker pull {UPSTREAM_BASE}` where you can")
    return DEBOOTSTRAP_BASE


def docker_build(
    context: Path, ref: str, *, name: str, build_args: dict[str, str], labels: dict[str, str], env: dict[str, str]
) -> None:
    """``docker build --network none`` of a staged context, tagged ``ref``; one clear error when it fails."""
    cmd = ["docker", "build", "--network", "none", "--force-rm", "--tag", ref]
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    cmd.append(str(context))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [line for line in output if "expforge-stage: error" in line]
        detail = "\n".join(output[-30:])
        headline = errors[-1] if errors else f"docker build of {name} failed"
        raise BuildError(f"{headline}\n{detail}")


# Loads the step's component the way `python3 -m kfp.dsl.executor_main` will (through /app/kfp_config.ini), then
# prints the expforge package folders the import read from (imagebuild.loadcheck records them).
LOAD_CHECK = """
import json
import os
import sys

from kfp.dsl import kfp_config, utils
from kfp.dsl.python_component import PythonComponent

function = sys.argv[1].replace("-", "_")
path = kfp_config.KFPConfig().get_components()[function]
module = utils.load_module(module_name=path.stem, module_directory=str(path.parent))
if not isinstance(getattr(module, function, None), PythonComponent):
    sys.exit(f"{path} defines no KFP component named {function}")
site = sys.argv[2]
folders = set()
for loaded in list(sys.modules.values()):
    places = list(getattr(loaded, "__path__", None) or [])
    if getattr(loaded, "__file__", None):
        places.append(os.path.dirname(loaded.__file__))
    for place in places:
        if place == site + "/expforge" or place.startswith(site + "/expforge/"):
            folders.add(os.path.relpath(place, site))
print("expforge-load-check:", json.dumps(sorted(folders)))
"""


def check_step_loads(ref: str, step: str) -> list[str]:
    """Run the load check in the built image (offline); on failure untag the image and raise with the reason.

    Returns the expforge package folders (relative to site-packages) the component's import loaded from.
    """
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", ref, "python3", "-c", LOAD_CHECK, step, SITE_PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        subprocess.run(["docker", "image", "rm", ref], capture_output=True, check=False)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BuildError(
            f"step '{step}': its component does not load in {ref} like KFP's executor loads it: {reason}\n"
            + "\n".join(lines[-20:])
        )
    report = [line for line in proc.stdout.splitlines() if line.startswith("expforge-load-check: ")]
    if not report:
        raise BuildError(f"step '{step}': the load check in {ref} printed no report:\n{proc.stdout[-2000:]}")
    return [str(folder) for folder in json.loads(report[-1].split(": ", 1)[1])]


def tag(ref: str, alias: str) -> None:
    """``docker tag ref alias``."""
    run(["docker", "tag", ref, alias])


def layer_ids(ref: str) -> list[str]:
    """The image's layer digests, oldest first (``RootFS.Layers``)."""
    out = run(["docker", "image", "inspect", "-f", "{{range .RootFS.Layers}}{{println .}}{{end}}", ref])
    return [line for line in out.splitlines() if line.strip()]


_OUR_TAG = re.compile(r"(deps-)?[0-9a-f]{12}")


def remove_old_images(current: dict[str, str], keep_old: int, *, prune_stages: bool = True) -> None:
    """Untag all but the newest ``keep_old`` superseded hash tags per repository and kind; drop dangling stages.

    Every source change makes new hash tags; without this a working machine fills its disk with old images.
    Only ``expforge/<recipe>:[deps-]<12 hex>`` tags and dangling images derived from ours (label filter) are
    touched. ``current`` holds every reference in use (step and dependency images). ``prune_stages``: only
    dependency builds leave dangling stages (a code layer is a single stage), and a prune scans every image.
    One listing and one removal for all repositories: a call per repository cost seconds of a code-edit build.
    """
    in_use = set(current.values())
    repositories = {ref.rsplit(":", 1)[0] for ref in in_use}
    patterns = sorted({f"{repository.split('/', 1)[0]}/*" for repository in repositories if "/" in repository})
    filters = [arg for pattern in patterns for arg in ("--filter", f"reference={pattern}")]
    listing = run(["docker", "image", "ls", *filters, "--format", "{{.Repository}}\t{{.CreatedAt}}\t{{.Tag}}"])
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in repositories:
            rows.setdefault(parts[0], []).append((parts[1], parts[2]))
    stale: list[str] = []
    for repository, entries in sorted(rows.items()):
        entries.sort(reverse=True)
        for deps in (False, True):
            old = [
                tag
                for _, tag in entries
                if _OUR_TAG.fullmatch(tag) and tag.startswith("deps-") == deps and f"{repository}:{tag}" not in in_use
            ]
            stale += [f"{repository}:{tag}" for tag in old[keep_old:]]
    removed = 0
    if stale:
        proc = subprocess.run(["docker", "image", "rm", *stale], capture_output=True, text=True, check=False)
        removed = sum(1 for line in proc.stdout.splitlines() if line.startswith("Untagged: "))
    # (images made before python-base carried the org.expforge.image label have only the title label)
    labels = ("org.expforge.image", "org.opencontainers.image.title=expforge-python-base") if prune_stages else ()
    for label in labels:
        subprocess.run(["docker", "image", "prune", "--force", "--filter", f"label={label}"], capture_output=True)
    if removed:
        log(f"removed {removed} superseded image tag(s) (kept {keep_old} per image; --keep-old changes it)")
