"""Benchmark of the local runner against ``kfp.local`` (2.17), measured in the same process, written as JSON.

(a) ``parallel_for``: four independent 2-second tasks in a ``ParallelFor`` — wall time of the whole run
    (ours: subprocess backend at the default parallelism and at the loop's width; kfp.local: SubprocessRunner).
(b) ``docker_overhead``: a chain of N no-op Python tasks on Docker — per-task overhead
    ``(wall − Σ in-container time) / N``, where in-container time is each container's start→die span taken
    from the Docker daemon's own event stream (the same measurement for both runners).
(c) ``cached_rerun``: hook for a real pipeline (``--pipeline x.yaml -p k=v``): a cold run, then a re-run served
    from the cache — wall times and how many tasks were cached.
(d) ``edit_to_result``: the developer's loop for one real step (``sample-configs``): edit the step library in a
    copy of the tree, then run — ours with ``expforge run --dev`` in the step's image (no image build), kfp.local
    with the same function as a lightweight component on its SubprocessRunner (local code, no image at all).

Defaults matter here: (a) runs with the runner's default admission (tasks without requests count as 0.5 CPU),
the target being 4 × 2 s in at most 2.3 s.

When kfp.local cannot run a case here, the reason is recorded in the JSON instead of failing the benchmark.
(No ``from __future__ import annotations``: KFP reads the components' annotations as real types.)
"""

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from expforge.atomic import staged_file
from expforge.local_runner.api import RunResult, default_parallelism, run_pipeline
from expforge.local_runner.docker_backend import docker_client
from expforge.local_runner.resources import default_max_parallel
from expforge.local_runner.values import parse_cli_params

REPO = Path(__file__).resolve().parents[1]
SLEEP_S = 2.0
LOOP_WIDTH = 4


def base_image() -> str | None:
    """The image used for Docker measurements: ``EXPFORGE_TEST_IMAGE`` or ``build/images.json`` ``base``."""
    if os.environ.get("EXPFORGE_TEST_IMAGE"):
        return os.environ["EXPFORGE_TEST_IMAGE"]
    try:
        return json.loads((REPO / "build" / "images.json").read_text())["base"]
    except (OSError, ValueError, KeyError):
        return None


def build_pipelines(image: str) -> dict[str, Any]:
    """The benchmark pipelines, with components in ``image`` (lightweight, no pip install)."""

    @dsl.component(base_image=image, install_kfp_package=False)
    def sleep_task(seconds: float, index: int) -> int:
        import time

        time.sleep(seconds)
        return index

    @dsl.component(base_image=image, install_kfp_package=False)
    def noop(value: int) -> int:
        return value + 1

    @dsl.pipeline(name="bench-parallel-for")
    def parallel_for(seconds: float = SLEEP_S) -> None:
        with dsl.ParallelFor(list(range(LOOP_WIDTH))) as index:
            sleep_task(seconds=seconds, index=index)

    def chain(length: int) -> Any:
        @dsl.pipeline(name=f"bench-chain-{length}")
        def chain_pipeline() -> int:
            task = noop(value=0).set_caching_options(False)
            for _ in range(length - 1):
                task = noop(value=task.output).set_caching_options(False)
            return task.output

        return chain_pipeline

    return {"parallel_for": parallel_for, "chain": chain}


def compile_to(pipeline: Any, directory: Path) -> Path:
    path = directory / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def timed(action: Callable[[], Any]) -> tuple[float, Any, str | None]:
    """``(seconds, result, error)``; an exception becomes a recorded error, not a crash."""
    started = time.perf_counter()
    try:
        result = action()
    except BaseException as exc:  # kfp.local raises many kinds; record them all
        if isinstance(exc, KeyboardInterrupt):
            raise
        return time.perf_counter() - started, None, f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return time.perf_counter() - started, result, None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """kfp.local prints every log line of every task; keep the benchmark output readable."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def kfp_local(runner: Any, pipeline: Any, work: Path) -> tuple[float, Any, str | None]:
    """Run a pipeline function with kfp.local and time it."""
    from kfp import local

    local.init(runner=runner, pipeline_root=str(work / "kfp-local-outputs"))
    with quiet():
        return timed(pipeline)


# --- (a) ----------------------------------------------------------------------------------------------------


def bench_parallel_for(pipelines: dict[str, Any], work: Path, include_kfp_local: bool) -> dict[str, Any]:
    spec = compile_to(pipelines["parallel_for"], work)
    result: dict[str, Any] = {
        "tasks": LOOP_WIDTH,
        "task_seconds": SLEEP_S,
        "cores": default_parallelism(),
        "ideal_seconds": SLEEP_S,
        "target_seconds": 2.3,
    }
    for label, slots in (("ours_subprocess_default_parallelism", None), ("ours_subprocess_max_parallel_4", 4)):
        seconds, run, error = timed(
            lambda slots=slots: run_pipeline(
                spec, backend="subprocess", root=work / "runs", max_parallel=slots, use_cache=False
            )
        )
        result[label] = {
            "wall_seconds": round(seconds, 2),
            "max_parallel": slots or default_max_parallel(),
            "state": run.state if run else None,
            "error": error,
        }
    client, _ = docker_client()
    if client is not None:
        client.close()
        seconds, run, error = timed(lambda: run_pipeline(spec, backend="docker", root=work / "runs", use_cache=False))
        result["ours_docker_default_parallelism"] = {
            "wall_seconds": round(seconds, 2),
            "max_parallel": default_max_parallel(),
            "state": run.state if run else None,
            "error": error,
        }
    if include_kfp_local:
        from kfp import local

        seconds, _, error = kfp_local(local.SubprocessRunner(use_venv=False), pipelines["parallel_for"], work)
        result["kfp_local_subprocess"] = {"wall_seconds": round(seconds, 2), "error": error}
    return result


# --- (b) ----------------------------------------------------------------------------------------------------


def container_seconds(client: Any, image: str, since: float, until: float) -> list[float]:
    """Start→die spans of every container of ``image`` between two instants, from the daemon's events."""
    starts: dict[str, int] = {}
    spans = []
    events = client.events(
        since=int(since) - 1, until=int(until) + 2, decode=True, filters={"type": "container", "image": image}
    )
    for event in events:
        status, ident, nanos = event.get("status"), event.get("id"), event.get("timeNano", 0)
        if not (since - 1 <= nanos / 1e9 <= until + 1):
            continue
        if status == "start":
            starts[ident] = nanos
        elif status == "die" and ident in starts:
            spans.append((nanos - starts.pop(ident)) / 1e9)
    return spans


def bench_docker_overhead(
    pipelines: dict[str, Any], work: Path, image: str, length: int, include_kfp_local: bool
) -> dict[str, Any]:
    client, problem = docker_client()
    if client is None:
        return {"skipped": f"no Docker daemon ({problem})"}
    spec = compile_to(pipelines["chain"](length), work)
    result: dict[str, Any] = {"chain_length": length, "image": image}

    def measure(action: Callable[[], Any]) -> dict[str, Any]:
        since = time.time()
        seconds, outcome, error = timed(action)
        spans = container_seconds(client, image, since, time.time())
        inside = sum(spans)
        entry: dict[str, Any] = {
            "wall_seconds": round(seconds, 3),
            "containers": len(spans),
            "in_container_seconds": round(inside, 3),
            "overhead_per_task_seconds": round((seconds - inside) / length, 3) if len(spans) == length else None,
            "error": error,
        }
        if len(spans) != length and error is None:
            entry["error"] = f"expected {length} containers, saw {len(spans)}"
        return entry | ({"state": outcome.state} if isinstance(outcome, RunResult) else {})

    result["ours_docker"] = measure(lambda: run_pipeline(spec, backend="docker", root=work / "runs", use_cache=False))
    if include_kfp_local:
        from kfp import local

        # As root, kfp.local would leave the image's non-root user unable to write its outputs; give it root so
        # the comparison measures speed, not that permission problem.
        user = f"{os.getuid()}:{os.getgid()}"

        def kfp_local_run() -> Any:
            local.init(runner=local.DockerRunner(user=user), pipeline_root=str(work / "kfp-local-outputs"))
            with quiet():
                return pipelines["chain"](length)()

        result["kfp_local_docker"] = measure(kfp_local_run) | {"container_user": user}
    client.close()
    return result


# --- (c) ----------------------------------------------------------------------------------------------------


def bench_cached_rerun(spec: Path, params: dict[str, str], backend: str, work: Path) -> dict[str, Any]:
    """A real pipeline, cold then re-run from the cache (same root, so the cache is shared)."""
    root = work / "cached-runs"
    cold_seconds, cold, cold_error = timed(lambda: run_pipeline(spec, params, backend=backend, root=root))
    warm_seconds, warm, warm_error = timed(lambda: run_pipeline(spec, params, backend=backend, root=root))

    def describe(seconds: float, run: Any, error: str | None) -> dict[str, Any]:
        if run is None:
            return {"wall_seconds": round(seconds, 2), "error": error}
        return {
            "wall_seconds": round(seconds, 2),
            "state": run.state,
            "tasks": len(run.tasks),
            "cached_tasks": sum(1 for task in run.tasks.values() if task.get("cached")),
        }

    return {
        "pipeline": str(spec),
        "params": params,
        "backend": backend,
        "cold": describe(cold_seconds, cold, cold_error),
        "cached": describe(warm_seconds, warm, warm_error),
    }


# --- (d) ----------------------------------------------------------------------------------------------------

DEV_STEP = "sample-configs"
EDIT = '\n\ndef sample_trials(*args, **kwargs):\n    return [{"trial_id": "edited", "config": {}}]\n'


def _copy_tree(target: Path) -> Path:
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "components", "pipelines", "local_runner"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def bench_edit_to_result(work: Path, include_kfp_local: bool) -> dict[str, Any]:
    """Edit → result for one real step: ours ``--dev`` (Docker, the step's image) vs kfp.local (subprocess)."""
    from expforge.components._adapter import pinned_images
    from expforge.components.sample_configs import sample_configs
    from expforge.tune.space import DEFAULT_SEARCH_SPACE

    try:
        image = json.loads((REPO / "build" / "images.json").read_text())[DEV_STEP]
    except (OSError, ValueError, KeyError):
        return {"skipped": f"{DEV_STEP} is not in build/images.json (make images)"}
    client, problem = docker_client()
    if client is None:
        return {"skipped": f"no Docker daemon ({problem})"}
    client.close()
    with pinned_images({DEV_STEP: image}):

        @dsl.pipeline(name="bench-dev-loop")
        def dev_loop() -> list:
            return sample_configs(search_space=DEFAULT_SEARCH_SPACE, count=4).output

    spec = compile_to(dev_loop, work)
    tree = _copy_tree(work / "tree")
    space = tree / "src" / "expforge" / "tune" / "space.py"
    root = work / "dev-runs"
    result: dict[str, Any] = {"step": DEV_STEP, "image": image}
    with _inside(tree):
        first, run, error = timed(lambda: run_pipeline(spec, backend="docker", root=root, dev=True))
        result["ours_dev_first_run"] = {
            "wall_seconds": round(first, 2),
            "state": run.state if run else None,
            "error": error,
        }
        with space.open("a", encoding="utf-8") as handle:
            handle.write(EDIT)
        seconds, run, error = timed(lambda: run_pipeline(spec, backend="docker", root=root, dev=True))
    task = (run.tasks.get(DEV_STEP) or {}) if run else {}
    result["ours_dev_after_edit"] = {
        "wall_seconds": round(seconds, 2),
        "state": run.state if run else None,
        "cached": task.get("cached"),
        "saw_the_edit": (task.get("parameters") or {}).get("Output") == [{"trial_id": "edited", "config": {}}],
        "image_builds": 0,
        "error": error,
    }
    if include_kfp_local:
        from kfp import local

        @dsl.component(base_image=image, install_kfp_package=False)
        def sample_light(count: int) -> list:
            from expforge.tune.space import DEFAULT_SEARCH_SPACE, SearchSpace, sample_trials

            space = SearchSpace.from_dict(DEFAULT_SEARCH_SPACE, source="search_space")
            return sample_trials(space, count, 0, "", "")

        @dsl.pipeline(name="bench-dev-loop-kfp-local")
        def light() -> list:
            return sample_light(count=4).output

        seconds, _, error = kfp_local(local.SubprocessRunner(use_venv=False), light, work)
        result["kfp_local_subprocess_lightweight"] = {"wall_seconds": round(seconds, 2), "error": error}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("bench/results/runner.json"))
    parser.add_argument("--chain-length", type=int, default=8, help="No-op tasks in the Docker overhead chain.")
    parser.add_argument("--image", default=None, help="Image for the benchmark components (default: the base image).")
    parser.add_argument("--skip-kfp-local", action="store_true", help="Measure only our runner.")
    parser.add_argument("--pipeline", type=Path, default=None, help="(c) a compiled pipeline to run cold, then cached.")
    parser.add_argument("-p", "--param", action="append", default=[], help="(c) pipeline parameter KEY=VALUE.")
    parser.add_argument("--backend", default="auto", help="(c) backend for the cached re-run.")
    args = parser.parse_args()

    image = args.image or base_image() or "expforge/base:latest"
    report: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cores": default_parallelism(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "image": image,
    }
    pipelines = build_pipelines(image)
    with tempfile.TemporaryDirectory(prefix="expforge-bench-runner-") as tmp:
        work = Path(tmp)
        for name, bench in (
            ("parallel_for", lambda: bench_parallel_for(pipelines, work, not args.skip_kfp_local)),
            (
                "docker_overhead",
                lambda: bench_docker_overhead(pipelines, work, image, args.chain_length, not args.skip_kfp_local),
            ),
        ):
            print(f"bench_runner: {name} ...", file=sys.stderr, flush=True)
            try:
                report[name] = bench()
            except Exception:
                report[name] = {"error": traceback.format_exc(limit=3)}
        print("bench_runner: edit_to_result ...", file=sys.stderr, flush=True)
        try:
            report["edit_to_result"] = bench_edit_to_result(work, not args.skip_kfp_local)
        except Exception:
            report["edit_to_result"] = {"error": traceback.format_exc(limit=3)}
        if args.pipeline is not None:
            print("bench_runner: cached_rerun ...", file=sys.stderr, flush=True)
            report["cached_rerun"] = bench_cached_rerun(args.pipeline, parse_cli_params(args.param), args.backend, work)
        else:
            report["cached_rerun"] = {"skipped": "no --pipeline given (hook for the real pipeline's cached re-run)"}
    with staged_file(args.output) as staging:
        staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
