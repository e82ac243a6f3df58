"""Run KFP's own sample and test pipelines with this project's runner and with ``kfp.local``, in the same run.

The pipelines are the Python sources under ``valid/`` (``test_data/sdk_compiled_pipelines/valid`` of
kubeflow/pipelines) and ``core/`` (``samples/core``), copied verbatim (see README.md). For each one the harness,
in a fresh worker process per pipeline and runner:

1. imports the module and finds its pipeline (the one its ``__main__`` block compiles, else the last defined);
2. compiles it with the installed kfp; a sample that does not import or compile here (it needs ``kfp.kubernetes``,
   Google Cloud components or a file from KFP's repository) is *not runnable* for both runners alike;
3. checks the compiled spec for what no local runner can provide offline — packages its components would
   ``pip install`` that are not installed (pip is forced offline: ``PIP_NO_INDEX``, no config, so nothing is ever
   installed into this environment), or a GPU — and marks those *not runnable* for both;
4. runs it: ours with ``run_pipeline(backend="subprocess")`` on the compiled YAML; kfp.local with
   ``SubprocessRunner(use_venv=False)`` on the pipeline function. A sample under ``failing/`` passes when the run
   fails; every other sample passes when it succeeds. A refusal (``kfp.local`` does not run container
   components) is a run that did not pass.

Usage: ``python tests/runner/kfp_samples/harness.py [--only SUBSTRING] [--jobs N] [--out FILE]``. It prints one
line per pipeline and writes a JSON report (counts, then one entry per pipeline with both outcomes).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RUNNERS = ("ours", "kfp-local")
# Arguments for pipelines whose parameters have no defaults (values taken from the samples' own tests).
ARGUMENTS: dict[str, dict[str, Any]] = {
    "valid/pipeline_with_importer.py": {"dataset2": "gs://ml-pipeline-playground/shakespeare2.txt"},
}
# Samples that assert a platform-specific value this runner deliberately does not give (it follows Vertex AI).
DIVERGENCES: dict[str, str] = {
    "valid/critical/pipeline_with_input_status_state.py": (
        "asserts PipelineTaskFinalStatus.state == 'COMPLETE' (open-source KFP's ML Metadata state); "
        "this runner passes Vertex AI's 'SUCCEEDED'"
    ),
}
_PIP_INSTALL = re.compile(r"pip install (?:--quiet )?(?:--no-warn-script-location )?(?P<reqs>(?:'[^']+' ?)+)")
_COMPILED_NAME = re.compile(r"(?:pipeline_func\s*=\s*|compile\(\s*)(?P<name>[A-Za-z_]\w*)")
_FAILED_OK = "finished with status FAILURE"


def discover(only: str | None) -> list[str]:
    """Sample paths relative to this folder, in a stable order."""
    found = sorted(str(p.relative_to(HERE)) for sub in ("valid", "core") for p in (HERE / sub).rglob("*.py"))
    return [path for path in found if only is None or only in path]


def expected_state(sample: str) -> str:
    """``FAILED`` for KFP's deliberately failing pipelines, else ``SUCCEEDED``."""
    return "FAILED" if "/failing/" in f"/{sample}" else "SUCCEEDED"


# --- the worker: one sample, one runner ----------------------------------------------------------------------


def _install_repo_shims(workdir: Path) -> None:
    """Two samples import ``sdk.python.test.test_utils.file_utils`` from KFP's repository to find compiled specs;
    a stand-in module points it at the copies kept here."""
    test_data = workdir / "test_data"
    (test_data / "sdk_compiled_pipelines").mkdir(parents=True, exist_ok=True)
    link = test_data / "sdk_compiled_pipelines" / "valid"
    if not link.exists():
        link.symlink_to(HERE / "valid")
    file_utils = types.ModuleType("sdk.python.test.test_utils.file_utils")

    class FileUtils:
        TEST_DATA = str(test_data)
        SDK_COMPILED_FILES = str(test_data / "sdk_compiled_pipelines")
        VALID_PIPELINE_FILES = str(link)
        ESSENTIAL_PIPELINE_FILES = str(link / "essential")
        CRITICAL_PIPELINE_FILES = str(link / "critical")

    file_utils.FileUtils = FileUtils  # type: ignore[attr-defined]
    for name in ("sdk", "sdk.python", "sdk.python.test", "sdk.python.test.test_utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["sdk.python.test.test_utils.file_utils"] = file_utils


def _pick_pipeline(module: types.ModuleType, source: str) -> Any:
    """The pipeline (or lone component, which KFP compiles as a one-task pipeline) the sample's own ``__main__``
    block compiles; else the last pipeline it defines."""
    from kfp.dsl.base_component import BaseComponent
    from kfp.dsl.graph_component import GraphComponent

    components = {name: value for name, value in vars(module).items() if isinstance(value, BaseComponent)}
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for match in _COMPILED_NAME.finditer(ast.unparse(node)):
                if match["name"] in components:
                    return components[match["name"]]
    pipelines = [value for value in components.values() if isinstance(value, GraphComponent)]
    if not pipelines:
        raise LookupError("defines no pipeline")
    return pipelines[-1]


def _unsatisfied_packages(spec_path: Path) -> list[str]:
    """Requirements the compiled components would ``pip install`` that this environment does not satisfy."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    text = spec_path.read_text(encoding="utf-8")
    for match in _PIP_INSTALL.finditer(text.replace("\\\n", " ").replace("\n", " ")):
        for requirement in re.findall(r"'([^']+)'", match["reqs"]):
            try:
                parsed = Requirement(requirement)
            except InvalidRequirement:
                missing.append(requirement)
                continue
            try:
                installed = metadata.version(parsed.name)
            except metadata.PackageNotFoundError:
                missing.append(requirement)
                continue
            if parsed.specifier and not parsed.specifier.contains(installed, prereleases=True):
                missing.append(f"{requirement} (have {installed})")
    return sorted(set(missing))


def _wants_gpu(spec_path: Path) -> bool:
    import yaml

    for document in yaml.safe_load_all(spec_path.read_text(encoding="utf-8")):
        executors = ((document or {}).get("deploymentSpec") or {}).get("executors") or {}
        for executor in executors.values():
            accelerator = ((executor.get("container") or {}).get("resources") or {}).get("accelerator")
            if accelerator:
                return True
    return False


def _run_ours(spec_path: Path, arguments: dict[str, Any], workdir: Path) -> tuple[str, str]:
    from expforge.errors import ExpforgeError
    from expforge.local_runner.api import run_pipeline
    from expforge.local_runner.progress import PlainProgress

    try:
        result = run_pipeline(
            spec_path,
            arguments,
            backend="subprocess",
            root=workdir / "runs",
            use_cache=False,
            tracking="off",
            progress=PlainProgress(sys.stderr),
        )
    except ExpforgeError as exc:
        return "REFUSED", str(exc)
    return result.state, str(result.record.get("error") or "")


def _run_kfp_local(pipeline: Any, arguments: dict[str, Any], workdir: Path) -> tuple[str, str]:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "kfp-root"),
        workspace_root=str(workdir / "kfp-workspace"),
    )
    try:
        pipeline(**arguments)
    except RuntimeError as exc:
        message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
        return ("FAILED" if _FAILED_OK in message or "finished with status" in message else "REFUSED"), message
    except Exception as exc:  # noqa: BLE001 - kfp.local's own refusals (NotImplementedError, ValueError, ...)
        return "REFUSED", f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return "SUCCEEDED", ""


def worker(sample: str, runner: str, workdir: Path) -> dict[str, Any]:
    """Import, compile, check and run one sample with one runner; the outcome as a JSON-able dict."""
    from kfp import compiler

    path = HERE / sample
    source = path.read_text(encoding="utf-8")
    _install_repo_shims(workdir)
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"kfp_sample_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        with contextlib.redirect_stdout(sys.stderr):
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        pipeline = _pick_pipeline(module, source)
    except Exception as exc:  # noqa: BLE001 - a sample that cannot load here is reported, not fatal
        return {"status": "not-runnable", "why": f"import: {type(exc).__name__}: {str(exc)[:200]}"}
    spec_path = workdir / "pipeline.yaml"
    try:
        compiler.Compiler().compile(pipeline, str(spec_path))
    except Exception as exc:  # noqa: BLE001
        return {"status": "not-runnable", "why": f"compile: {type(exc).__name__}: {str(exc)[:200]}"}
    missing = _unsatisfied_packages(spec_path)
    if missing:
        return {"status": "not-runnable", "why": f"needs packages not installed here: {', '.join(missing)}"}
    if _wants_gpu(spec_path):
        return {"status": "not-runnable", "why": "requests a GPU (this host has none)"}
    arguments = ARGUMENTS.get(sample, {})
    started = time.monotonic()
    if runner == "ours":
        state, detail = _run_ours(spec_path, arguments, workdir)
    else:
        state, detail = _run_kfp_local(pipeline, arguments, workdir)
    expected = expected_state(sample)
    outcome = {
        "status": "pass" if state == expected else "fail",
        "pipeline": getattr(pipeline, "name", "?"),
        "state": state,
        "expected": expected,
        "detail": detail[:400],
        "seconds": round(time.monotonic() - started, 1),
    }
    if outcome["status"] == "fail" and sample in DIVERGENCES:
        outcome["divergence"] = DIVERGENCES[sample]
    return outcome


# --- the parent: every sample, both runners ------------------------------------------------------------------


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PIP_NO_INDEX="1",
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_FIND_LINKS="",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _run_worker(sample: str, runner: str, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kfp-sample-") as workdir:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", sample, runner, workdir]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=_offline_env(), cwd=workdir
            )
        except subprocess.TimeoutExpired:
            return {"status": "fail", "state": "TIMEOUT", "detail": f"did not finish within {timeout:.0f} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            return {"status": "fail", "state": "CRASHED", "detail": f"worker exit {done.returncode}: {tail[:400]}"}
        return json.loads(lines[-1])


def _summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Any] = {"pipelines": len(entries)}
    for runner in RUNNERS:
        outcomes = [entry[runner]["status"] for entry in entries]
        counts[runner] = {
            "run": sum(status in ("pass", "fail") for status in outcomes),
            "pass": outcomes.count("pass"),
            "not_runnable": outcomes.count("not-runnable"),
        }
    return counts


def main() -> int:
    """Run the harness (or, with ``--worker``, one sample)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("SAMPLE", "RUNNER", "WORKDIR"), help=argparse.SUPPRESS)
    parser.add_argument("--only", help="run only samples whose path contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="workers at once (default 2)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per sample and runner")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "kfp-conformance.json")
    args = parser.parse_args()
    if args.worker:
        sample, runner, workdir = args.worker
        os.chdir(workdir)
        print(json.dumps(worker(sample, runner, Path(workdir))))
        return 0
    samples = discover(args.only)
    started = time.monotonic()
    jobs = [(sample, runner) for sample in samples for runner in RUNNERS]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(_run_worker, s, r, args.timeout): (s, r) for s, r in jobs}
        for future in concurrent.futures.as_completed(futures):
            sample, runner = futures[future]
            results[(sample, runner)] = outcome = future.result()
            why = outcome.get("why") or outcome.get("detail") or ""
            print(f"{outcome['status']:>12}  {runner:9}  {sample}  {why[:150]}", flush=True)
    entries = [{"sample": s, **{r: results[(s, r)] for r in RUNNERS}} for s in samples]
    report = {"summary": _summary(entries), "seconds": round(time.monotonic() - started, 1), "samples": entries}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    temporary.replace(args.out)
    print(json.dumps(report["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
