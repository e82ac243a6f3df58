"""The ``expforge`` command line as a package: the static area list is the whole CLI (no command twice, none
registered elsewhere); every entry point starts the same app; bad input to a central command is one line with
exit status 2."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer
from typer.testing import CliRunner

import expforge.cli
from expforge.cli import AREAS, app


def _names(typer_app: typer.Typer) -> list[str]:
    return list(typer.main.get_command(typer_app).commands)  # type: ignore[attr-defined]


def test_the_area_list_registers_every_command_exactly_once() -> None:
    expected: list[str] = []
    for area in AREAS:
        fresh = typer.Typer()
        fresh.callback()(lambda: None)  # (a group even with one command, as the real app is)

        def command(name: str, fresh: typer.Typer = fresh):  # noqa: ANN202 - the decorator factory areas receive
            return lambda func: fresh.command(name)(func)

        area.register(command, fresh)
        added = _names(fresh)
        assert added, f"{area.__name__} registers no command"
        expected += added
    assert len(expected) == len(set(expected)), "a command name is registered by two areas"
    assert sorted(_names(app)) == sorted(expected)


def test_console_script_and_both_module_entry_points_run_the_same_app() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "expforge"]
    assert script.value == "expforge.cli:main"
    assert script.load() is expforge.cli.main
    listings = []
    for module in ("expforge", "expforge.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        listings.append(done.stdout)
    assert listings[0] == listings[1]
    assert all(f" {name} " in listings[0] for name in _names(app))


def test_bad_input_to_a_central_command_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bootstrap-mnist", "--source", "nope", "--output", str(tmp_path / "mnist")], catch_exceptions=False
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["expforge: error: --source: unknown source 'nope'; expected one of auto, idx, openml, bundled"]
    assert not (tmp_path / "mnist").exists()
