"""Resource-aware admission: exact admission orders, thread shares, and requests larger than the host.

The :class:`Admission` tests drive real threads through the real class; each task arrives only after the
previous one is queued and leaves only when the test says so, so the orders asserted are exact (no sleeps,
no timing). The pipeline tests run real tasks on the subprocess backend: a barrier proves default tasks run
together, markers prove whole-host tasks never overlap.
(No ``from __future__ import annotations``: KFP reads the components' annotations as real types.)
"""

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl
from runner_components import compile_pipeline

from expforge.errors import ExpforgeError
from expforge.local_runner.api import run_pipeline
from expforge.local_runner.resources import (
    DEFAULT_CPU_REQUEST,
    Admission,
    HostCapacity,
    ResourceRequest,
    thread_count,
    thread_env,
)

GIB = 2**30
WAIT_S = 60  # a safety net against a hang, never a measurement


class Driver:
    """Tasks that enter an :class:`Admission` one at a time, in a known order, and leave on command."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.started: list[str] = []
        self._release: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def arrive(self, key: str, request: ResourceRequest) -> None:
        release = self._release[key] = threading.Event()

        def task() -> None:
            with self.admission.admit(key, request):
                with self._lock:
                    self.started.append(key)
                release.wait(WAIT_S)

        thread = threading.Thread(target=task, daemon=True)
        thread.start()
        self._threads.append(thread)
        arrived = self.admission.wait_until(lambda running, waiting: key in running or key in waiting, WAIT_S)
        assert arrived, f"{key} never reached the admission queue"

    def leave(self, key: str) -> None:
        self._release[key].set()
        left = self.admission.wait_until(lambda running, waiting: key not in running, WAIT_S)
        assert left

    def state(self) -> tuple[list[str], list[str]]:
        return self.admission.snapshot()

    def finish(self) -> None:
        for event in self._release.values():
            event.set()
        for thread in self._threads:
            thread.join(WAIT_S)


@pytest.fixture
def drive() -> Callable[..., Driver]:
    drivers: list[Driver] = []

    def make(cpus: float = 2, memory: int = 8 * GIB, max_parallel: int = 8, gpus: int = 0) -> Driver:
        driver = Driver(Admission(max_parallel, HostCapacity(cpus, memory, gpus)))
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.finish()


def cpu(n: float) -> ResourceRequest:
    return ResourceRequest(cpu_limit=n)


def test_admission_is_first_come_first_served_by_cpu(drive):
    d = drive(cpus=2)
    d.arrive("a", cpu(1))
    d.arrive("b", cpu(1))
    d.arrive("c", cpu(2))
    d.arrive("d", ResourceRequest())  # default request
    d.arrive("e", ResourceRequest())
    assert d.state() == (["a", "b"], ["c", "d", "e"])
    d.leave("a")
    # c needs the whole host and waits for b; d and e would fit but never overtake c
    assert d.state() == (["b"], ["c", "d", "e"])
    d.leave("b")
    assert d.state() == (["c"], ["d", "e"])
    d.leave("c")
    assert d.state() == (["d", "e"], [])
    d.finish()
    assert d.started[:3] == ["a", "b", "c"] and sorted(d.started[3:]) == ["d", "e"]


def test_default_requests_run_wide_and_max_parallel_stays_an_upper_bound(drive):
    wide = drive(cpus=2, max_parallel=8)
    for key in "wxyz":
        wide.arrive(key, ResourceRequest())
    assert wide.state() == (["w", "x", "y", "z"], [])  # 4 × 0.5 CPU on 2 cores
    assert DEFAULT_CPU_REQUEST * 4 <= 2

    capped = drive(cpus=8, max_parallel=2)
    for key in "pqrs":
        capped.arrive(key, ResourceRequest())
    assert capped.state() == (["p", "q"], ["r", "s"])
    capped.leave("q")
    assert capped.state() == (["p", "r"], ["s"])


def test_memory_and_gpus_are_admitted_like_cpus(drive):
    d = drive(cpus=8, memory=1 * GIB, gpus=1)
    d.arrive("big1", ResourceRequest(cpu_limit=1, memory_limit=768 * 2**20))
    d.arrive("big2", ResourceRequest(cpu_limit=1, memory_limit=768 * 2**20))
    assert d.state() == (["big1"], ["big2"])
    d.leave("big1")
    d.arrive("gpu1", ResourceRequest(cpu_limit=1, memory_limit=1, accelerator_type="T4", accelerator_count=1))
    d.arrive("gpu2", ResourceRequest(cpu_limit=1, memory_limit=1, accelerator_type="T4", accelerator_count=1))
    assert d.state() == (["big2", "gpu1"], ["gpu2"])
    d.leave("gpu1")
    assert d.state() == (["big2", "gpu2"], [])


def test_a_demand_larger_than_the_host_runs_alone_instead_of_never(drive):
    d = drive(cpus=2)
    d.arrive("small", cpu(1))
    d.arrive("huge", cpu(4))
    assert d.state() == (["small"], ["huge"])
    d.leave("small")
    assert d.state() == (["huge"], [])


def test_each_task_is_told_threads_matching_its_share():
    assert thread_count(ResourceRequest()) == 1
    assert thread_count(cpu(0.25)) == 1
    assert thread_count(cpu(1.5)) == 1
    assert thread_count(cpu(2)) == 2
    env = thread_env(cpu(3))
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"


# --- through the scheduler, on real processes ---------------------------------------------------------------


@dsl.component(base_image="unused", install_kfp_package=False)
def meet(marker_dir: str, index: int, expected: int) -> str:
    """Arrive at a barrier of ``expected`` tasks; report the thread count this task was given."""
    import os
    import time
    from pathlib import Path

    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"arrived-{index}").touch()
    deadline = time.monotonic() + 60
    while len(list(folder.glob("arrived-*"))) < expected:
        if time.monotonic() > deadline:
            raise SystemExit("the other tasks never started: the runner serialised them")
        time.sleep(0.05)
    return os.environ.get("OMP_NUM_THREADS", "unset")


@dsl.component(base_image="unused", install_kfp_package=False)
def exclusive(marker_dir: str, index: int) -> str:
    """Hold the whole host for a moment; report whether any other such task was running meanwhile."""
    import os
    import time
    from pathlib import Path

    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / f"running-{index}"
    mine.touch()
    others_seen = set()
    for _ in range(6):
        others_seen.update(p.name for p in folder.glob("running-*") if p != mine)
        time.sleep(0.05)
    mine.unlink()
    return f"{os.environ.get('OMP_NUM_THREADS')}|{','.join(sorted(others_seen))}"


@dsl.pipeline(name="admission-default-wide")
def default_wide(marker_dir: str) -> None:
    with dsl.ParallelFor([0, 1, 2, 3]) as index:
        meet(marker_dir=marker_dir, index=index, expected=4).set_caching_options(False)


def whole_host(cpus: str):
    @dsl.pipeline(name="admission-whole-host")
    def pipeline(marker_dir: str) -> None:
        with dsl.ParallelFor([0, 1, 2]) as index:
            exclusive(marker_dir=marker_dir, index=index).set_caching_options(False).set_cpu_limit(cpus)

    return pipeline


@dsl.pipeline(name="admission-parameter")
def parameter_request(cpus: str) -> None:
    exclusive(marker_dir="/nonexistent", index=0).set_cpu_limit(cpus)


@dsl.pipeline(name="admission-too-big")
def too_big() -> None:
    exclusive(marker_dir="/nonexistent", index=0).set_cpu_limit("64")


def _outputs(result, component: str) -> list[str]:
    return [t["parameters"]["Output"] for t in result.tasks.values() if t.get("component") == component]


def test_four_default_tasks_run_together_each_with_one_thread(tmp_path: Path):
    spec = compile_pipeline(default_wide, tmp_path / "specs")
    result = run_pipeline(spec, {"marker_dir": str(tmp_path / "markers")}, backend="subprocess", root=tmp_path / "runs")
    assert result.succeeded, result.tasks
    assert _outputs(result, "meet") == ["1"] * 4
    assert result.record["max_parallel"] >= 4


def test_whole_host_tasks_never_overlap_and_get_every_core(tmp_path: Path):
    from expforge.local_runner.resources import host_cpus

    cores = host_cpus()
    spec = compile_pipeline(whole_host(f"{cores:g}"), tmp_path / "specs")
    params = {"marker_dir": str(tmp_path / "markers")}
    result = run_pipeline(spec, params, backend="subprocess", root=tmp_path / "runs", max_parallel=8)
    assert result.succeeded, result.tasks
    assert _outputs(result, "exclusive") == [f"{int(cores)}|"] * 3  # nobody else was running meanwhile


def test_a_request_larger_than_the_host_fails_before_the_run_starts(tmp_path: Path):
    spec = compile_pipeline(too_big, tmp_path / "specs")
    with pytest.raises(ExpforgeError) as caught:
        run_pipeline(spec, {}, backend="subprocess", root=tmp_path / "runs")
    message = str(caught.value)
    assert "task exclusive requests cpu=64" in message and "CPUs" in message
    assert "\n" not in message
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_a_parameter_request_larger_than_the_host_is_also_caught_first(tmp_path: Path):
    spec = compile_pipeline(parameter_request, tmp_path / "specs")
    with pytest.raises(ExpforgeError, match=r"task exclusive requests cpu=512"):
        run_pipeline(spec, {"cpus": "512"}, backend="subprocess", root=tmp_path / "r")
