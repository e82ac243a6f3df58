"""Faults: a task killed mid-run, resources and their enforcement, the container user, interruption."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from kfp import dsl

from expforge.errors import ExpforgeError


@pytest.mark.e2e
def test_killed_task_fails_is_retried_and_a_rerun_reuses_every_finished_task(run, comps) -> None:
    @dsl.pipeline(name="fault")
    def pipeline(heal: bool = False) -> str:
        first = comps.echo(s="before")
        killed = comps.self_kill(heal=heal).after(first).set_retry(num_retries=1, backoff_duration="0s")
        comps.write_text(text="independent")
        return comps.echo(s=killed.output).output

    broken = run(pipeline)
    assert broken.state == "FAILED"
    killed = broken.tasks["self-kill"]
    assert (killed["state"], killed["attempts"]) == ("FAILED", 2)
    assert "exit code 137 (killed by SIGKILL)" in killed["error"]
    log = Path(killed["log"]).read_text()
    assert log.count("=== attempt") == 2 and "about to be killed" in log
    assert broken.tasks["echo-2"]["state"] == "UPSTREAM_FAILED"
    assert {broken.tasks[k]["state"] for k in ("echo", "write-text")} == {"SUCCEEDED"}

    healed = run(pipeline, {"heal": "true"})
    assert healed.state == "SUCCEEDED"
    summary = {key: (task["state"], task["cached"], task["attempts"]) for key, task in healed.tasks.items()}
    assert summary == {
        "echo": ("SUCCEEDED", True, 0),  # finished in the broken run: reused
        "write-text": ("SUCCEEDED", True, 0),  # finished in the broken run: reused
        "self-kill": ("SUCCEEDED", False, 1),  # failed before: recomputed
        "echo-2": ("SUCCEEDED", False, 1),  # never ran: computed
    }
    assert healed.pipeline_outputs == {"Output": "healed"}
    assert Path(healed.tasks["write-text"]["artifacts"]["out"][0]).read_text() == "independent"


def test_resource_limits_warn_on_subprocess(subprocess_run, subprocess_comps) -> None:
    run, comps = subprocess_run, subprocess_comps

    @dsl.pipeline(name="limits")
    def pipeline() -> str:
        return comps.echo(s="x").set_cpu_limit("500m").set_memory_limit("256M").output

    result = run(pipeline)
    assert result.state == "SUCCEEDED"
    assert result.warnings == [
        "echo: resource limits (cpu=0.5, memory=256000000B) are not enforced by the subprocess backend"
    ]
    assert result.record["warnings"] == result.warnings


@pytest.mark.docker
def test_resource_limits_are_enforced_by_docker(docker_run, docker_comps) -> None:
    run, comps = docker_run, docker_comps

    @dsl.pipeline(name="docker-limits")
    def pipeline() -> str:
        return comps.cgroup_limits().set_cpu_limit("500m").set_memory_limit("256Mi").output

    limits = json.loads(run(pipeline).pipeline_outputs["Output"])
    assert limits["memory"] == str(256 * 2**20)
    if limits["cpu_period"]:  # cgroup v1: quota and period in separate files
        assert int(limits["cpu"]) / int(limits["cpu_period"]) == 0.5
    else:  # cgroup v2: "quota period"
        quota, period = limits["cpu"].split()
        assert int(quota) / int(period) == 0.5


@pytest.mark.docker
def test_out_of_memory_is_reported(docker_run, docker_comps) -> None:
    run, comps = docker_run, docker_comps

    @dsl.pipeline(name="oom")
    def pipeline() -> str:
        return comps.echo(s="x" * 10).set_memory_limit("8Mi").output

    result = run(pipeline)
    assert result.state == "FAILED"
    assert "out of memory" in result.tasks["echo"]["error"]


@pytest.mark.docker
def test_container_user_can_write_outputs_and_is_not_root(docker_run, docker_comps) -> None:
    run, comps = docker_run, docker_comps

    @dsl.pipeline(name="user")
    def pipeline() -> str:
        return comps.whoami().outputs["Output"]

    result = run(pipeline)
    assert result.state == "SUCCEEDED", result.record.get("error")
    uid = int(result.pipeline_outputs["Output"])
    assert uid == (os.getuid() if os.getuid() != 0 else 1000)
    assert Path(result.tasks["whoami"]["artifacts"]["out"][0]).read_text() == "written"
    assert (result.run_dir / "whoami").stat().st_mode & 0o777 == 0o755  # loosened only while the task ran


def test_gpu_request_on_a_host_without_gpu(run, comps, monkeypatch) -> None:
    from expforge.local_runner import api

    monkeypatch.setattr(api, "host_gpu_count", lambda: 0)

    @dsl.pipeline(name="gpu")
    def pipeline() -> str:
        return comps.echo(s="gpu").set_accelerator_type("NVIDIA_TESLA_T4").set_accelerator_limit(1).output

    with pytest.raises(ExpforgeError, match=r"echo \(gpu=1×NVIDIA_TESLA_T4\) requests a GPU but this host has none"):
        run(pipeline)
    fallback = run(pipeline, allow_cpu_fallback=True)
    assert fallback.state == "SUCCEEDED"
    assert fallback.warnings == ["echo: no GPU on this host; running without it (gpu=1×NVIDIA_TESLA_T4)"]


def test_resources_from_pipeline_parameters_are_resolved_per_run(subprocess_run, subprocess_comps, monkeypatch) -> None:
    """Vertex-style pipelines take cpu/memory/accelerator from parameters; the runner resolves them per task."""
    from expforge.local_runner import api

    monkeypatch.setattr(api, "host_gpu_count", lambda: 0)
    run, comps = subprocess_run, subprocess_comps

    @dsl.pipeline(name="param-resources")
    def pipeline(cpu: str = "1", memory: str = "1G", gpu_type: str = "NVIDIA_L4", gpus: int = 0) -> str:
        task = comps.echo(s="x").set_cpu_limit(cpu).set_memory_limit(memory)
        return task.set_accelerator_type(gpu_type).set_accelerator_limit(gpus).output

    plain = run(pipeline, {"cpu": "500m"})
    assert plain.state == "SUCCEEDED", plain.record.get("error")
    assert plain.warnings == [
        "echo: resource limits (cpu=0.5, memory=1000000000B) are not enforced by the subprocess backend"
    ]
    wants_gpu = run(pipeline, {"gpus": 1})
    assert wants_gpu.state == "FAILED"
    assert (
        "requests cpu=1, memory=1000000000B, gpu=1×NVIDIA_L4 but this host has 0 GPU(s)"
        in wants_gpu.tasks["echo"]["error"]
    )
    fallback = run(pipeline, {"gpus": 1}, allow_cpu_fallback=True)
    assert fallback.state == "SUCCEEDED"
    bad = run(pipeline, {"cpu": "lots"})
    assert bad.state == "FAILED" and "bad CPU quantity 'lots'" in bad.tasks["echo"]["error"]


def test_interrupt_cancels_running_tasks(tmp_path, subprocess_comps) -> None:
    comps = subprocess_comps
    from runner_components import compile_pipeline

    from expforge.local_runner.api import run_pipeline

    @dsl.pipeline(name="interrupt")
    def pipeline() -> None:
        comps.sleep_stamp(seconds=30.0, tag="long")

    spec = compile_pipeline(pipeline, tmp_path)
    interrupted_at: list[float] = []
    stop = threading.Event()

    def interrupt_once_running() -> None:
        # Wait for the task's log (its process has started), not a fixed delay: on a loaded machine the run's
        # setup alone can take seconds, and the point is to interrupt a task that is really running.
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            if any((tmp_path / "runs").glob("*/sleep-stamp/log.txt")):
                stop.wait(1.0)
                interrupted_at.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
                return
            stop.wait(0.05)

    # Ctrl-C reaches a command-line run through Python's default SIGINT handler. Code that ran earlier in this
    # test process (an event loop's signal handling) can leave another handler behind, so the test sets the
    # default for its own duration and names what it found.
    found_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_running, daemon=True)
    watcher.start()
    try:
        result = run_pipeline(spec, backend="subprocess", root=tmp_path / "runs")
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, found_handler)
    assert interrupted_at, "the task never started"
    assert time.monotonic() - interrupted_at[0] < 15, f"SIGINT handler found at the start: {found_handler!r}"
    assert result.state == "CANCELLED"
    assert result.tasks["sleep-stamp"]["state"] == "CANCELLED"
