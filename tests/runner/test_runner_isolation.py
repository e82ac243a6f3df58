"""Runner isolation, for real: containers that plant symlinks, report host URIs and edit their inputs, against
the runner as it runs here (root on CI and this machine: the case that matters). Every test asserts that the
host files the task aimed at are unchanged and that the failure is one line."""

import json
import os
import stat
from pathlib import Path

import pytest
from isolation_components import make_isolation_components
from kfp import dsl
from kfp.dsl import Artifact, Output

from expforge.local_runner import safefs
from expforge.local_runner.cache import TaskCache


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Host files a task must not be able to read, change or have chmod'ed: a 0600 secret and a 0700 dir."""
    directory = tmp_path / "victim"
    (directory / "private").mkdir(parents=True)
    secret = directory / "secret.txt"
    secret.write_text("TOP-SECRET line\n")
    secret.chmod(0o600)
    (directory / "private").chmod(0o700)
    return directory


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Mode, owner and content of everything under ``directory`` (links not followed)."""
    result = {}
    for path, info in [(directory, os.lstat(directory)), *safefs.walk(directory)]:
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        result[str(path)] = (info.st_mode, info.st_uid, content)
    return result


@pytest.fixture
def iso(docker_image: str):
    return make_isolation_components(docker_image)


@pytest.mark.docker
def test_symlinks_planted_by_a_task_are_never_followed(docker_run, iso, victim) -> None:
    before = _snapshot(victim)

    @dsl.pipeline(name="plant-symlinks")
    def pipeline(victim: str) -> str:
        return iso.plant_symlinks(victim=victim).set_retry(num_retries=1, backoff_duration="0s").outputs["Output"]

    result = docker_run(pipeline, {"victim": str(victim)})
    task = result.tasks["plant-symlinks"]
    assert (result.state, task["state"], task["attempts"]) == ("FAILED", "FAILED", 2)
    assert "TOP-SECRET" not in task["error"] and "\n" not in task["error"]
    assert _snapshot(victim) == before  # not chmod'ed through .parameters, not appended to through log.txt
    log = Path(task["log"])
    assert not log.is_symlink() and "the task replaced log.txt by a link; removed" in log.read_text()


@pytest.mark.docker
def test_output_links_to_host_files_are_refused(docker_run, iso, victim) -> None:
    before = _snapshot(victim)

    @dsl.pipeline(name="output-links")
    def pipeline(victim: str) -> str:
        planted = iso.plant_output_links(victim=victim)
        return iso.read_artifact(data=planted.outputs["out"]).output

    result = docker_run(pipeline, {"victim": str(victim)})
    error = result.tasks["plant-output-links"]["error"]
    assert result.tasks["plant-output-links"]["state"] == "FAILED"
    assert "output artifact 'out'" in error and "lies outside the task's output directory" in error
    assert result.tasks["read-artifact"]["state"] == "UPSTREAM_FAILED"
    assert "TOP-SECRET" not in json.dumps(result.record)
    assert _snapshot(victim) == before


@pytest.mark.docker
def test_an_artifact_uri_outside_the_task_directory_is_refused(docker_run, iso, victim) -> None:
    before = _snapshot(victim)

    @dsl.pipeline(name="host-uri")
    def pipeline(victim: str) -> str:
        reported = iso.report_host_uri(victim=victim)
        return iso.read_artifact(data=reported.outputs["out"]).output

    result = docker_run(pipeline, {"victim": str(victim)})
    task = result.tasks["report-host-uri"]
    assert task["state"] == "FAILED"
    assert f"URI '{victim}/secret.txt' lies outside the task's output directory" in task["error"]
    assert result.tasks["read-artifact"]["state"] == "UPSTREAM_FAILED"  # never mounted into a consumer
    assert not list((victim.parent / "runs" / ".cache").rglob("*.json"))  # nor cached
    assert _snapshot(victim) == before


@pytest.mark.docker
def test_a_task_cannot_write_the_run_record_or_beside_its_directory(docker_run, iso) -> None:
    @dsl.pipeline(name="touch-run")
    def pipeline() -> str:
        return iso.touch_run().outputs["Output"]

    result = docker_run(pipeline)
    assert result.state == "SUCCEEDED", result.record.get("error")
    outcomes = result.pipeline_outputs["Output"].split(",")
    assert len(outcomes) == 2 and set(outcomes) <= {"PermissionError", "OSError"}  # OSError: read-only mount
    assert "tampered" not in (result.run_dir / "run.json").read_text()
    assert not (result.run_dir / "intruder.txt").exists()
    assert Path(result.tasks["touch-run"]["artifacts"]["out"][0]).read_text() == "own output"


@pytest.mark.docker
def test_containers_run_without_privileges_and_with_a_pids_limit(docker_run, iso) -> None:
    @dsl.pipeline(name="probe")
    def pipeline() -> str:
        return iso.probe_container().output

    result = docker_run(pipeline)
    probe = json.loads(result.pipeline_outputs["Output"])
    assert probe == {"cap_eff": "0000000000000000", "no_new_privs": "1", "pids": "4096"}
    root = result.run_dir.parent
    for shared in (root / ".tracking", root / "registry"):
        for path, info in [(shared, os.lstat(shared)), *safefs.walk(shared)]:
            assert not info.st_mode & 0o002, f"{path} is world-writable ({oct(info.st_mode)})"


@pytest.mark.docker
def test_partial_cache_hit_serves_private_outputs_to_the_task_user(docker_run, iso) -> None:
    """Change one parameter and re-run: the cached producer's outputs (0700/0600, as mkdtemp/mkstemp make them)
    must be readable by the recomputed consumer, which runs as the image's user, not as the root runner."""

    @dsl.pipeline(name="partial-hit")
    def pipeline(suffix: str) -> str:
        data = iso.write_dataset(text="payload")
        return iso.read_dataset(data=data.outputs["out"], suffix=suffix).output

    cold = docker_run(pipeline, {"suffix": "-1"})
    assert cold.pipeline_outputs == {"Output": "payload-1"}, cold.record.get("error")
    warm = docker_run(pipeline, {"suffix": "-2"})
    assert warm.state == "SUCCEEDED", warm.record.get("error")
    assert warm.tasks["write-dataset"]["cached"] is True
    assert warm.pipeline_outputs == {"Output": "payload-2"}


@pytest.mark.docker
def test_a_task_editing_its_input_changes_neither_the_cache_nor_the_producer(docker_run, iso) -> None:
    @dsl.pipeline(name="edit-input")
    def pipeline(suffix: str) -> str:
        data = iso.write_dataset(text="payload")
        edit = iso.edit_input(data=data.outputs["out"], suffix=suffix)
        return iso.read_dataset(data=data.outputs["out"], suffix=suffix).after(edit).output

    first = docker_run(pipeline, {"suffix": "-1"})
    assert first.tasks["edit-input"]["parameters"]["Output"] == "OSError-1"  # the run is mounted read-only
    produced = Path(first.tasks["write-dataset"]["artifacts"]["out"][0]) / "inner" / "data.txt"
    assert produced.read_text() == "payload"
    second = docker_run(pipeline, {"suffix": "-2"})
    assert second.tasks["write-dataset"]["cached"] is True
    assert second.pipeline_outputs == {"Output": "payload-2"}, second.record.get("error")
    served = Path(second.tasks["write-dataset"]["artifacts"]["out"][0])
    assert served.stat().st_ino != produced.parent.parent.stat().st_ino
    assert (served / "inner" / "data.txt").stat().st_ino != produced.stat().st_ino  # a copy, not a hard link


def test_cache_hit_verifies_the_stored_copy(tmp_path, subprocess_run, subprocess_comps, monkeypatch) -> None:
    comps = subprocess_comps

    @dsl.pipeline(name="verify")
    def pipeline() -> str:
        return comps.read_text(data=comps.write_text(text="hello").outputs["out"]).output

    first = subprocess_run(pipeline)
    assert first.state == "SUCCEEDED"
    stored = [p for p in (tmp_path / "runs" / ".cache" / "store").rglob("out.0") if p.is_file()]
    assert len(stored) == 1 and stored[0].stat().st_mode & 0o777 == 0o444
    assert (tmp_path / "runs" / ".cache").stat().st_mode & 0o777 == 0o700
    # Same size, same mtime, different bytes: only a full verification notices.
    info = stored[0].stat()
    stored[0].chmod(0o644)
    stored[0].write_text("HELLO")
    os.utime(stored[0], ns=(info.st_atime_ns, info.st_mtime_ns))
    quick = subprocess_run(pipeline)
    assert quick.tasks["write-text"]["cached"] is True
    monkeypatch.setenv("EXPFORGE_CACHE_VERIFY", "full")
    full = subprocess_run(pipeline)
    monkeypatch.delenv("EXPFORGE_CACHE_VERIFY")
    assert full.tasks["write-text"]["cached"] is False
    assert any("(its SHA-256 differs); recomputing" in w for w in full.warnings), full.warnings
    assert full.pipeline_outputs["Output"].startswith("hello|")
    # A changed size is caught by the quick check.
    stored = [p for p in (tmp_path / "runs" / ".cache" / "store").rglob("out.0") if p.is_file()]
    stored[0].chmod(0o644)
    stored[0].write_text("longer text")
    again = subprocess_run(pipeline)
    assert again.tasks["write-text"]["cached"] is False
    assert any("sizes or modification times differ" in w for w in again.warnings), again.warnings


def test_volatile_metadata_is_not_part_of_the_cache_key() -> None:
    from expforge.local_runner.artifacts import RuntimeArtifact
    from expforge.local_runner.cache import cache_key

    def key(metadata: dict) -> str:
        artifact = RuntimeArtifact("x", "/a", metadata=metadata, digest="d")
        return cache_key({}, "env", {}, {"x": [artifact]})

    assert key({"rows": 3, "elapsed_seconds": 1.5, "seconds": 2}) == key({"rows": 3, "elapsed_seconds": 9.0})
    assert key({"rows": 3}) != key({"rows": 4})


def test_cache_verify_mode_is_checked(tmp_path) -> None:
    from expforge.errors import ExpforgeError

    with pytest.raises(ExpforgeError, match="EXPFORGE_CACHE_VERIFY: expected one of quick, full, got 'always'"):
        TaskCache(tmp_path, verify="always")


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB tmpfs (needs mount rights: root, as on CI)."""
    import subprocess

    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_under_the_runner_ends_the_run_failed(tiny_disk, subprocess_comps) -> None:
    import subprocess
    import sys

    from runner_components import compile_pipeline

    @dsl.component(base_image="unused", install_kfp_package=False)
    def fill_disk(out: Output[Artifact]) -> str:
        chunk = b"x" * 65536
        try:
            with open(out.path, "wb") as handle:
                while True:
                    handle.write(chunk)
                    handle.flush()
        except OSError:
            pass
        return "full"

    @dsl.pipeline(name="full-disk")
    def pipeline() -> str:
        filled = fill_disk()
        return subprocess_comps.echo(s=filled.outputs["Output"]).output

    spec = compile_pipeline(pipeline, tiny_disk.parent / "spec")
    command = [str(Path(sys.executable).parent / "expforge"), "run", str(spec), "--backend", "subprocess"]
    done = subprocess.run([*command, "--root", str(tiny_disk / "runs")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    reason = f"cannot write the run record {run_dir / 'run.json'} (No space left on device)"
    assert f"run FAILED: {reason}" in done.stderr.splitlines(), done.stderr
    on_disk = json.loads((run_dir / "run.json").read_text())
    assert (on_disk["state"], on_disk["error"]) == ("FAILED", reason)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".run-")]  # no temp file left
