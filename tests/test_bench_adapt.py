"""Smoke test of bench/bench_adapt.py: a tiny run adapts, fine-tunes from the adapted model and writes every
figure it reports (the figures of so small a run mean nothing; bench/reference/adapt.json has the real ones)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_adapt.py"


def _run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--fonts", "200", "--cache", str(tmp_path / "cache"), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_a_tiny_run_reports_adaptation_and_the_fine_tune_from_the_adapted_model(tmp_path: Path) -> None:
    output = tmp_path / "adapt.json"
    flags = ["--rounds", "1", "--epochs-per-round", "1", "--fine-tune-epochs", "2", "--fine-tune-from", "adapted"]
    completed = _run(tmp_path, *flags, "--output", str(output))
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["split"]["counts"] == {"train": 2000, "val": 500, "test": 2500}
    assert {"fonts_only", "fonts_adapted", "gain"} == set(report["test_accuracy"])
    assert [c["name"] for c in report["adaptation"]["candidates"]][:2] == ["none", "adabn"]
    tuned = report["fine_tuned"]
    assert (
        tuned["from"] == "adapted"
        and tuned["epochs"] == 2
        and tuned["labels"] == 2000
        and len(tuned["val_accuracy_by_epoch"]) == 2
    )
    assert tuned["val_accuracy"] == pytest.approx(max(tuned["val_accuracy_by_epoch"]), abs=1e-4)
    assert 0.0 <= tuned["test_accuracy"] <= 1.0
    assert set(report["targets"]) == {"fonts_adapted_ge_0.97", "fonts_plus_real_labels_ge_0.995"}
    assert not list((tmp_path / "cache").glob("adapted-*.pt"))  # the scratch model is removed


def test_an_ensemble_run_scores_every_member_and_their_mean(tmp_path: Path) -> None:
    output = tmp_path / "adapt.json"
    flags = ["--no-adapt", "--fine-tune-epochs", "1", "--fine-tune-members", "2", "--seed", "3"]
    completed = _run(tmp_path, *flags, "--output", str(output))
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    ensemble = report["fine_tuned_ensemble"]
    assert [member["seed"] for member in ensemble["members"]] == [3, 4]  # member i trains with seed + i
    assert ensemble["members"][0]["test_accuracy"] == report["fine_tuned"]["test_accuracy"]
    assert ensemble["test_errors"] == round((1 - ensemble["test_accuracy"]) * 2500)
    assert 0.0 <= ensemble["val_accuracy"] <= 1.0
    assert len(list((tmp_path / "cache").glob("source-*.pt"))) == 2  # each member from its own font model
    assert set(report["targets"]) == {
        "fonts_plus_real_labels_ge_0.995",
        "fonts_plus_real_labels_ensemble_ge_0.995",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--no-adapt", "--fine-tune-from", "adapted"],
            "--fine-tune-from adapted: needs the adaptation (drop --no-adapt)",
        ),
        (["--fine-tune-labels", "-5"], "--fine-tune-labels: -5 is not a count of digits (0 means all)"),
        (["--fine-tune-members", "0"], "--fine-tune-members: 0 is not a number of networks (1 or more)"),
        (
            ["--fine-tune-members", "2", "--fine-tune-from", "adapted"],
            "--fine-tune-members: needs --fine-tune-from source (each member starts from its own font model)",
        ),
    ],
)
def test_a_fine_tune_that_cannot_be_run_is_refused_in_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    completed = _run(tmp_path, "--fine-tune-epochs", "1", *flags)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].endswith(message)
