"""TensorBoard event files of the trainers, read back with TensorBoard's reader, and ``expforge tensorboard``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from tensorboard_events import assert_matches_history, read_scalars
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.train.tensorboard_log import ScalarLog, tag_for
from expforge.train.tensorboard_serve import find_logdirs, tensorboard_command


def test_tags_follow_one_rule() -> None:
    assert tag_for("train_loss") == "train/loss" and tag_for("val_accuracy") == "val/accuracy"
    assert tag_for("images_per_second") == "throughput/images_per_second" and tag_for("lr") == "lr"
    assert tag_for("val_bpc") == "val/bpc" and tag_for("seconds") == "time/seconds"


def _run_trainer_component(
    component: Any, dataset: Path, tmp_path: Path, board_dir: str, **options: Any
) -> tuple[Any, Any]:
    """Run a trainer component's Python function on ``dataset`` (train and real val alike); return its history
    and tensorboard artifacts."""
    from kfp.dsl import Artifact, Dataset, Metrics, Model

    history = Artifact(name="history", uri=str(tmp_path / "history"))
    board = Artifact(name="tensorboard", uri=str(tmp_path / board_dir))
    component.python_func(
        synthetic=Dataset(name="synthetic", uri=str(dataset)),
        real=Dataset(name="real", uri=str(dataset)),
        model=Model(name="model", uri=str(tmp_path / "model")),
        metrics=Metrics(name="metrics", uri=str(tmp_path / "m")),
        history=history,
        tensorboard=board,
        **options,
    )
    return history, board


def test_sklearn_component_writes_the_history_as_events(tiny_dataset: Path, tmp_path: Path) -> None:
    from expforge.components.train_sklearn import train_sklearn as component

    history, board = _run_trainer_component(component, tiny_dataset, tmp_path, "task/tensorboard", epochs=3)
    columns = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]
    assert_matches_history(Path(board.path), Path(history.path), "epoch", columns)
    assert board.metadata["format"] == "tensorboard"
    assert set(read_scalars(Path(board.path))["val/accuracy"]) == {1, 2, 3}


def test_torch_component_logs_loss_accuracy_lr_and_throughput(tiny_dataset: Path, tmp_path: Path) -> None:
    from expforge.components.train_torch import train_torch as component

    history, board = _run_trainer_component(
        component, tiny_dataset, tmp_path, "tensorboard", epochs=2, width=4, batch_size=16, device="cpu"
    )
    columns = ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "images_per_second", "seconds"]
    assert_matches_history(Path(board.path), Path(history.path), "epoch", columns)
    assert len(list(Path(board.path).glob("events.out.tfevents.*"))) == 1  # one kept writer, one file


def test_rows_without_a_step_are_refused(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Row:
        loss: float

    with ScalarLog(tmp_path / "tb") as board, pytest.raises(ExpforgeError, match="no 'epoch' or 'step'"):
        board.record(Row(1.0))


def _fake_run(root: Path, run: str, task: str, value: float) -> None:
    @dataclasses.dataclass
    class Row:
        epoch: int
        val_accuracy: float

    with ScalarLog(root / run / task / "tensorboard") as board:
        board.record(Row(1, value))


def test_serve_names_every_task_of_a_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _fake_run(root, "run-a", "trial-1", 0.5)
    _fake_run(root, "run-a", "for-loop/trial-2", 0.6)
    _fake_run(root, "run-b", "train", 0.7)
    (root / ".alerts" / "x" / "tensorboard").mkdir(parents=True)  # hidden: skipped
    (root / "run-b" / "empty" / "tensorboard").mkdir(parents=True)  # no event files: skipped
    assert set(find_logdirs(root, "run-a")) == {"trial-1", "for-loop/trial-2"}
    assert set(find_logdirs(root)) == {"run-a/trial-1", "run-a/for-loop/trial-2", "run-b/train"}
    argv = tensorboard_command(find_logdirs(root, "run-a"))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    spec = argv[argv.index("--logdir_spec") + 1]
    assert f"trial-1:{(root / 'run-a' / 'trial-1' / 'tensorboard').resolve()}" in spec.split(",")
    with pytest.raises(ExpforgeError, match="--run"):
        find_logdirs(root, "../elsewhere")
    with pytest.raises(ExpforgeError, match="no TensorBoard event files"):
        tensorboard_command(find_logdirs(root, "run-b") and {})
    result = CliRunner().invoke(app, ["tensorboard", "--root", str(root), "--run", "run-a", "--print"])
    assert result.exit_code == 0, result.output
    assert "for-loop/trial-2\t" in result.output and "tensorboard.main --logdir_spec" in result.output
    missing = CliRunner().invoke(app, ["tensorboard", "--root", str(root), "--run", "nope"])
    assert missing.exit_code == 2 and "--run: no run 'nope'" in missing.output
