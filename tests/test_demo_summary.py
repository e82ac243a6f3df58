"""The closing summary of ``expforge demo``: winner, accuracy, model file, registration and next commands.

Built from a real ``RunResult`` shaped like the ``run.json`` of a finished mnist-synthetic run (the e2e test
runs the pipeline itself; this one pins what the summary says about it).
"""

from __future__ import annotations

from pathlib import Path

from expforge.demo import DEMO_DEFAULTS, UI_URL, describe_results
from expforge.local_runner.api import RunResult


def _result(tmp_path: Path, registered: dict) -> RunResult:
    model = tmp_path / "run" / "select-top-2" / "best"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    record = {
        "tasks": {
            "evaluate": {"component": "evaluate", "state": "SUCCEEDED", "artifacts": {"evaluation": ["/e"]}},
            "register-model": {"component": "register-model", **registered},
        }
    }
    outputs = {
        "config": {"lr": 0.0012345, "width": 32, "optimizer": "adamw"},
        "val_accuracy": 0.91,
        "accuracy": 0.9042,
        "model": [str(model)],
    }
    return RunResult("r1", tmp_path / "run", "SUCCEEDED", outputs, record)


def test_summary_names_winner_accuracy_model_version_and_next_commands(tmp_path: Path) -> None:
    registered = {
        "state": "SUCCEEDED",
        "parameters": {"model_name": "mnist-digits", "version_id": "3", "aliases": ["latest", "candidate"]},
    }
    lines = describe_results(_result(tmp_path, registered), Path("runs"))
    text = "\n".join(lines)
    assert "winning config: lr=0.00123, optimizer=adamw, width=32" in text
    assert "real-test accuracy: 0.9042" in text
    assert f"model: {tmp_path / 'run' / 'select-top-2' / 'best'}" in text
    assert "registered: mnist-digits version 3 (aliases: latest, candidate)" in text
    assert "expforge runs leaderboard --metric accuracy" in text
    assert "expforge ui --root runs" in text and UI_URL == "http://127.0.0.1:8765"


def test_summary_says_why_nothing_was_registered(tmp_path: Path) -> None:
    lines = describe_results(_result(tmp_path, {"state": "SKIPPED", "reason": "condition is false"}), Path("runs"))
    assert any(line.startswith("not registered: condition is false") for line in lines)


def test_demo_trials_request_one_cpu_each() -> None:
    assert DEMO_DEFAULTS["cpu"] == "1"
