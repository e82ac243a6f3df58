"""Cost of the runner's cache verification on a real pipeline's cached re-run, written as JSON.

A cold run fills a fresh cache; the same run is then repeated twice, served from the cache: once with the
default quick verification (each stored file's size and modification time against the entry's manifest) and
once with ``EXPFORGE_CACHE_VERIFY=full`` (every stored byte re-hashed against its SHA-256). Reported: wall times
and each re-run as a percentage of the cold run, plus the verification alone (every entry's lookup timed
directly, best of three) and the bytes a hit copies into the new run.

    python bench/bench_cache_verify.py --pipeline build/bench/mnist-synthetic.yaml --backend docker
"""

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import cpu_model, write_report  # noqa: E402

from expforge.local_runner.api import run_pipeline  # noqa: E402
from expforge.local_runner.cache import TaskCache  # noqa: E402
from expforge.local_runner.values import parse_cli_params  # noqa: E402


def _timed_run(spec: Path, params: dict[str, Any], backend: str, root: Path, verify: str) -> dict[str, Any]:
    os.environ["EXPFORGE_CACHE_VERIFY"] = verify
    started = time.perf_counter()
    result = run_pipeline(spec, params, backend=backend, root=root, tracking="off")
    seconds = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"bench_cache_verify: the {verify} run ended {result.state}: {result.record.get('error')}")
    tasks = result.tasks.values()
    return {
        "state": result.state,
        "seconds": round(seconds, 3),
        "tasks": len(result.tasks),
        "cached_tasks": sum(1 for task in tasks if task.get("cached")),
    }


def _lookup_seconds(cache_dir: Path, verify: str) -> float:
    """Best of three: the time to look up (and verify) every entry of the cache."""
    cache = TaskCache(cache_dir, verify=verify)
    keys = [path.stem for path in cache_dir.glob("??/*.json")]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for key in keys:
            entry, problem = cache.lookup(key)
            assert entry is not None and problem is None, problem
        best = min(best, time.perf_counter() - started)
    return best


def _stored_bytes(cache_dir: Path) -> int:
    return sum(p.lstat().st_size for p in (cache_dir / "store").rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, required=True, help="A compiled pipeline YAML.")
    parser.add_argument("-p", "--param", action="append", default=[], help="Pipeline parameter KEY=VALUE.")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--output", type=Path, default=Path("bench/results/cache_verify.json"))
    args = parser.parse_args()
    params = parse_cli_params(args.param)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as work:
        root = Path(work) / "runs"
        cold = _timed_run(args.pipeline, params, args.backend, root, "quick")
        quick = _timed_run(args.pipeline, params, args.backend, root, "quick")
        full = _timed_run(args.pipeline, params, args.backend, root, "full")
        cache_dir = root / ".cache"
        lookup = {mode: round(_lookup_seconds(cache_dir, mode), 4) for mode in ("quick", "full")}
        stored = _stored_bytes(cache_dir)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "benchmark": "cache_verify",
        "command": " ".join([sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "pipeline": str(args.pipeline),
        "backend": args.backend,
        "cold": cold,
        "cached_quick": {**quick, "percent_of_cold": round(100 * quick["seconds"] / cold["seconds"], 2)},
        "cached_full": {**full, "percent_of_cold": round(100 * full["seconds"] / cold["seconds"], 2)},
        "verification_only_seconds": lookup,
        "verification_only_percent_of_cold": {
            mode: round(100 * seconds / cold["seconds"], 3) for mode, seconds in lookup.items()
        },
        "stored_bytes": stored,
    }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
