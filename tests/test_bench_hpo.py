"""Smoke test of bench/bench_hpo.py: its --quick mode runs end to end and writes every figure the issue asks for.

The benchmark runs in a subprocess: training switches torch to deterministic kernels and pins CPUs for the
throughput figure, which must not leak into the other tests of this process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_hpo.py"


def _load_bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_hpo", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "hpo.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["quick"] is True
    assert {"machine", "settings", "throughput", "data", "hpo", "accuracy", "total_seconds"} <= set(report)
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["torch"]

    cpu, gpu = report["throughput"]["cpu"], report["throughput"]["gpu"]
    assert cpu["images_per_second"] > 0 and 1 <= cpu["torch_threads"] <= 2 and len(cpu["cpus"]) <= 2
    if report["machine"]["cuda_available"]:
        assert gpu["seconds_per_60k_epoch"] > 0
    else:
        assert gpu == {"seconds_per_60k_epoch": None, "reason": "no CUDA GPU", "target_seconds": 1.0}

    hpo = report["hpo"]
    assert hpo["schedule"]["max_resource"] == 3 and hpo["seeds"] == [0]
    (seed,) = hpo["per_seed"]
    hyperband, random_search = seed["hyperband"], seed["random_search"]
    # R=3, η=3: Hyperband trains 11 epochs; random search gets 11 // 3 = 3 trials at 1× and 22 // 3 = 7 at 2×.
    assert hyperband["total_epochs"] == 11 == hpo["schedule"]["total_epochs"]
    assert len(hyperband["trials"]) == hpo["schedule"]["trials"]
    assert (random_search["1x"]["trials"], random_search["2x"]["trials"]) == (3, 7)
    assert (random_search["1x"]["epochs"], random_search["2x"]["epochs"]) == (9, 21)
    assert random_search["one_x_is_prefix_of_two_x"] is True
    assert random_search["1x"]["best_val_accuracy"] <= random_search["2x"]["best_val_accuracy"]
    for name in ("1x", "2x"):
        row = random_search[name]
        reach = row["hyperband_epochs_to_reach"]
        assert row["reached"] is (reach is not None)
        if reach is None:
            assert row["ratio"] is None and hyperband["best_val_accuracy_any_trial"] < row["best_val_accuracy"]
        else:
            assert 1 <= reach <= 11 and row["ratio"] == pytest.approx(reach / row["epochs"])
    # BOHB runs Hyperband's schedule (same epochs, same trial count); its second bracket is proposed by TPE.
    bohb = seed["bohb"]
    assert bohb["total_epochs"] == 11 and len(bohb["trials"]) == hpo["schedule"]["trials"]
    assert 0.0 <= bohb["best_val_accuracy"] <= 1.0
    for name in ("1x", "2x"):
        reach = random_search[name]["bohb_epochs_to_reach"]
        assert reach is None or random_search[name]["bohb_ratio"] == pytest.approx(
            reach / random_search[name]["epochs"]
        )
    assert set(hpo["median"]) >= {"1x", "2x", "hyperband_best_val_accuracy", "hyperband_total_epochs"}
    assert "bohb_best_val_accuracy" in hpo["median"] and "bohb_ratio" in hpo["median"]["1x"]
    # Optuna's TPESampler + HyperbandPruner spends exactly Hyperband's epoch budget.
    optuna_run = seed["optuna"]
    assert optuna_run["total_epochs"] == 11 and optuna_run["trials"] >= 11 // 3
    assert 0.0 <= optuna_run["best_val_accuracy"] <= 1.0
    assert isinstance(hpo["median"]["bohb_at_least_as_good_as_optuna"], bool)
    assert isinstance(hpo["pass"], bool)

    accuracy = report["accuracy"]
    assert accuracy["recipe"]["epochs"] == 1 and accuracy["recipe"]["config"]["depth"] == 3
    for name, target in (("fonts_only", 0.95), ("fonts_then_real_train", 0.99)):
        row = accuracy[name]
        assert 0.0 <= row["real_test_accuracy"] <= 1.0 and row["n_test"] == 100 and row["target"] == target
    assert accuracy["fonts_then_real_train"]["train_rows"] == [300, 350]
    assert accuracy["fonts_then_real_train"]["epochs_total"] == 2


def test_bad_flag_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    output = tmp_path / "hpo.json"
    assert bench.main(["--quick", "--eta", "1", "--output", str(output)]) == 2  # type: ignore[attr-defined]
    assert capsys.readouterr().err.strip() == "bench_hpo: error: --eta: 1 is below 2; Hyperband needs η ≥ 2"
    assert not output.exists()
