"""The dataset layout every step shares: ``<dataset>/labels.csv`` (``path,label,split``, extra columns
allowed) plus ``images/*.png`` (28×28 grayscale, white digit on black) and a ``dataset.json`` summary.

Readers validate strictly and fail with one line naming the file, the row and what was expected, because a
silently skipped row is a silently different experiment.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from expforge.atomic import staged_directory
from expforge.data.png import PNG_SIGNATURE, encode_png
from expforge.errors import ExpforgeError
from expforge.regular_file import Refusals, require_regular_file

MANIFEST_NAME = "labels.csv"
SUMMARY_NAME = "dataset.json"
IMAGES_DIR = "images"
REQUIRED_COLUMNS = ("path", "label", "split")
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 28
#: A 28×28 grayscale PNG is under 1 KB; anything near this is not one of ours (and is not read further).
MAX_IMAGE_BYTES = 1 << 20
_IMAGE_REFUSALS = Refusals(
    missing=f"image listed in {MANIFEST_NAME} does not exist",
    unreadable="cannot read image",
    directory="expected a PNG file, found a directory",
    special="not a regular file (a FIFO, socket or device); expected a PNG file",
)
_LABEL = re.compile(r"[0-9]{1,9}")
_NEGATIVE_LABEL = re.compile(r"-[0-9]{1,9}")


@dataclass(frozen=True)
class ManifestRow:
    """One labelled image; ``path`` is relative to the dataset directory."""

    path: str
    label: int
    split: str
    extra: dict[str, str] = field(default_factory=dict)


def check_split(split: str, *, where: str = "--split") -> str:
    """Return ``split`` if it is one of ``SPLITS``; otherwise raise a one-line error naming ``where``."""
    if split not in SPLITS:
        raise ExpforgeError(f"{where}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def parse_manifest(text: str, *, source: str = MANIFEST_NAME) -> list[ManifestRow]:
    """Parse manifest text; ``source`` names the file in error messages. Rows are numbered as in the file
    (the header is line 1)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ExpforgeError(f"{source} line 1: not valid CSV ({exc})") from None
    if not header:
        raise ExpforgeError(f"{source}: empty file; expected a header with columns {','.join(REQUIRED_COLUMNS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ExpforgeError(
            f"{source}: header is missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}"
        )
    if len(set(header)) != len(header):
        raise ExpforgeError(f"{source}: header has duplicate column names: {','.join(header)}")
    extra_columns = [c for c in header if c not in REQUIRED_COLUMNS]
    rows: list[ManifestRow] = []
    seen_paths: dict[str, str] = {}
    records = iter(reader)
    line_no = 1
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            raise ExpforgeError(f"{source} line {max(reader.line_num, line_no + 1)}: not valid CSV ({exc})") from None
        line_no += 1
        where = f"{source} line {line_no}"
        if None in record:
            raise ExpforgeError(f"{where}: more fields than the {len(header)} header columns")
        if any(record[c] is None for c in header):
            raise ExpforgeError(f"{where}: fewer fields than the {len(header)} header columns")
        path = record["path"].strip()
        if not path:
            raise ExpforgeError(f"{where}: empty path")
        normal = posixpath.normpath(path)
        if path.startswith("/") or "\\" in path or normal == "." or normal.split("/")[0] == "..":
            raise ExpforgeError(f"{where}: path {path!r} must be relative to the dataset directory")
        if ".." in Path(path).parts:
            raise ExpforgeError(f"{where}: path {path!r} must be relative to the dataset directory")
        if normal in seen_paths:
            same = "" if seen_paths[normal] == path else f" (as {seen_paths[normal]!r})"
            raise ExpforgeError(f"{where}: path {path!r} is listed twice{same}")
        seen_paths[normal] = path
        raw_label = record["label"].strip()
        if _NEGATIVE_LABEL.fullmatch(raw_label):
            raise ExpforgeError(f"{where}: label {raw_label} is negative; expected a class index ≥ 0")
        if not _LABEL.fullmatch(raw_label):
            raise ExpforgeError(f"{where}: label {raw_label[:40]!r} is not an integer (ASCII digits 0-9)")
        label = int(raw_label)
        split = record["split"].strip()
        check_split(split, where=where)
        rows.append(ManifestRow(path, label, split, {c: record[c] for c in extra_columns}))
    return rows


def read_manifest(dataset_dir: Path | str) -> list[ManifestRow]:
    """Read and validate ``<dataset_dir>/labels.csv``."""
    manifest = Path(dataset_dir) / MANIFEST_NAME
    if not manifest.is_file():
        raise ExpforgeError(f"{manifest}: not found; expected a dataset directory with {MANIFEST_NAME}")
    try:
        text = manifest.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExpforgeError(f"{manifest}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_manifest(text, source=str(manifest))


def select_rows(
    rows: Sequence[ManifestRow], splits: Iterable[str], *, source: str = MANIFEST_NAME
) -> list[ManifestRow]:
    """Rows whose split is in ``splits`` (validated); an empty selection is an error."""
    wanted = {check_split(s) for s in splits}
    chosen = [r for r in rows if r.split in wanted]
    if not chosen:
        raise ExpforgeError(f"{source}: no rows in split(s) {', '.join(sorted(wanted))}")
    return chosen


def load_image(dataset_dir: Path, row: ManifestRow) -> np.ndarray:
    """Load one 28×28 grayscale PNG as ``uint8``; raise a one-line error for a missing or non-PNG file.

    The file must resolve (links followed) to a regular file inside the dataset directory: a link to an image
    elsewhere is refused, and a FIFO or device is refused before it is opened (opening a FIFO blocks). The
    image size is checked from the header before any pixel is decoded, so a decompression bomb costs nothing;
    only 8-bit grayscale (mode ``L``) is accepted — RGBA or colour images are refused rather than silently
    converted (convert them explicitly, e.g. ``Image.open(p).convert("L")``, knowing what alpha means there).
    """
    path = dataset_dir / row.path
    where = str(path)
    real_root = os.path.realpath(dataset_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ExpforgeError(f"{where}: resolves to {real}, outside the dataset directory; refusing it")
    require_regular_file(real, _IMAGE_REFUSALS, shown=where)
    try:
        with open(real, "rb") as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ExpforgeError(f"{where}: cannot read image ({exc.strerror})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise ExpforgeError(f"{where}: not a PNG file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ExpforgeError(f"{where}: {MAX_IMAGE_BYTES:,}+ bytes is far too large for a 28×28 PNG")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):  # from the header: nothing decoded yet
                raise ExpforgeError(f"{where}: image is {image.size[0]}×{image.size[1]}; expected 28×28")
            if image.mode != "L":
                raise ExpforgeError(
                    f"{where}: image mode {image.mode}; expected 8-bit grayscale (L), convert it explicitly"
                )
            image.load()
            array = np.asarray(image, dtype=np.uint8)
    except ExpforgeError:
        raise
    except Image.DecompressionBombError as exc:  # raised by Image.open from the header alone
        raise ExpforgeError(f"{where}: refused as a decompression bomb ({exc}); expected a 28×28 PNG") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExpforgeError(f"{where}: unreadable PNG ({first[:200]})") from None
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ExpforgeError(f"{where}: image is {array.shape[1]}×{array.shape[0]}; expected 28×28")
    return array


def load_arrays(
    dataset_dir: Path | str, splits: Iterable[str] = ("train",), *, num_classes: int | None = 10
) -> tuple[np.ndarray, np.ndarray, list[ManifestRow]]:
    """Load the images of ``splits`` as ``X`` (N×28×28 ``uint8``) and ``y`` (N ``int64``), with their rows.

    ``num_classes`` bounds the labels (0..num_classes-1); ``None`` accepts any non-negative label.
    """
    dataset_dir = Path(dataset_dir)
    manifest = dataset_dir / MANIFEST_NAME
    rows = select_rows(read_manifest(dataset_dir), splits, source=str(manifest))
    if num_classes is not None:
        for row in rows:
            if row.label >= num_classes:
                raise ExpforgeError(f"{manifest}: row {row.path!r} has label {row.label}; expected 0–{num_classes - 1}")
    images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, row in enumerate(rows):
        images[i] = load_image(dataset_dir, row)
    labels = np.fromiter((r.label for r in rows), dtype=np.int64, count=len(rows))
    return images, labels, rows


def summarize(rows: Sequence[ManifestRow]) -> dict[str, object]:
    """Counts per split and per label: what ``dataset.json`` and KFP artifact metadata report."""
    per_split = Counter(r.split for r in rows)
    per_label = Counter(r.label for r in rows)
    return {
        "rows": len(rows),
        "splits": {s: per_split[s] for s in SPLITS if per_split[s]},
        "labels": {str(k): per_label[k] for k in sorted(per_label)},
    }


def write_manifest(directory: Path, rows: Sequence[ManifestRow], extra_columns: Sequence[str] = ()) -> None:
    """Write ``labels.csv`` for ``rows`` (the caller stages ``directory``)."""
    with open(directory / MANIFEST_NAME, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*REQUIRED_COLUMNS, *extra_columns])
        for row in rows:
            writer.writerow([row.path, row.label, row.split, *(row.extra.get(c, "") for c in extra_columns)])


def write_summary(directory: Path, rows: Sequence[ManifestRow], info: dict[str, object]) -> dict[str, object]:
    """Write ``dataset.json`` (counts plus producer ``info``) and return it."""
    summary = {**info, **summarize(rows)}
    (directory / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def write_dataset(
    output: Path | str,
    images: Iterable[tuple[np.ndarray | bytes, int, str, dict[str, str]]],
    *,
    extra_columns: Sequence[str] = (),
    info: dict[str, object] | None = None,
    overwrite: bool = False,
    inputs: Sequence[Path | str] = (),
) -> dict[str, object]:
    """Write a whole dataset atomically from ``(image, label, split, extra)`` items; return its summary.

    ``image`` is a 28×28 ``uint8`` array or already-encoded PNG bytes. Files are named by position
    (``images/000000.png``) so the same inputs give the same dataset byte for byte. What may already be at
    ``output`` is decided by :func:`expforge.atomic.check_output` (``overwrite``; never one of ``inputs``).
    """
    output = Path(output)
    rows: list[ManifestRow] = []
    with staged_directory(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging:
        (staging / IMAGES_DIR).mkdir()
        for index, (image, label, split, extra) in enumerate(images):
            relative = f"{IMAGES_DIR}/{index:06d}.png"
            if isinstance(image, bytes):
                data = image
            elif image.shape == (IMAGE_SIZE, IMAGE_SIZE) and image.dtype == np.uint8:
                data = encode_png(image)
            else:
                raise ExpforgeError(
                    f"{output}: item {index} is a {image.dtype} array of shape {image.shape}; expected 28×28 uint8"
                )
            (staging / relative).write_bytes(data)
            rows.append(ManifestRow(relative, int(label), check_split(split, where="dataset writer"), extra))
        if not rows:
            raise ExpforgeError(f"{output}: refusing to write an empty dataset")
        write_manifest(staging, rows, extra_columns)
        summary = write_summary(staging, rows, info or {})
    return summary
