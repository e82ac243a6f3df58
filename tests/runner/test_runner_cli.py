"""``expforge run`` on the command line: exit codes, the run directory printed last, one-line errors (exit 2).

The command is mounted in a small Typer app here, exactly as ``expforge.cli.pipelines`` registers it
(``app.command("run")(run)``), so the tests do not depend on that wiring.
"""

import json
from pathlib import Path

import pytest
import typer
from kfp import dsl
from runner_components import compile_pipeline
from typer.testing import CliRunner

from expforge.local_runner.cli import run as run_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("run")(run_command)


@app.callback()
def _group() -> None:
    """Keep ``run`` a subcommand, as in the real CLI."""


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(app, ["run", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def spec(tmp_path, subprocess_comps) -> Path:
    comps = subprocess_comps

    @dsl.pipeline(name="cli")
    def pipeline(n: int, items: list = [1], fail: bool = False) -> int:  # noqa: B006
        total = comps.add(a=n, b=1)
        with dsl.If(fail == True):  # noqa: E712
            comps.fail(code=2)
        return total.output

    return compile_pipeline(pipeline, tmp_path)


def test_success_prints_the_run_directory_last(spec, tmp_path) -> None:
    code, stdout, stderr = invoke(str(spec), "-p", "n=41", "--backend", "subprocess", "--root", str(tmp_path / "r"))
    assert code == 0, stderr
    run_dir = Path(stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "r"
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["state"], record["pipeline_outputs"]) == ("SUCCEEDED", {"Output": 42})
    assert "output Output = 42" in stderr


def test_pipeline_failure_exits_1(spec, tmp_path) -> None:
    args = [str(spec), "-p", "n=1", "-p", "fail=true", "--backend", "subprocess", "--root", str(tmp_path / "r")]
    code, stdout, stderr = invoke(*args)
    assert code == 1
    assert "FAILED fail: exit code 2; last log line: failing on purpose with exit code 2" in stderr
    assert json.loads((Path(stdout.strip().splitlines()[-1]) / "run.json").read_text())["state"] == "FAILED"


def test_no_cache_flag(spec, tmp_path) -> None:
    args = [str(spec), "-p", "n=1", "--backend", "subprocess", "--root", str(tmp_path / "r")]
    assert invoke(*args)[0] == 0
    code, stdout, _ = invoke(*args, "--no-cache", "--max-parallel", "1")
    record = json.loads((Path(stdout.strip().splitlines()[-1]) / "run.json").read_text())
    assert code == 0 and record["tasks"]["add"]["cached"] is False and record["max_parallel"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "n=abc"], "parameter 'n' (int): expected an int, got 'abc'"),
        (["-p", "n=1.5"], "parameter 'n' (int): expected an int, got '1.5'"),
        (["-p", "n=1", "-p", "items=[1,"], "parameter 'items' (list): expected a JSON list"),
        (["-p", "n=1", "-p", 'items={"a": 1}'], "parameter 'items' (list): expected a list"),
        (["-p", "n=1", "-p", "fail=maybe"], "parameter 'fail' (bool): expected true or false, got 'maybe'"),
        (["-p", "n=1", "-p", "nope=1"], "unknown pipeline parameter 'nope' (the pipeline takes: fail, items, n)"),
        (["-p", "n"], "--param 'n': expected KEY=VALUE"),
        ([], "missing required pipeline parameter 'n' (int); pass it with --param n=VALUE"),
        (["-p", "n=1", "--backend", "podman"], "unknown backend 'podman'"),
    ],
)
def test_bad_parameters_exit_2_with_one_line(spec, tmp_path, args, message) -> None:
    backend = [] if "--backend" in args else ["--backend", "subprocess"]
    code, _, stderr = invoke(str(spec), *args, *backend, "--root", str(tmp_path / "r"))
    assert code == 2
    assert stderr.startswith("expforge: error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_and_invalid_pipeline_files(tmp_path) -> None:
    code, _, stderr = invoke(str(tmp_path / "missing.yaml"))
    assert (code, stderr.strip()) == (2, f"expforge: error: {tmp_path / 'missing.yaml'}: pipeline file not found")
    not_spec = tmp_path / "config.yaml"
    not_spec.write_text("name: something\nsteps: [1, 2]\n")
    code, _, stderr = invoke(str(not_spec))
    assert code == 2 and "not a compiled KFP v2 pipeline spec (missing pipelineInfo, root, deploymentSpec)" in stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("root: [unclosed\n")
    code, _, stderr = invoke(str(broken))
    assert code == 2 and "not valid YAML" in stderr
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    code, _, stderr = invoke(str(a_list))
    assert code == 2 and "not a compiled KFP pipeline spec" in stderr


def test_docker_not_running(spec, tmp_path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    code, _, stderr = invoke(str(spec), "-p", "n=1", "--backend", "docker", "--root", str(tmp_path / "r"), env=env)
    assert code == 2
    assert "--backend docker: Docker is not running or not reachable" in stderr
    assert "use --backend subprocess" in stderr


def test_auto_backend_falls_back_to_subprocess_without_docker(spec, tmp_path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    code, stdout, stderr = invoke(str(spec), "-p", "n=1", "--root", str(tmp_path / "r"), env=env)
    assert code == 0, stderr
    assert json.loads((Path(stdout.strip().splitlines()[-1]) / "run.json").read_text())["backend"] == "subprocess"


@pytest.mark.docker
def test_missing_image_names_it_and_make_images(tmp_path, docker_image) -> None:
    @dsl.component(base_image="expforge/not-built:0", install_kfp_package=False)
    def lonely() -> str:
        return "x"

    @dsl.pipeline(name="missing-image")
    def pipeline() -> str:
        return lonely().output

    path = compile_pipeline(pipeline, tmp_path)
    code, _, stderr = invoke(str(path), "--backend", "docker", "--root", str(tmp_path / "r"))
    assert code == 2
    assert "image 'expforge/not-built:0' (used by lonely) is not in the local Docker image store" in stderr
    assert "`make images`" in stderr and "never pulls" in stderr
