"""The labelled fine-tune (library, CLI, component in KFP's executor) on a real tiny CNN and real files: it
recovers a deliberately shifted domain with the target's labels, picks its epoch on val, and refuses bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from shifted_domains import shifted_domains, split_accuracy
from test_hpo_pipeline_compile import run_component
from typer.testing import CliRunner

from expforge.adapt.fine_tune import FineTuneSettings, fine_tune_digit_cnn, labelled_subset, short_run_warning
from expforge.cli import app
from expforge.components.fine_tune import fine_tune
from expforge.data.manifest import write_dataset
from expforge.errors import ExpforgeError
from expforge.train.checkpoint import save_checkpoint

# A tiny run: few steps, so the weight average must follow the weights quickly.
QUICK = FineTuneSettings(epochs=4, lr=0.02, batch_size=32, ema=0.5, seed=0)


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shifted_domains(tmp_path_factory.mktemp("fine-tune"))


def test_fine_tuning_on_the_targets_labels_recovers_the_shift_and_records_how(domains: dict[str, Path]) -> None:
    output = domains["root"] / "tuned.pt"
    result = fine_tune_digit_cnn(domains["model"], domains["target"], output, settings=QUICK, device="cpu")
    before, after = split_accuracy(domains["model"], domains["target"]), split_accuracy(output, domains["target"])
    assert before < 0.6, f"the shift should hurt the source model (test accuracy {before})"
    assert after >= before + 0.3
    assert result.val_accuracy > result.source_val_accuracy
    assert len(result.val_accuracy_by_epoch) == QUICK.epochs and 1 <= result.best_epoch <= QUICK.epochs
    assert result.val_accuracy == pytest.approx(result.val_accuracy_by_epoch[result.best_epoch - 1], abs=1e-4)
    assert result.val_accuracy == pytest.approx(max(result.val_accuracy_by_epoch), abs=1e-4)
    assert (result.labelled_rows, result.val_rows) == (200, 50)
    payload = torch.load(output, weights_only=True)
    assert payload["kind"] == "digit-cnn" and payload["params"]["fine_tuned_from"] == str(domains["model"])
    assert payload["params"]["fine_tune"]["best_epoch"] == result.best_epoch


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(domains: dict[str, Path]) -> None:
    weights = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        output = domains["root"] / f"seed-{name}.pt"
        settings = replace(QUICK, seed=seed, epochs=2)
        fine_tune_digit_cnn(domains["model"], domains["target"], output, settings=settings, device="cpu")
        weights[name] = torch.load(output, weights_only=True)["model"]
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def test_a_label_count_keeps_a_stratified_nested_subset(domains: dict[str, Path]) -> None:
    labels = np.repeat(np.arange(10), [150, 250, 200, 200, 200, 200, 200, 200, 200, 200])
    np.random.default_rng(7).shuffle(labels)
    smaller, larger = labelled_subset(labels, 250, 0), labelled_subset(labels, 1000, 0)
    assert len(smaller) == 250 and len(larger) == 1000 and len(set(smaller)) == 250
    assert set(smaller) <= set(larger)  # a larger count keeps every smaller count's digits
    assert np.bincount(labels[larger], minlength=10).tolist() == [75, 125] + [100] * 8  # each class its share
    assert abs(np.bincount(labels[smaller], minlength=10) - np.bincount(labels, minlength=10) / 8).max() < 1
    assert labelled_subset(labels, 250, 0).tolist() == smaller.tolist()  # the seed fixes the digits
    assert labelled_subset(labels, 250, 1).tolist() != smaller.tolist()
    everything = list(range(len(labels)))
    assert labelled_subset(labels, 0, 0).tolist() == everything == labelled_subset(labels, 5000, 0).tolist()
    settings = replace(QUICK, epochs=1, labels=30)
    output = domains["root"] / "thirty.pt"
    result = fine_tune_digit_cnn(domains["model"], domains["target"], output, settings=settings, device="cpu")
    assert result.labelled_rows == 30
    assert torch.load(output, weights_only=True)["params"]["fine_tune"]["labelled_rows"] == 30


def test_a_run_shorter_than_the_weight_averages_horizon_is_warned_about(
    domains: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    short = FineTuneSettings(epochs=1, batch_size=32, ema=0.999)  # 7 steps on 200 digits, a 1,000-step horizon
    with caplog.at_level("WARNING", logger="expforge.adapt.fine_tune"):
        result = fine_tune_digit_cnn(domains["model"], domains["target"], domains["root"] / "short.pt", settings=short)
    assert result.warnings and "7 steps, fewer than the weight average's horizon of 1000 steps" in result.warnings[0]
    assert "expforge: warning: --epochs: 1 epoch(s) of 200 digits" in caplog.text
    assert not fine_tune_digit_cnn(
        domains["model"], domains["target"], domains["root"] / "quick.pt", settings=QUICK
    ).warnings  # 28 steps against a 2-step horizon
    assert short_run_warning(FineTuneSettings(), 2000) is None  # the measured recipe: 1,920 steps
    assert short_run_warning(FineTuneSettings(epochs=36), 3500) is None  # the demo preset: 1,980 steps
    assert short_run_warning(FineTuneSettings(epochs=10), 3500) is not None  # 550 steps
    assert short_run_warning(FineTuneSettings(ema=0.0, epochs=1), 10) is None  # no average, nothing to lag


def test_the_cli_prints_one_summary_and_refuses_to_overwrite(domains: dict[str, Path]) -> None:
    output = domains["root"] / "cli.pt"
    args = ["fine-tune", "--model", str(domains["model"]), "--labelled", str(domains["target"])]
    args += ["--output", str(output), "--epochs", "2", "--ema", "0.5", "--device", "cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert len(summary["val_accuracy_by_epoch"]) == 2 and summary["settings"]["epochs"] == 2
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_the_component_runs_in_kfps_executor_and_logs_every_epoch(domains: dict[str, Path], tmp_path: Path) -> None:
    inputs = {
        "model": [{"uri": str(domains["model"]), "metadata": {}}],
        "labelled": [{"uri": str(domains["target"])}],
    }
    parameters, artifacts = run_component(fine_tune, tmp_path, {"epochs": 2, "device": "cpu"}, inputs)
    assert 1 <= parameters["best_epoch"] <= 2 and 0.0 <= parameters["val_accuracy"] <= 1.0
    assert Path(artifacts["tuned"]["uri"]).is_file()
    assert artifacts["tuned"]["metadata"]["kind"] == "digit-cnn"
    assert artifacts["tuned"]["metadata"]["architecture"]["width"] == 4  # read from the checkpoint, not the input
    logged = artifacts["metrics"]["metadata"]
    assert {"epoch_001_val_accuracy", "epoch_002_val_accuracy", "best_epoch"} <= set(logged)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "--epochs: 0 is not a number of passes"),
        ({"strong_share": 1.5}, r"--strong-share: 1.5 is not a share"),
        ({"ema": 1.0}, r"--ema: 1.0 is not a weight-averaging decay"),
        ({"labels": -5}, "--labels: -5 is not a count of digits"),
        ({"batch_size": 1}, "--batch-size: 1; batch norm needs at least 2"),
    ],
)
def test_settings_that_cannot_work_are_one_clear_error(
    domains: dict[str, Path], change: dict[str, float], message: str
) -> None:
    settings = replace(QUICK, **change)
    output = domains["root"] / "never.pt"
    with pytest.raises(ExpforgeError, match=message):
        fine_tune_digit_cnn(domains["model"], domains["target"], output, settings=settings, device="cpu")
    assert not output.exists()


def test_data_without_labelled_train_or_val_digits_is_one_clear_error(domains: dict[str, Path]) -> None:
    root = domains["root"]
    blank = np.zeros((28, 28), np.uint8)
    write_dataset(root / "only-train", [(blank, d, "train", {}) for d in range(10)])
    write_dataset(root / "one-train", [(blank, 1, split, {}) for split in ("train", "val")])
    other = save_checkpoint(root / "lm.pt", kind="gpt-lm", architecture={"layers": 2}, model={})
    with pytest.raises(ExpforgeError, match="--labelled: no real val digits to choose the epoch on"):
        fine_tune_digit_cnn(domains["model"], root / "only-train", root / "a.pt", settings=QUICK, device="cpu")
    with pytest.raises(ExpforgeError, match="labelled digit"):
        fine_tune_digit_cnn(domains["model"], root / "one-train", root / "b.pt", settings=QUICK, device="cpu")
    with pytest.raises(ExpforgeError, match="expected a 'digit-cnn' model"):
        fine_tune_digit_cnn(other, domains["target"], root / "c.pt", settings=QUICK, device="cpu")
    assert not any((root / name).exists() for name in ("a.pt", "b.pt", "c.pt"))
