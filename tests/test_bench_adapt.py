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
    assert tuned["from"] == "adapted" and tuned["epochs"] == 2 and len(tuned["val_accuracy_by_epoch"]) == 2
    assert tuned["val_accuracy"] == pytest.approx(max(tuned["val_accuracy_by_epoch"]), abs=1e-4)
    assert 0.0 <= tuned["test_accuracy"] <= 1.0
    assert set(report["targets"]) == {"fonts_adapted_ge_0.97", "fonts_plus_real_labels_ge_0.995"}
    assert not list((tmp_path / "cache").glob("adapted-*.pt"))  # the scratch model is removed


def test_fine_tuning_from_an_adaptation_that_did_not_run_is_refused(tmp_path: Path) -> None:
    completed = _run(tmp_path, "--no-adapt", "--fine-tune-epochs", "1", "--fine-tune-from", "adapted")
    assert completed.returncode == 2
    assert (
        completed.stderr.strip()
        .splitlines()[-1]
        .endswith("--fine-tune-from adapted: needs the adaptation (drop --no-adapt)")
    )
