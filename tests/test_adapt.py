"""Adaptation to unlabeled target digits: a real tiny CNN, a deliberately shifted target domain, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from shifted_domains import shifted_domains, split_accuracy
from test_hpo_pipeline_compile import run_component
from typer.testing import CliRunner

from expforge.adapt.core import adapt_digit_cnn
from expforge.adapt.methods import SelfTrainSettings
from expforge.cli import app
from expforge.components.adapt import adapt
from expforge.errors import ExpforgeError
from expforge.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shifted_domains(tmp_path_factory.mktemp("adapt"))


def test_adaptation_recovers_a_shifted_domain_without_its_labels(domains: dict[str, Path]) -> None:
    output = domains["root"] / "adapted.pt"
    settings = SelfTrainSettings(rounds=1, seed=0)
    result = adapt_digit_cnn(
        domains["model"], domains["target"], domains["target"], output, settings=settings, device="cpu"
    )
    before, after = split_accuracy(domains["model"], domains["target"]), split_accuracy(output, domains["target"])
    assert before < 0.6, f"the shift should hurt the source model (test accuracy {before})"
    assert after >= before + 0.3
    assert result.chosen != "none" and result.val_accuracy > result.source_val_accuracy
    assert [c.name for c in result.candidates] == ["none", "adabn", "self-train/1"]
    # The output is an ordinary digit-cnn checkpoint that records how it was chosen.
    payload = torch.load(output, weights_only=True)
    assert payload["params"]["adaptation"]["chosen"] == result.chosen
    assert payload["params"]["adaptation"]["unlabeled_split"] == "train"


def test_the_cli_prints_one_summary_and_refuses_to_overwrite(domains: dict[str, Path]) -> None:
    output = domains["root"] / "cli.pt"
    args = ["adapt", "--model", str(domains["model"]), "--unlabeled", str(domains["target"]), "--output", str(output)]
    args += ["--method", "adabn", "--device", "cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert [c["name"] for c in summary["candidates"]] == ["none", "adabn"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_no_unlabeled_digits_is_one_clear_error(domains: dict[str, Path]) -> None:
    # The source dataset has no test split: nothing to adapt on.
    with pytest.raises(ExpforgeError, match="unlabeled"):
        adapt_digit_cnn(
            domains["model"], domains["source"], domains["target"], domains["root"] / "x.pt",
            unlabeled_split="test", device="cpu",
        )  # fmt: skip


def test_a_model_of_another_kind_or_architecture_is_one_clear_error(domains: dict[str, Path]) -> None:
    other = save_checkpoint(domains["root"] / "lm.pt", kind="gpt-lm", architecture={"layers": 2}, model={})
    with pytest.raises(ExpforgeError, match="expected a 'digit-cnn' model"):
        adapt_digit_cnn(other, domains["target"], domains["target"], domains["root"] / "y.pt", device="cpu")
    payload = torch.load(domains["model"], weights_only=True)
    wrong = {**payload, "architecture": {**payload["architecture"], "width": 8}}
    torch.save(wrong, domains["root"] / "wrong.pt")
    with pytest.raises(ExpforgeError, match="do not fit its architecture"):
        adapt_digit_cnn(domains["root"] / "wrong.pt", domains["target"], domains["target"], domains["root"] / "z.pt")


def test_an_unknown_method_is_one_clear_error(domains: dict[str, Path]) -> None:
    with pytest.raises(ExpforgeError, match="--method: unknown method"):
        adapt_digit_cnn(
            domains["model"], domains["target"], domains["target"], domains["root"] / "w.pt", methods=["dann"]
        )


def test_the_component_runs_in_kfps_executor_and_records_the_checkpoints_architecture(
    domains: dict[str, Path], tmp_path: Path
) -> None:
    inputs = {
        "model": [{"uri": str(domains["model"]), "metadata": {}}],  # a search's winner carries no architecture
        "real": [{"uri": str(domains["target"])}],
    }
    parameters, artifacts = run_component(adapt, tmp_path, {"methods": ["adabn"], "device": "cpu"}, inputs)
    assert parameters["chosen"] in ("none", "adabn")
    assert Path(artifacts["adapted"]["uri"]).is_file()
    assert artifacts["adapted"]["metadata"]["architecture"]["width"] == 4
    assert "candidate_adabn_val_accuracy" in artifacts["metrics"]["metadata"]
