"""Smoke test of bench/bench_hpo.py: its --quick mode runs end to end and writes every figure the issue asks for.

The benchmark runs in a subprocess: training switches torch to deterministic kernels and pins CPUs for the
throughput figure, which must not leak into the other tests of this process.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    assert hpo["methods"] == ["random_1x", "random_2x", "hyperband", "bohb", "optuna"]
    (seed,) = hpo["per_seed"]
    methods = seed["methods"]
    # R=3, η=3: Hyperband (and BOHB, and Optuna's pruner at equal budget) train 11 epochs; random search gets
    # 11 // 3 = 3 trials at 1× and 22 // 3 = 7 at 2×, and 1× is the first three trials of 2×.
    assert seed["budget_epochs"] == 11 == hpo["schedule"]["total_epochs"]
    for name in ("hyperband", "bohb", "optuna"):
        assert methods[name]["total_epochs"] == 11
    assert len(methods["hyperband"]["trials"]) == len(methods["bohb"]["trials"]) == hpo["schedule"]["trials"]
    assert (len(methods["random_1x"]["trials"]), len(methods["random_2x"]["trials"])) == (3, 7)
    assert (methods["random_1x"]["total_epochs"], methods["random_2x"]["total_epochs"]) == (9, 21)
    assert seed["random_1x_is_prefix_of_2x"] is True
    assert methods["random_1x"]["trials"] == methods["random_2x"]["trials"][:3]
    references = seed["references"]
    assert references["1x"]["best_val_accuracy"] <= references["2x"]["best_val_accuracy"]
    assert references["1x"]["best_val_accuracy"] == methods["random_1x"]["best_val_accuracy"]
    for figures in methods.values():
        # Every search reports the four figures; the selected model is one of its full-R trials, scored on test.
        assert 0.0 <= figures["selected_test_accuracy"] <= 1.0 and figures["wall_seconds"] > 0
        assert figures["best_val_accuracy_at_equal_budget"] <= figures["best_val_accuracy"]
        assert figures["selected"]["trial_id"] in {t["trial_id"] for t in figures["trials"]}
        # One timeline point per trial, at its end (Optuna's pruner reads every epoch; those readings are not
        # results found): the running best of the values the trials ended on, at the epochs trained by then.
        ends = [t["val_accuracy"] for t in figures["trials"]]
        assert [best for _, best in figures["timeline"]] == list(itertools.accumulate(ends, max))
        assert [epochs for epochs, _ in figures["timeline"]] == [t["cumulative_epochs"] for t in figures["trials"]]
        for ref in ("1x", "2x"):
            reach = figures[f"epochs_to_reach_random_{ref}_best"]
            if reach is None:
                assert figures["best_val_accuracy"] < references[ref]["best_val_accuracy"]
            else:
                assert 1 <= reach <= figures["total_epochs"]
                assert figures[f"ratio_to_random_{ref}"] == pytest.approx(reach / references[ref]["epochs"])
    # random search reaches its own best exactly when its best trial finishes
    assert methods["random_1x"]["epochs_to_reach_random_1x_best"] in {3, 6, 9}
    for name, figures in hpo["by_method"].items():
        spread = figures["ratio_to_random_1x"]
        assert spread["values"] == [methods[name]["ratio_to_random_1x"]]
        assert spread["median"] == spread["q1"] == spread["q3"] or spread["median"] is None
    goals = hpo["goals"]
    assert goals["target_ratio"] == 0.25
    assert isinstance(goals["bohb_at_least_as_good_as_optuna"], bool)
    assert goals["bohb_at_least_as_good_as_optuna"] is (
        goals["bohb_median_best_val_at_equal_budget"] >= goals["optuna_median_best_val_at_equal_budget"]
    )
    assert isinstance(hpo["pass"], bool)

    accuracy = report["accuracy"]
    assert accuracy["recipe"]["epochs"] == 1 and accuracy["recipe"]["config"]["depth"] == 3
    for name, target in (("fonts_only", 0.95), ("fonts_then_real_train", 0.99)):
        row = accuracy[name]
        assert 0.0 <= row["real_test_accuracy"] <= 1.0 and row["n_test"] == 250 and row["target"] == target
    assert accuracy["fonts_then_real_train"]["train_rows"] == [300, 100]
    assert accuracy["fonts_then_real_train"]["epochs_total"] == 2


def test_bad_flag_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    output = tmp_path / "hpo.json"
    assert bench.main(["--quick", "--eta", "1", "--output", str(output)]) == 2  # type: ignore[attr-defined]
    assert capsys.readouterr().err.strip() == "bench_hpo: error: --eta: 1 is below 2; Hyperband needs η ≥ 2"
    assert not output.exists()


def test_fractions_that_leave_no_train_split_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    argv = ["--quick", "--val-fraction", "0.5", "--test-fraction", "0.5", "--output", str(tmp_path / "h.json")]
    assert bench.main(argv) == 2  # type: ignore[attr-defined]
    assert capsys.readouterr().err.strip() == (
        "bench_hpo: error: --val-fraction + --test-fraction: 1 leaves no real train split"
    )


def test_spread_ranks_never_reached_above_every_number() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import hpo_compare

    spread = hpo_compare.spread([12, None, 9, 30, None])
    # sorted: 9, 12, 30, inf, inf → median 30, q1 12, q3 inf (so no IQR)
    assert (spread["median"], spread["q1"], spread["q3"], spread["iqr"]) == (30, 12, None, None)
    assert hpo_compare.spread([0.9, 0.92, 0.94, 0.96, 0.98]) | {"values": []} == {
        "median": 0.94, "q1": 0.92, "q3": 0.96, "iqr": 0.04, "values": []
    }  # fmt: skip
    assert hpo_compare.spread([None, None, None])["median"] is None
    assert hpo_compare.best_within([(3, 0.5), (9, 0.7), (12, 0.8)], 10) == 0.7
    assert hpo_compare.epochs_to_reach([(3, 0.5), (9, 0.7), (12, 0.8)], 0.75) == 12
    assert hpo_compare.epochs_to_reach([(3, 0.5)], 0.75) is None


def test_two_workers_save_each_search_and_resume_trains_only_what_is_missing(tmp_path: Path) -> None:
    def run(*extra: str) -> tuple[dict[str, Any], str]:
        output = tmp_path / f"hpo{len(extra)}.json"
        command = [sys.executable, str(SCRIPT), "--quick", "--parts", "hpo", "--seeds", "0", "1", "--workers", "2"]
        command += ["--data-dir", str(tmp_path / "data"), "--output", str(output), *extra]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert completed.returncode == 0, completed.stderr[-3000:]
        report: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))["hpo"]
        return report, completed.stderr

    first, _ = run("--methods", "hyperband")
    assert [s["seed"] for s in first["per_seed"]] == [0, 1] and not any("reused" in s for s in first["per_seed"])
    (saved,) = (tmp_path / "data").glob("seeds-*")
    assert sorted(str(p.relative_to(saved)) for p in saved.rglob("*.json")) == [
        "seed-0/hyperband.json", "seed-0/random_1x.json", "seed-1/hyperband.json", "seed-1/random_1x.json"
    ]  # fmt: skip

    # Adding a search to a finished run trains that search alone; what was kept is read back unchanged.
    again, log = run("--methods", "hyperband", "bohb", "--resume")
    assert "seed 0: reused hyperband, random_1x" in log and "seed 1: reused hyperband, random_1x" in log
    assert "Hyperband," not in log and "random search," not in log and log.count(": BOHB (") == 2
    assert [s.pop("reused") for s in again["per_seed"]] == [True, True]
    for before, after in zip(first["per_seed"], again["per_seed"], strict=True):
        assert after["methods"].pop("bohb")["total_epochs"] == after["budget_epochs"]
        assert after == before
    assert {name: again["by_method"][name] for name in first["by_method"]} == first["by_method"]
    assert (saved / "seed-1" / "bohb.json").is_file()


def test_a_seed_is_combined_from_its_searches_records() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import hpo_compare

    def kept(timeline: list[list[float]], epochs: int) -> dict[str, Any]:
        best = max(b for _, b in timeline)
        return {"total_epochs": epochs, "best_val_accuracy": best, "selected": None, "selected_test_accuracy": None,
                "wall_seconds": 1.0, "timeline": timeline, "trials": []}  # fmt: skip

    records = {
        "random_1x": kept([[9, 0.80], [18, 0.85], [27, 0.85]], 27) | {"is_prefix_of_2x": True},
        "random_2x": kept([[9, 0.80], [18, 0.85], [27, 0.85], [36, 0.90], [45, 0.90], [54, 0.90]], 54),
        "hyperband": kept([[3, 0.70], [6, 0.86], [30, 0.88]], 30),
    }
    seed = hpo_compare.combine_seed(4, records, budget=29, methods=hpo_compare.METHODS)
    assert seed["references"] == {
        "1x": {"best_val_accuracy": 0.85, "epochs": 27, "epochs_to_first_reach": 18},
        "2x": {"best_val_accuracy": 0.90, "epochs": 54, "epochs_to_first_reach": 36},
    }
    hyperband = seed["methods"]["hyperband"]
    assert (hyperband["epochs_to_reach_random_1x_best"], hyperband["ratio_to_random_1x"]) == (6, 6 / 27)
    assert hyperband["ratio_to_random_1x_first_reach"] == 6 / 18  # random search itself first got there at 18
    assert hyperband["ratio_to_random_2x_first_reach"] is None
    assert hyperband["epochs_to_reach_random_2x_best"] is None and hyperband["ratio_to_random_2x"] is None
    assert hyperband["best_val_accuracy_at_equal_budget"] == 0.86  # the 30-epoch point is past the budget
    assert seed["methods"]["random_1x"]["epochs_to_reach_random_1x_best"] == 18
    assert seed["methods"]["random_1x"]["ratio_to_random_1x_first_reach"] == 1.0
    assert seed["random_1x_is_prefix_of_2x"] is True
    assert list(seed["methods"]) == ["random_1x", "random_2x", "hyperband"]
    # a subset reports only what it asked for, even when more was kept
    subset = hpo_compare.combine_seed(4, records, budget=29, methods=["hyperband"])
    assert list(subset["methods"]) == ["random_1x", "hyperband"] and list(subset["references"]) == ["1x"]
    assert "ratio_to_random_2x" not in subset["methods"]["hyperband"] and subset["random_1x_is_prefix_of_2x"] is None


def test_a_subset_of_searches_runs_random_1x_as_the_reference_and_decides_nothing_it_did_not_run(
    tmp_path: Path,
) -> None:
    output = tmp_path / "hpo.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--parts", "hpo", "--methods", "hyperband"]
    command += ["--data-dir", str(tmp_path / "data"), "--output", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-3000:]
    hpo = json.loads(output.read_text(encoding="utf-8"))["hpo"]
    assert hpo["methods"] == ["random_1x", "hyperband"] and list(hpo["by_method"]) == ["random_1x", "hyperband"]
    (seed,) = hpo["per_seed"]
    assert list(seed["references"]) == ["1x"] and seed["methods"]["random_1x"]["total_epochs"] == 9
    assert "ratio_to_random_2x" not in seed["methods"]["hyperband"]
    assert isinstance(hpo["goals"]["hyperband_at_most_target_of_random_epochs"], bool)
    assert hpo["goals"]["bohb_at_least_as_good_as_optuna"] is None and hpo["pass"] is None
    assert "BOHB ≥ Optuna: not run" in completed.stderr


def test_random_2x_added_later_trains_only_its_last_trials_and_records_what_a_whole_run_does(tmp_path: Path) -> None:
    def run(data: str, *extra: str) -> tuple[dict[str, Any], str]:
        output = tmp_path / f"{data}-{len(extra)}.json"
        command = [sys.executable, str(SCRIPT), "--quick", "--parts", "hpo", "--data-dir", str(tmp_path / data)]
        completed = subprocess.run(
            [*command, "--output", str(output), *extra], capture_output=True, text=True, timeout=300, cwd=REPO
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        report: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))["hpo"]
        return report, completed.stderr

    run("added", "--methods", "hyperband")
    added, log = run("added", "--methods", "random_2x", "hyperband", "--resume")
    # R=3: 1x is 3 trials, 2x 7; the kept three are not trained again, and Hyperband not at all.
    assert "seed 0: random search 2x, its last 4 trials" in log and "random search," not in log
    assert "Hyperband," not in log
    whole, whole_log = run("whole", "--methods", "random_2x")
    assert "seed 0: random search, 7 trials of 3 epochs" in whole_log

    def comparable(seed: dict[str, Any]) -> dict[str, Any]:
        methods = {name: dict(figures) for name, figures in seed["methods"].items() if name.startswith("random")}
        for figures in methods.values():
            figures.pop("wall_seconds")
            figures["trials"] = [{k: v for k, v in row.items() if k != "seconds"} for row in figures["trials"]]
        return {"references": seed["references"], "prefix": seed["random_1x_is_prefix_of_2x"], "methods": methods}

    (added_seed,), (whole_seed,) = added["per_seed"], whole["per_seed"]
    assert added_seed["methods"]["random_2x"]["total_epochs"] == 21
    assert comparable(added_seed) == comparable(whole_seed)


def test_a_random_run_is_extended_by_the_records_of_its_later_trials() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import hpo_compare

    def kept(accuracies: list[float], first_id: int) -> dict[str, Any]:
        trials = [
            {"trial_id": f"rs-c{first_id + i:02d}", "val_accuracy": a, "cumulative_epochs": 3 * (i + 1), "seconds": 2.0}
            for i, a in enumerate(accuracies)
        ]
        timeline = [[3 * (i + 1), max(accuracies[: i + 1])] for i in range(len(accuracies))]
        best = max(trials, key=lambda row: row["val_accuracy"])
        return {"total_epochs": 3 * len(accuracies), "best_val_accuracy": timeline[-1][1],
                "wall_seconds": 2.0 * len(trials), "timeline": timeline, "trials": trials,
                "selected": {"trial_id": best["trial_id"], "val_accuracy": best["val_accuracy"]},
                "selected_test_accuracy": best["val_accuracy"] - 0.01}  # fmt: skip

    head = kept([0.80, 0.85], 0)
    better = hpo_compare.extend_record(head, kept([0.70, 0.90], 2))
    assert better["timeline"] == [[3, 0.80], [6, 0.85], [9, 0.85], [12, 0.90]]
    assert [row["cumulative_epochs"] for row in better["trials"]] == [3, 6, 9, 12]
    assert better["total_epochs"] == 12 and better["best_val_accuracy"] == 0.90 and better["wall_seconds"] == 8.0
    assert better["selected"]["trial_id"] == "rs-c03" and better["selected_test_accuracy"] == pytest.approx(0.89)
    # A later trial that only ties the head's best does not replace it: the earlier trial id wins, as promote ranks.
    tied = hpo_compare.extend_record(head, kept([0.85], 2))
    assert tied["selected"]["trial_id"] == "rs-c01" and tied["selected_test_accuracy"] == pytest.approx(0.84)
    assert tied["is_prefix_of_2x"] is True and head["total_epochs"] == 6  # the head record is not changed


def test_optuna_search_is_the_same_search_on_every_run(tmp_path: Path) -> None:
    """The pruner's brackets hang on the study's name; an unnamed study is named at random, so runs differed."""
    sys.path.insert(0, str(REPO / "bench"))
    import hpo_compare

    from expforge.tune.hyperband import hyperband_schedule
    from expforge.tune.space import SearchSpace

    def train_fn(config: dict[str, Any], epochs: int, resume_from: Path | None, out: Path) -> dict[str, float]:
        ceiling = 0.99 - 0.1 * abs(math.log10(config["lr"]) + 3) - 0.2 * config["dropout"]
        return {"val_accuracy": ceiling * (1 - 0.6**epochs)}

    schedule = hyperband_schedule(9, 3)
    runs = [
        hpo_compare.run_optuna_hyperband(
            SearchSpace.default(), schedule, 3, train_fn, workdir=tmp_path / str(k), budget=schedule.total_epochs()
        )
        for k in range(2)
    ]
    first, second = ([{k: v for k, v in row.items() if k != "seconds"} for row in run.trials] for run in runs)
    assert len(first) >= 5 and any(row["pruned"] for row in first) and any(not row["pruned"] for row in first)
    assert first == second
    assert runs[0].timeline == runs[1].timeline and len(runs[0].timeline) == len(first)
