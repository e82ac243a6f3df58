"""Both trainers' components draw their per-epoch curves as ``curves.png`` in their ``tensorboard`` output."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model
from synthetic_digits import synthetic_items

from expforge.data.manifest import write_dataset
from expforge.errors import ExpforgeError
from expforge.train.sklearn_trainer import EpochMetrics
from expforge.viz.epoch_curves import CURVES_PNG, DPI, SIZE_INCHES, plot_epoch_curves

WIDTH, HEIGHT = int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (after checking the signature and the IHDR chunk)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_drawn(path: Path) -> None:
    """A PNG of the documented size with lines on it (not one flat colour)."""
    from matplotlib.image import imread

    assert png_size(path) == (WIDTH, HEIGHT) == (800, 320)
    pixels = imread(path)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20
    assert not list(path.parent.glob(f".{CURVES_PNG}*")) and len(list(path.parent.glob("*.png"))) == 1


def assert_history_csv(path: Path, *, epochs: int) -> None:
    """Both trainers' history CSV: ``\\n`` line ends, the epoch record's columns first, one row per epoch, and no
    staging file left beside it."""
    text = path.read_bytes().decode("utf-8")
    assert "\r" not in text
    header, *rows = text.rstrip("\n").split("\n")
    fields = [f.name for f in dataclasses.fields(EpochMetrics)]
    assert header.split(",")[: len(fields)] == fields and len(rows) == epochs
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("digits") / "data"
    write_dataset(output, synthetic_items(4, "train", 1) + synthetic_items(2, "val", 2))
    return output


def _artifacts(tmp_path: Path) -> dict[str, object]:
    return {
        "model": Model(name="model", uri=str(tmp_path / "model")),
        "metrics": Metrics(name="metrics", uri=str(tmp_path / "metrics")),
        "history": Artifact(name="history", uri=str(tmp_path / "history")),
        "tensorboard": Artifact(name="tensorboard", uri=str(tmp_path / "tensorboard")),
    }


def test_the_sklearn_component_writes_curves_png(digits: Path, tmp_path: Path) -> None:
    from expforge.components.train_sklearn import train_sklearn as component

    outputs = _artifacts(tmp_path)
    data = Dataset(name="d", uri=str(digits))
    component.python_func(synthetic=data, real=data, epochs=3, **outputs)
    assert_drawn(tmp_path / "tensorboard" / CURVES_PNG)
    assert_history_csv(tmp_path / "history", epochs=3)


def test_the_torch_component_writes_curves_png(digits: Path, tmp_path: Path) -> None:
    from expforge.components.train_torch import train_torch as component

    outputs = _artifacts(tmp_path)
    data = Dataset(name="d", uri=str(digits))
    component.python_func(synthetic=data, real=data, epochs=2, width=4, batch_size=16, device="cpu", **outputs)
    assert_drawn(tmp_path / "tensorboard" / CURVES_PNG)
    assert_history_csv(tmp_path / "history", epochs=2)


def test_one_epoch_and_nan_still_draw_and_no_epochs_is_one_error(tmp_path: Path) -> None:
    history = [EpochMetrics(1, "mixed", float("nan"), 0.9, 0.5, 0.6)]
    assert_drawn(plot_epoch_curves(history, tmp_path / "one" / CURVES_PNG))
    with pytest.raises(ExpforgeError, match="no epochs to plot"):
        plot_epoch_curves([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
