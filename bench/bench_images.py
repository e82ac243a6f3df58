"""How long ``make images`` takes in the developer's loop: no-op, a one-line source edit, one extra changed.

Why a copy of the tree: the edits must not touch the shared working tree (other sessions build and test from
it). The script copies the project's sources, the recipes and ``containers/`` into ``build/bench-images/tree``
and hard-links the wheelhouse and the font cache into it (``build_images.py`` takes its root from its own
location), then runs the copy's ``containers/build_images.py images`` — what ``make images`` runs — once per
case, timing the whole command:

* ``sync``: the copy as it is (nothing built when the tree's images are current; not a figure);
* ``no_op``: the same again;
* ``one_line_edit``: a comment appended to a leaf module (``src/expforge/data/manifest.py``);
* ``one_line_edit_shared``: a comment appended to a module every component imports (``_adapter.py``), the
  worst case for the builder's load-check record;
* ``one_extra_changed``: ``joblib>=1.3`` added to the ``tune`` extra (in the wheelhouse already, so nothing is
  downloaded): the images with that extra get a new dependency layer.

The whole run holds ``/tmp/images.lock`` (the lock every ``make images`` takes; so do not wrap this script in
``flock /tmp/images.lock``: it would wait for itself), keeps every superseded tag
(``--keep-old``), and at the end removes every image tag it created and points each ``:latest`` back where it
was. The load average is recorded with each case: on a shared machine it explains most of the spread.

    .venv/bin/python bench/bench_images.py --output bench/results/images.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "bench-images"
LOCK = Path("/tmp/images.lock")
TOP_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg", "setup.py")
LEAF_MODULE = "src/expforge/data/manifest.py"
SHARED_MODULE = "components/_adapter.py"


def _ignore(_folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc"))]


def make_tree(root: Path) -> None:
    """A copy of what the image build reads: sources, recipes, the wheelhouse and the font cache (linked)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(pyproject.get("tool", {}).get("setuptools", {}).get("package-dir", {}).values()) or {"src"}
    for name in TOP_FILES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, root / name)
    for folder in sorted(folders | {"containers"}):
        shutil.copytree(REPO / folder, root / folder, ignore=_ignore)
    for cache in ("wheelhouse", "fonts"):
        source, target = REPO / "build" / cache, root / "build" / cache
        if not source.is_dir():
            continue
        target.mkdir(parents=True)
        for path in source.iterdir():
            if path.is_file() and path.suffix in (".whl", ".tar"):
                os.link(path, target / path.name)  # large and never written in place
            elif path.is_file():
                shutil.copy2(path, target / path.name)  # small state files the build rewrites
    record = REPO / "build" / "load-checks.json"  # the passed load checks of the tree's current images
    if record.is_file():
        shutil.copy2(record, root / "build" / record.name)


def _docker_lines(*args: str) -> list[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def our_tags() -> dict[str, str]:
    """Every ``expforge/*`` reference -> image ID."""
    listing = ("image", "ls", "--filter", "reference=expforge/*", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    rows = _docker_lines(*listing)
    return dict(row.split(" ", 1) for row in rows)  # type: ignore[misc]


def run_case(root: Path, name: str, keep_old: int) -> dict[str, Any]:
    """One ``build_images.py images`` in the copy; its wall time, what it built and the load around it."""
    load_before = os.getloadavg()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(root / "containers" / "build_images.py"), "images", "--keep-old", str(keep_old)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    log = proc.stderr.splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"bench_images: case {name} failed:\n" + "\n".join(log[-30:]))
    summary = next((line for line in reversed(log) if " built, " in line), "")
    match = re.search(r"(\d+) built", summary)
    wheel = next((line for line in log if "project wheel built in" in line), "")
    result: dict[str, Any] = {
        "seconds": round(seconds, 1),
        "built": int(match.group(1)) if match else 0,
        "dependency_layers_built": sum(1 for line in log if re.search(r"built \S+:deps-\S+ in", line)),
        "load_checks_run": sum(1 for line in log if "(code layer) in" in line and "load check run" in line),
        "load_checks_kept": sum(1 for line in log if "(code layer) in" in line and "load check passed before" in line),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "project_wheel": wheel.split("build_images: ", 1)[-1] or None,
    }
    print(f"bench_images: {name}: {result['seconds']} s, {result['built']} built", file=sys.stderr, flush=True)
    result["log"] = [line.removeprefix("build_images: ") for line in log]
    return result


def append_line(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def add_to_extra(pyproject: Path, extra: str, requirement: str) -> None:
    """Add a requirement to one extra of the copy's pyproject.toml (a text edit, as a developer would)."""
    text = pyproject.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(extra)} = \[", re.MULTILINE)
    if not pattern.search(text):
        raise SystemExit(f"bench_images: no `{extra} = [` line in pyproject.toml")
    pyproject.write_text(pattern.sub(f'{extra} = ["{requirement}", ', text, count=1), encoding="utf-8")


def restore(before: dict[str, str]) -> None:
    """Remove every tag the benchmark made; point each ``:latest`` back at the image it named before."""
    after = our_tags()
    for ref, ident in before.items():
        if ref.endswith(":latest") and after.get(ref) != ident:
            subprocess.run(["docker", "tag", ident, ref], capture_output=True, check=False)
    created = sorted(ref for ref in after if ref not in before and not ref.endswith(":latest"))
    if created:
        subprocess.run(["docker", "image", "rm", *created], capture_output=True, check=False)
    print(f"bench_images: removed {len(created)} image tag(s) the benchmark made", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "images.json")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["no_op", "one_line_edit", "one_line_edit_shared", "one_extra_changed"],
        choices=["no_op", "one_line_edit", "one_line_edit_shared", "one_extra_changed"],
    )
    parser.add_argument("--keep-tree", action="store_true", help="leave build/bench-images/tree in place")
    args = parser.parse_args()
    root = WORK / "tree"
    report: dict[str, Any] = {
        "benchmark": "make images in the developer's loop (build_images.py images in a copy of the tree)",
        "command": ".venv/bin/python bench/bench_images.py (or make bench-images; takes /tmp/images.lock itself)",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "cases": {},
    }
    LOCK.touch(exist_ok=True)
    with LOCK.open("r") as lock:
        print("bench_images: waiting for /tmp/images.lock", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = our_tags()
        try:
            make_tree(root)
            report["sync"] = run_case(root, "sync", keep_old=1000)
            for case in args.cases:
                if case == "one_line_edit":
                    append_line(root / LEAF_MODULE, "\n# bench_images: a one-line edit\n")
                elif case == "one_line_edit_shared":
                    append_line(root / SHARED_MODULE, "\n# bench_images: a one-line edit\n")
                elif case == "one_extra_changed":
                    add_to_extra(root / "pyproject.toml", "tune", "joblib>=1.3")
                report["cases"][case] = run_case(root, case, keep_old=1000)
        finally:
            restore(before)
            if not args.keep_tree:
                shutil.rmtree(WORK, ignore_errors=True)
    write_report(report, args.output, echo=False)
    summary = {case: value["seconds"] for case, value in report["cases"].items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
