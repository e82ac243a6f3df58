"""expforge.task_env: the one typed environment a task gets, and its bad-input rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from expforge.errors import ExpforgeError
from expforge.task_env import TaskEnvironment, unknown_variables, warn_unknown_variables


def test_to_env_and_from_env_round_trip() -> None:
    task = TaskEnvironment(run_id="r1", pipeline="p", tracking="gcp", vertex_tracking=False, gcp_project="proj")
    env = task.to_env()
    assert env == {
        "EXPFORGE_RUN_ID": "r1",
        "EXPFORGE_PIPELINE": "p",
        "EXPFORGE_TRACKING": "gcp",
        "EXPFORGE_VERTEX": "off",
        "EXPFORGE_GCP_PROJECT": "proj",
    }
    assert TaskEnvironment.from_env(env) == task
    assert TaskEnvironment.from_env({"EXPFORGE_TRACKING": " LOCAL ", "EXPFORGE_RUN_ID": ""}).tracking == "local"
    assert TaskEnvironment.from_env({"GOOGLE_CLOUD_PROJECT": "fallback"}).project == "fallback"
    assert set(TaskEnvironment.variables().values()) >= {"EXPFORGE_TRACKING_DB", "FIRESTORE_EMULATOR_HOST"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"EXPFORGE_TRACKING": "sqlite"},
            "EXPFORGE_TRACKING: unknown tracking backend 'sqlite'; expected one of local, gcp, off",
        ),
        (
            {"EXPFORGE_REGISTRY": "mlflow"},
            "EXPFORGE_REGISTRY: unknown registry backend 'mlflow'; expected one of local, vertex",
        ),
        ({"EXPFORGE_VERTEX": "maybe"}, "EXPFORGE_VERTEX: 'maybe' is not on/off; expected one of on, 1, true"),
    ],
)
def test_a_malformed_value_is_one_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ExpforgeError) as caught:
        TaskEnvironment.from_env(env)
    assert str(caught.value).startswith(message)


def test_unknown_expforge_names_get_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    env = {"EXPFORGE_TRAKING": "gcp", "EXPFORGE_RUN_ID": "r", "EXPFORGE_CACHE_DIR": "/c", "PATH": "/bin"}
    assert unknown_variables(env) == ["EXPFORGE_TRAKING"]
    with caplog.at_level(logging.WARNING, logger="expforge.task_env"):
        assert warn_unknown_variables(env, where="--env") == ["EXPFORGE_TRAKING"]
        assert warn_unknown_variables({"EXPFORGE_RUN_ID": "r"}) == []
    assert [r.getMessage() for r in caplog.records] == [
        "expforge: warning: unknown variable(s) EXPFORGE_TRAKING in --env; expforge reads none of them (a typo?)"
    ]


def test_compile_env_and_the_runner_go_through_it(tmp_path: Path) -> None:
    from expforge.local_runner.api import task_environment
    from expforge.pipelines.compile import parse_env

    assert parse_env(["EXPFORGE_TRACKING=gcp"]) == {"EXPFORGE_TRACKING": "gcp"}
    with pytest.raises(ExpforgeError, match="^EXPFORGE_TRACKING: unknown tracking backend 'sqlite'"):
        parse_env(["EXPFORGE_TRACKING=sqlite"])
    env, shared = task_environment(tmp_path, "run-1", "p", "local", {"EXPFORGE_GCP_PROJECT": "proj"})
    task = TaskEnvironment.from_env(env)
    assert (task.run_id, task.tracking, task.gcp_project) == ("run-1", "local", "proj")
    assert Path(str(task.tracking_db)).parent in shared
    # Alerts go to <root>/.alerts, shared with (and under Docker mounted into) every task like tracking.
    assert task.alerts_root == str(tmp_path) and tmp_path / ".alerts" in shared
    with pytest.raises(ExpforgeError, match="^EXPFORGE_VERTEX:"):
        task_environment(tmp_path, "run-1", "p", "local", {"EXPFORGE_VERTEX": "perhaps"})


def test_a_component_started_with_a_malformed_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from expforge.components.sample_configs import sample_configs

    monkeypatch.setenv("EXPFORGE_TRACKING", "sqlite")
    with pytest.raises(SystemExit) as exited:
        sample_configs.python_func(search_space={"lr": {"distribution": "uniform", "low": 0, "high": 1}}, count=2)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "expforge: error: EXPFORGE_TRACKING: unknown tracking backend 'sqlite'; expected one of local, gcp, off"
    ]
