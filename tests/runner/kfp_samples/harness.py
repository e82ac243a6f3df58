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
import signal
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
# Arguments for pipelines whose parameters have no defaults ("{workdir}" is the worker's scratch directory).
ARGUMENTS: dict[str, dict[str, Any]] = {
    "valid/arguments_parameters.py": {"param1": "hello", "param2": "world"},
    "valid/container_io.py": {"text": "hello"},
    "valid/container_with_artifact_output.py": {"num_epochs": 2},
    "valid/container_with_concat_placeholder.py": {"text1": "hello"},
    "valid/containerized_python_component.py": {"message1": "a", "message2": "b"},
    "valid/critical/add_numbers.py": {"a": 1, "b": 2},
    "valid/env_var.py": {"env_var": "PATH"},  # KFP's own test names a variable its cluster sets (http_proxy)
    "valid/critical/two_step_pipeline_containerized.py": {"text": "Hello KFP Containerized!"},
    "valid/essential/concat_message.py": {"message1": "a", "message2": "b"},
    "valid/essential/dict_input.py": {"struct": {"a": 1, "b": [2]}},
    "valid/essential/lightweight_python_functions_pipeline.py": {"message": "hello"},
    "valid/essential/lightweight_python_functions_with_outputs.py": {
        "first_message": "a",
        "first_number": 1,
        "second_message": "b",
        "second_number": 2,
    },
    "valid/identity.py": {"value": "x"},
    "valid/local_execution/local_execution_pipeline_with_ignore_upstream_failure.py": {
        "marker_path": "{workdir}/marker.txt"
    },
    "valid/local_execution/local_execution_pipeline_with_retry.py": {"counter_path": "{workdir}/counter.txt"},
    "valid/pipeline_with_parallelfor_parallelism.py": {"loop_parameter": ["a", "b"]},
    "valid/pipeline_with_parallelfor_pipeline_param.py": {"loop_parameter": ["a", "b"], "prefix": "p"},
    "valid/preprocess.py": {"input_dict_parameter": {"a": 1}, "input_list_parameter": [1, 2], "message": "m"},
    "valid/sequential_v1.py": {"param1": "a", "param2": "b"},
}
# Pipelines that contain a task failing on purpose: the run must end FAILED (besides everything under failing/).
EXPECTED_FAILED = {
    "core/exit_handler/exit_handler.py",
    "valid/pipeline_as_exit_task.py",
    "valid/pipeline_with_task_final_status.py",
    "valid/pipeline_with_task_using_ignore_upstream_failure.py",
    "valid/local_execution/local_execution_pipeline_with_ignore_upstream_failure.py",
}
# Files a run must leave behind to pass (relative to the worker's scratch directory), with their content.
MARKERS = {
    "valid/local_execution/local_execution_pipeline_with_ignore_upstream_failure.py": ("marker.txt", "cleanup_ran")
}
# Pipelines that sleep for many minutes by design (KFP uses them to test cancellation and timeouts).
LONG_BY_DESIGN = {
    "valid/long_running.py": "two tasks that sleep 5 minutes each",
    "valid/take_nap.py": "sleeps 15 minutes",
    "valid/take_nap_pipeline_root.py": "sleeps 15 minutes",
}
# A sample whose module would reach the network when imported is not imported at all.
_NETWORK_AT_IMPORT = ("load_component_from_url", "kfp.Client(", "client.Client(")
# Samples that assert a platform-specific value this runner deliberately does not give (it follows Vertex AI).
DIVERGENCES: dict[str, str] = {
    "valid/critical/pipeline_with_input_status_state.py": (
        "asserts PipelineTaskFinalStatus.state == 'COMPLETE' (open-source KFP's ML Metadata state); "
        "this runner passes Vertex AI's 'SUCCEEDED'"
    ),
}
_PIP_INSTALL = re.compile(r"pip install (?P<args>[^&]*?)&&")
_PIP_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "--trusted-host", "--find-links", "-f"}
_FAILED_OK = "finished with status FAILURE"


def discover(only: str | None) -> list[str]:
    """Sample paths relative to this folder, in a stable order."""
    found = sorted(str(p.relative_to(HERE)) for sub in ("valid", "core") for p in (HERE / sub).rglob("*.py"))
    return [path for path in found if only is None or only in path]


def expected_state(sample: str) -> str:
    """``FAILED`` for KFP's deliberately failing pipelines, else ``SUCCEEDED``."""
    return "FAILED" if "/failing/" in f"/{sample}" or sample in EXPECTED_FAILED else "SUCCEEDED"


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
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for call in ast.walk(node):
                if not (isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "compile"):
                    continue
                given = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "pipeline_func")]
                for argument in given:
                    if isinstance(argument, ast.Name) and argument.id in components:
                        return components[argument.id]
    pipelines = [value for value in components.values() if isinstance(value, GraphComponent)]
    if not pipelines:
        raise LookupError("defines no pipeline")
    return pipelines[-1]


def _unsatisfied_packages(spec_path: Path) -> list[str]:
    """Requirements the compiled components would ``pip install`` that this environment does not satisfy."""
    from importlib import metadata

    import yaml
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    document = next(yaml.safe_load_all(spec_path.read_text(encoding="utf-8")))
    executors = (document.get("deploymentSpec") or {}).get("executors") or {}
    lines = [
        " ".join(
            [*(executor.get("container") or {}).get("command", []), *(executor.get("container") or {}).get("args", [])]
        )
        for executor in executors.values()
    ]
    for match in _PIP_INSTALL.finditer(" ".join(lines).replace("\n", " ")):
        tokens = re.findall(r"'([^']*)'|(\S+)", match["args"])
        words = [quoted or bare for quoted, bare in tokens]
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            if word in _PIP_OPTIONS_WITH_VALUE:
                skip = True
                continue
            if word.startswith("-") or not word:
                continue
            requirement = word
            try:
                parsed = Requirement(requirement)
            except InvalidRequirement:
                missing.append(requirement)
                continue
            if parsed.marker is not None and not parsed.marker.evaluate():
                continue
            try:
                installed = metadata.version(parsed.name)
            except metadata.PackageNotFoundError:
                missing.append(requirement)
                continue
            if parsed.specifier and not parsed.specifier.contains(installed, prereleases=True):
                missing.append(f"{requirement} (have {installed})")
    return sorted(set(missing))


_URL = re.compile(r"^(?:https?|gs|s3|minio|oci)://")


def _reaches_network(spec_path: Path) -> str | None:
    """Why running this compiled spec would reach the network: gsutil, or a URL (https, gs, s3, minio) as a
    constant input or parameter default (an importer's URI included)."""
    import yaml

    text = spec_path.read_text(encoding="utf-8")
    if "gsutil" in text:
        return "runs gsutil (Cloud Storage)"

    def walk(node: Any) -> str | None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("constant", "defaultValue") and isinstance(value, str) and _URL.match(value):
                    return value
                found = walk(value)
                if found:
                    return found
        elif isinstance(node, list):
            for value in node:
                found = walk(value)
                if found:
                    return found
        return None

    url = walk(next(yaml.safe_load_all(text)))
    return f"takes the URL {url}" if url else None


def _wants_gpu(spec_path: Path) -> bool:
    import yaml

    for document in yaml.safe_load_all(spec_path.read_text(encoding="utf-8")):
        executors = ((document or {}).get("deploymentSpec") or {}).get("executors") or {}
        for executor in executors.values():
            accelerator = ((executor.get("container") or {}).get("resources") or {}).get("accelerator")
            if accelerator:
                return True
    return False


def _required_artifact_inputs(spec_path: Path) -> list[str]:
    import yaml

    document = next(yaml.safe_load_all(spec_path.read_text(encoding="utf-8")))
    artifacts = ((document.get("root") or {}).get("inputDefinitions") or {}).get("artifacts") or {}
    return sorted(name for name, spec in artifacts.items() if not spec.get("isOptional"))


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
    if sample in LONG_BY_DESIGN:
        return {"status": "not-runnable", "why": f"too long for this harness by design: {LONG_BY_DESIGN[sample]}"}
    if any(marker in source for marker in _NETWORK_AT_IMPORT):
        return {"status": "not-runnable", "why": "reaches the network (a KFP server or a URL) when imported"}
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
    network = _reaches_network(spec_path)
    if network:
        return {"status": "not-runnable", "why": f"needs the network: {network}"}
    if _wants_gpu(spec_path):
        return {"status": "not-runnable", "why": "requests a GPU (this host has none)"}
    inputs = _required_artifact_inputs(spec_path)
    if inputs:
        return {"status": "not-runnable", "why": f"takes pipeline input artifacts ({', '.join(inputs)})"}
    arguments = {
        name: value.replace("{workdir}", str(workdir)) if isinstance(value, str) else value
        for name, value in ARGUMENTS.get(sample, {}).items()
    }
    started = time.monotonic()
    if runner == "ours":
        state, detail = _run_ours(spec_path, arguments, workdir)
    else:
        state, detail = _run_kfp_local(pipeline, arguments, workdir)
    expected = expected_state(sample)
    passed = state == expected
    if passed and sample in MARKERS:
        name, content = MARKERS[sample]
        marker = workdir / name
        passed = marker.is_file() and marker.read_text(encoding="utf-8") == content
        detail = detail if passed else f"{detail} (expected {name} to contain {content!r})"
    outcome = {
        "status": "pass" if passed else "fail",
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
    """One worker process; on timeout it gets SIGINT (our runner then cancels its tasks), then SIGKILL."""
    with tempfile.TemporaryDirectory(prefix="kfp-sample-") as workdir:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", sample, runner, workdir]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_offline_env(),
            cwd=workdir,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
            return {"status": "fail", "state": "TIMEOUT", "detail": f"did not finish within {timeout:.0f} s"}
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            return {"status": "fail", "state": "CRASHED", "detail": f"worker exit {process.returncode}: {tail[:400]}"}
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
        # A harness started in the background inherits SIGINT ignored; the timeout's SIGINT must reach the runner
        # (ours then cancels its tasks).
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
