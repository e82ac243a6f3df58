"""Real runs and a real ``expforge ui`` server for the dashboard tests (imported by tests/test_ui_*.py).

The runs are made once per test session (and shared by pytest-xdist workers through a lock file): a small
mnist-baseline run and a small Hyperband run (R=2, η=2: 5 trial tasks), both by ``expforge run --backend
subprocess`` over compiled YAML, tracked in the root's SQLite store; the baseline's model is registered in the
root's registry with ``expforge registry register``. Each test module then starts its own server process on a
free port.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXPFORGE = [sys.executable, "-m", "expforge"]
BASELINE = {"mnist_source": "bundled", "mnist_limit": 500, "font_count": 200, "epochs": 3}
HYPERBAND = {"mnist_source": "bundled", "mnist_limit": 500, "font_count": 200, "device": "cpu"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass(frozen=True)
class Runs:
    """The session's runs root and what is in it."""

    root: Path
    baseline: str
    hyperband: str

    def record(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.root / run_id / "run.json").read_text())


def _run_id(stdout: str) -> str:
    # `expforge run` prints the run directory last on stdout.
    return Path(stdout.strip().splitlines()[-1]).name


def _expforge_run(spec: Path, root: Path, params: dict[str, Any]) -> str:
    args = [*EXPFORGE, "run", str(spec), "--backend", "subprocess", "--root", str(root)]
    args += [a for k, v in params.items() for a in ("-p", f"{k}={v}")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return _run_id(done.stdout)


def compile_hyperband(path: Path) -> Path:
    """hyperband-digits with a tiny schedule (R=2, η=2), compiled with KFP's compiler."""
    from kfp import compiler

    from expforge.components._adapter import pinned_images
    from expforge.pipelines.hpo import build_hyperband_digits

    with pinned_images(None):
        compiler.Compiler().compile(build_hyperband_digits(max_epochs=2, eta=2), str(path))
    return path


def _make_runs(base: Path) -> Runs:
    from expforge.pipelines.compile import compile_pipeline

    root = base / "runs"
    specs = base / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    baseline = _expforge_run(compile_pipeline("mnist-baseline", specs / "mnist-baseline.yaml"), root, BASELINE)
    hyperband = _expforge_run(compile_hyperband(specs / "hyperband.yaml"), root, HYPERBAND)
    record = json.loads((root / baseline / "run.json").read_text())
    evaluation = record["tasks"]["evaluate"]["artifacts"]["evaluation"][0]
    model = record["tasks"]["train-sklearn"]["artifacts"]["model"][0]
    args = ["--model", model, "--evaluation", evaluation, "--name", "ui-digits", "--root", str(root / "registry")]
    done = subprocess.run([*EXPFORGE, "registry", "register", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return Runs(root, baseline, hyperband)


def session_runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The shared runs, made by whichever worker gets the lock first."""
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
    base = (shared or tmp_path_factory.getbasetemp()) / "ui-runs"
    base.mkdir(parents=True, exist_ok=True)
    done = base / "runs.json"
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            runs = _make_runs(base)
            done.write_text(json.dumps({"baseline": runs.baseline, "hyperband": runs.hyperband}))
    ids = json.loads(done.read_text())
    return Runs(base / "runs", ids["baseline"], ids["hyperband"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running ``expforge ui`` process."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    def get(self, path: str) -> tuple[int, Any]:
        """GET ``path``; the status and the decoded JSON (or text) body, errors included."""
        return self.request("GET", path)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _decode(response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read(), error.headers.get_content_type())

    def raw(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """GET ``path`` as bytes with the response headers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)


def _decode(body: bytes, content_type: str) -> Any:
    return json.loads(body) if content_type == "application/json" else body.decode("utf-8", "replace")


@contextlib.contextmanager
def serve(root: Path, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``expforge ui --root ROOT --port FREE`` until the block ends; waits for /api/health to answer."""
    port = free_port()
    log = log_dir / f"ui-{port}.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [*EXPFORGE, "ui", "--root", str(root), "--port", str(port), *extra],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"expforge ui exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(server.url + "/static/app.css", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"expforge ui did not answer: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        handle.close()


def browser_or_skip() -> Any:
    """Headless chromium through chromedriver. Missing where it cannot be installed: skip, except in CI
    (``CI=true`` or ``EXPFORGE_REQUIRE_DOCKER=1``), where the dashboard tests must run."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (dev extra)")
    if missing:
        reason = f"no browser for the dashboard tests: {', '.join(missing)} missing"
        reason += " (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true" or os.environ.get("EXPFORGE_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"expforge-ui-chrome-{os.getpid()}"
    shutil.rmtree(profile, ignore_errors=True)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
