"""The dataset manifest: strict parsing with one-line errors, atomic writes, fuzzed with hypothesis."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expforge.data.manifest import (
    ManifestRow,
    load_arrays,
    parse_manifest,
    read_manifest,
    write_dataset,
)
from expforge.errors import ExpforgeError


def test_round_trip_keeps_rows_extra_columns_and_pixels(tmp_path: Path) -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[10:18, 12:16] = 200
    summary = write_dataset(
        tmp_path / "ds",
        [(image, 7, "train", {"font": "DejaVu Sans"}), (image, 3, "test", {"font": "Lato"})],
        extra_columns=["font"],
        info={"source": "unit"},
    )
    assert summary["rows"] == 2 and summary["splits"] == {"train": 1, "test": 1} and summary["source"] == "unit"
    rows = read_manifest(tmp_path / "ds")
    assert rows == [
        ManifestRow("images/000000.png", 7, "train", {"font": "DejaVu Sans"}),
        ManifestRow("images/000001.png", 3, "test", {"font": "Lato"}),
    ]
    x, y, _ = load_arrays(tmp_path / "ds", ["train"])
    assert x.shape == (1, 28, 28) and x.dtype == np.uint8 and y.tolist() == [7]
    assert np.array_equal(x[0], image)
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["labels"] == {"3": 1, "7": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("path,label\nimages/a.png,1\n", "missing column(s) split"),
        ("path,label,split\nimages/a.png,x,train\n", "line 2: label 'x' is not an integer"),
        ("path,label,split\nimages/a.png,1,holdout\n", "line 2: unknown split 'holdout'"),
        ("path,label,split\nimages/a.png,1,train,extra\n", "line 2: more fields"),
        ("path,label,split\nimages/a.png,1\n", "line 2: fewer fields"),
        ("path,label,split\n,1,train\n", "line 2: empty path"),
        ("path,label,split\n../etc/passwd,1,train\n", "must be relative"),
        ("path,label,split\na.png,1,train\na.png,2,train\n", "line 3: path 'a.png' is listed twice"),
        ("path,label,split\na.png,-1,train\n", "negative"),
    ],
)
def test_corrupt_manifest_rows_get_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ExpforgeError) as info:
        parse_manifest(text, source="labels.csv")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_non_png_images_and_labels_out_of_range(tmp_path: Path, tiny_dataset: Path) -> None:
    ds = tmp_path / "broken"
    (ds / "images").mkdir(parents=True)
    (ds / "images" / "a.png").write_bytes(b"GIF89a not a png")
    (ds / "labels.csv").write_text("path,label,split\nimages/a.png,1,train\nimages/b.png,2,test\n")
    with pytest.raises(ExpforgeError, match=r"a\.png: not a PNG file"):
        load_arrays(ds, ["train"])
    with pytest.raises(ExpforgeError, match=r"b\.png: image listed in labels\.csv does not exist"):
        load_arrays(ds, ["test"])
    with pytest.raises(ExpforgeError, match="unknown split 'dev'"):
        load_arrays(tiny_dataset, ["dev"])
    with pytest.raises(ExpforgeError, match="labels.csv: not found"):
        load_arrays(tmp_path / "nowhere", ["train"])
    with pytest.raises(ExpforgeError, match="has label 5; expected 0–4"):
        load_arrays(tiny_dataset, ["train"], num_classes=5)


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    def items():
        yield np.zeros((28, 28), dtype=np.uint8), 1, "train", {}
        raise RuntimeError("generator broke half-way")

    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "ds", items())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExpforgeError, match="unknown split"):
        write_dataset(tmp_path / "ds", [(np.zeros((28, 28), np.uint8), 1, "holdout", {})])
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ExpforgeError, match="cannot create parent directory"):
        write_dataset(blocker / "sub" / "ds", [(np.zeros((28, 28), np.uint8), 1, "train", {})])


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=0, max_size=5), max_size=6))
def test_fuzz_reader_only_raises_expforge_errors(rows: list[list[str]]) -> None:
    """Whatever the bytes, the reader returns validated rows or raises one clear ExpforgeError."""
    text = _csv([["path", "label", "split"], *rows])
    try:
        parsed = parse_manifest(text)
    except ExpforgeError as exc:
        assert "\n" not in str(exc)
        return
    for row in parsed:
        assert row.split in {"train", "val", "test"} and row.label >= 0 and row.path


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"images/[a-z0-9_]{1,8}\.png", fullmatch=True),
            st.integers(0, 9),
            st.sampled_from(["train", "val", "test"]),
            st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
        ),
        unique_by=lambda r: r[0],
        max_size=8,
    )
)
def test_fuzz_valid_manifests_round_trip(rows: list[tuple[str, int, str, str]]) -> None:
    text = _csv([["path", "label", "split", "font"], *[[p, str(label), s, f] for p, label, s, f in rows]])
    parsed = parse_manifest(text)
    assert [(r.path, r.label, r.split, r.extra["font"]) for r in parsed] == rows
