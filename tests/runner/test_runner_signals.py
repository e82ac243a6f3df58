"""Real signals to a real ``expforge run`` process: SIGTERM cancels like Ctrl-C (tasks stopped, containers removed,
run.json and tracking CANCELLED); after ``kill -9`` the run reads as RUNNER_DIED and the next run cleans up."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kfp import dsl
from runner_components import compile_pipeline

from expforge.local_runner.reaper import _task_processes
from expforge.local_runner.record import load_run_record

EXPFORGE = str(Path(sys.executable).parent / "expforge")


def _sleeping_spec(comps, directory: Path) -> Path:
    @dsl.pipeline(name="sleeper")
    def pipeline() -> None:
        comps.sleep_stamp(seconds=120.0, tag="long")

    return compile_pipeline(pipeline, directory)


def _start(spec: Path, root: Path, backend: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [EXPFORGE, "run", str(spec), "--backend", backend, "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_until_running(root: Path, process: subprocess.Popen[bytes]) -> Path:
    """The run's directory once its task is RUNNING (a condition, not a fixed delay; 120 s at most)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for record in root.glob("*/run.json"):
            with_state = json.loads(record.read_text())
            if with_state["tasks"].get("sleep-stamp", {}).get("state") == "RUNNING":
                time.sleep(1.0)  # let the container/process itself get going
                return record.parent
        time.sleep(0.1)
    raise AssertionError("the task never started")


def _tracking_state(root: Path, run_id: str) -> str:
    with sqlite3.connect(root / ".tracking" / "runs.sqlite") as db:
        return db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]


def _containers_of(run_dir: Path) -> list:
    from expforge.local_runner.docker_backend import docker_client

    client, _ = docker_client()
    try:
        return client.containers.list(all=True, filters={"label": f"expforge.run-dir={run_dir}"})
    finally:
        client.close()


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["subprocess", pytest.param("docker", marks=pytest.mark.docker)])
def test_sigterm_cancels_the_run_like_ctrl_c(tmp_path, request, backend) -> None:
    from runner_components import make_components

    image = request.getfixturevalue("docker_image") if backend == "docker" else "expforge/base:latest"
    spec = _sleeping_spec(make_components(image), tmp_path / "spec")
    root = tmp_path / "runs"
    process = _start(spec, root, backend)
    run_dir = _wait_until_running(root, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["state"], record["error"]) == ("CANCELLED", "terminated (SIGTERM)")
    assert record["tasks"]["sleep-stamp"]["state"] == "CANCELLED"
    assert _tracking_state(root, record["run_id"]) == "CANCELLED"
    assert _task_processes(record["run_id"]) == []  # no orphaned task process
    if backend == "docker":
        assert _containers_of(run_dir) == []


@pytest.mark.e2e
def test_a_killed_runner_reads_as_died_and_the_next_run_cleans_up(tmp_path, subprocess_comps) -> None:
    spec = _sleeping_spec(subprocess_comps, tmp_path / "spec")
    root = tmp_path / "runs"
    process = _start(spec, root, "subprocess")
    run_dir = _wait_until_running(root, process)
    process.kill()
    process.communicate()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["state"] == "RUNNING"  # what the dead runner left behind
    orphans = _task_processes(record["run_id"])
    assert orphans, "the task process should have outlived its runner"

    seen = load_run_record(run_dir / "run.json")
    assert seen["state"] == "RUNNER_DIED"
    assert seen["error"] == f"the runner (pid {process.pid}) died before the run finished"
    assert seen["tasks"]["sleep-stamp"]["state"] == "CANCELLED"

    @dsl.pipeline(name="next")
    def quick() -> str:
        return subprocess_comps.echo(s="x").output

    nxt = subprocess.run(
        [
            EXPFORGE,
            "run",
            str(compile_pipeline(quick, tmp_path / "spec")),
            "--backend",
            "subprocess",
            "--root",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nxt.returncode == 0, nxt.stderr
    assert f"run {record['run_id']}: its runner died before it finished; marked RUNNER_DIED" in nxt.stderr
    after = json.loads((run_dir / "run.json").read_text())
    assert after["state"] == "RUNNER_DIED" and after["tasks"]["sleep-stamp"]["state"] == "CANCELLED"
    assert _tracking_state(root, record["run_id"]) == "CANCELLED"
    deadline = time.monotonic() + 10
    while _task_processes(record["run_id"]) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is asynchronous
    assert _task_processes(record["run_id"]) == []
    assert all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in orphans)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
