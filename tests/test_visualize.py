"""The sample grid: a real PNG, seeded, one row per digit, and errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from expforge.data.manifest import write_dataset
from expforge.errors import ExpforgeError
from expforge.viz.samples import visualize_samples


def digits(tmp_path: Path, name: str, labels: list[int], *, font: bool = False) -> Path:
    rng = np.random.default_rng(0)
    items = [
        (
            rng.integers(0, 256, size=(28, 28), dtype=np.uint8),
            label,
            "train" if i % 2 else "test",
            {"font": f"Font {label}"} if font else {},
        )
        for i, label in enumerate(labels)
    ]
    write_dataset(tmp_path / name, items, extra_columns=["font"] if font else ())
    return tmp_path / name


def test_grid_png_is_written_and_seeded(tmp_path: Path) -> None:
    dataset = digits(tmp_path, "ds", list(range(10)) * 6, font=True)
    first = visualize_samples(dataset, tmp_path / "out" / "grid.png", per_class=4, seed=3)
    assert first == tmp_path / "out" / "grid.png"
    with Image.open(first) as png:
        assert png.format == "PNG" and png.height > png.width  # ten rows of four tiles
    again = visualize_samples(dataset, tmp_path / "again.png", per_class=4, seed=3)
    assert first.read_bytes() == again.read_bytes()
    other = visualize_samples(dataset, tmp_path / "other.png", per_class=4, seed=4)
    assert first.read_bytes() != other.read_bytes()


def test_split_filter_and_digits_with_few_samples(tmp_path: Path) -> None:
    dataset = digits(tmp_path, "ds", [0, 1, 1, 2, 3, 3, 3])  # most digits absent, some with one sample
    output = visualize_samples(dataset, tmp_path / "grid.png", per_class=8, split="train")
    assert output.is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_class": 0}, "--per-class: 0 is not between 1 and 64"),
        ({"split": "dev"}, "--split: unknown split 'dev'"),
        ({"seed": -2}, "--seed: -2 is negative"),
    ],
)
def test_bad_options_write_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    dataset = digits(tmp_path, "ds", list(range(10)))
    with pytest.raises(ExpforgeError, match=message):
        visualize_samples(dataset, tmp_path / "grid.png", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_bad_datasets_fail_and_keep_the_previous_png(tmp_path: Path) -> None:
    good = digits(tmp_path, "good", list(range(10)))
    output = visualize_samples(good, tmp_path / "grid.png", per_class=1)
    before = output.read_bytes()
    bad = digits(tmp_path, "bad", [1, 12, 3])
    with pytest.raises(ExpforgeError, match="has label 12; expected 0–9"):
        visualize_samples(bad, output)
    only_test = digits(tmp_path, "only_test", [5])  # its one row is in split test
    with pytest.raises(ExpforgeError, match="no rows in split val"):
        visualize_samples(only_test, output, split="val")
    with pytest.raises(ExpforgeError, match="labels.csv: not found"):
        visualize_samples(tmp_path / "missing", output)
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "grid.png", "only_test"]
