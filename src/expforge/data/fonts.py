"""Synthetic MNIST-format digits rendered from the fonts installed on the machine, with seeded augmentations.

``generate_font_digits`` is the step behind ``expforge generate-font-digits`` and the ``render-font-digits``
component. It finds every face that draws real digits (``font_discovery``), plans which face and digit each
image shows (balanced over digits, faces and faces per digit), renders the plan in chunks on all cores
(``font_render``) and writes the shared dataset layout atomically: ``images/NNNNNN.png``, ``labels.csv`` with
the extra columns ``font``, ``style`` and ``font_file``, and ``dataset.json``.

Determinism: the plan depends only on the faces, ``count`` and ``seed``; each chunk of the plan is seeded from
``(seed, chunk index)`` and writes its images by position. Which process renders a chunk, and when, changes
nothing, so the same inputs give the same bytes for any number of workers.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import numbers
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expforge.atomic import check_output, staged_directory
from expforge.data.augment import SEED_CHUNK, SEED_PLAN, SEED_SPLIT, Augmentation, draw_params
from expforge.data.font_discovery import DIGITS, FontDiscovery, FontFace, discover_fonts
from expforge.data.font_render import build_sources, render_batch, stroke_levels
from expforge.data.manifest import (
    IMAGES_DIR,
    SUMMARY_NAME,
    ManifestRow,
    check_split,
    write_manifest,
    write_summary,
)
from expforge.data.png import encode_pngs
from expforge.data.split import stratified_split
from expforge.errors import ExpforgeError

log = logging.getLogger(__name__)
# A Noto install alone skips ~200 script fonts; the log names a few, dataset.json names every one.
SKIPPED_NAMES_IN_LOG = 8

EXTRA_COLUMNS = ("font", "style", "font_file")
#: Most samples per chunk: big enough to amortise numpy's per-call cost, small enough to spread the work.
CHUNK_SIZE = 256
MAX_COUNT = 10_000_000
#: ``--workers`` at most this many processes per core: rendering is CPU-bound, so more only thrash.
MAX_WORKERS_PER_CORE = 4


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: samples of a single face, so its glyphs are prepared once per chunk."""

    index: int
    glyphs: tuple[np.ndarray, ...]
    digits: np.ndarray
    positions: np.ndarray
    images_dir: str
    seed: int
    augmentation: Augmentation


def render_chunk(task: ChunkTask) -> int:
    """Render and write one chunk's images (runs in a worker process); returns how many were written."""
    rng = np.random.default_rng(np.random.SeedSequence([task.seed, SEED_CHUNK, task.index]))
    levels = stroke_levels(task.augmentation)
    used = sorted(set(task.digits.tolist()))
    sources, centres, extents = build_sources([task.glyphs[d] for d in used], levels)
    local = np.searchsorted(np.array(used), task.digits)
    params = draw_params(rng, task.digits.size, task.augmentation)
    images = render_batch(
        sources, centres, extents, local, levels, params, rng, seed=task.seed, augmentation=task.augmentation
    )
    _write_files(task.images_dir, [f"{position:06d}.png" for position in task.positions.tolist()], encode_pngs(images))
    return len(images)


def _write_files(directory: str, names: list[str], contents: list[bytes]) -> None:
    """Create each new file with exactly three system calls (open, write, close).

    Creating small files is the largest single cost of a dataset on ext4 (more than rendering a digit), so the
    names are opened relative to one directory descriptor where the platform allows it: the kernel then walks
    one component per file instead of the whole staging path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    relative = os.open in os.supports_dir_fd
    folder = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if relative else None
    try:
        for name, data in zip(names, contents, strict=True):
            path = name if relative else os.path.join(directory, name)
            descriptor = os.open(path, flags, 0o644, dir_fd=folder)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)
    finally:
        if folder is not None:
            os.close(folder)


# --- planning --------------------------------------------------------------------------------------------------


def plan_samples(count: int, faces: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit and face of each output position, balanced over digits, over faces and over faces per digit.

    Sample ``k`` shows digit ``k mod 10`` in face ``(k + k // L) mod faces`` with ``L = lcm(10, faces)``: each
    block of ``L`` samples is a round-robin over both digits and faces, and shifting the faces by one per block
    makes successive blocks pair each digit with the faces it has not met yet. Any count therefore gives digit
    totals, face totals and per-digit face totals that differ by at most one. A seeded permutation then shuffles
    the positions so that files are not ordered by label.
    """
    k = np.arange(count, dtype=np.int64)
    block = math.lcm(len(DIGITS), faces)
    digits = k % len(DIGITS)
    face_index = (k + k // block) % faces
    order = np.random.default_rng(np.random.SeedSequence([seed, SEED_PLAN])).permutation(count)
    return digits[order], face_index[order]


def assign_splits(labels: np.ndarray, split: str, val_fraction: float, seed: int) -> list[str]:
    """``split`` for every row, except a seeded, per-label (stratified) ``val_fraction`` that gets ``val``."""
    splits = np.full(labels.size, split, dtype=object)
    if val_fraction > 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, SEED_SPLIT]))
        splits[stratified_split(labels, {"val": val_fraction}, rng)["val"]] = "val"
    return splits.tolist()


def make_chunks(
    digits: np.ndarray,
    face_index: np.ndarray,
    faces: Sequence[FontFace],
    images_dir: Path,
    seed: int,
    augmentation: Augmentation,
) -> list[ChunkTask]:
    """Group positions by face and cut each group into chunks of at most ``CHUNK_SIZE`` (worker-independent)."""
    tasks: list[ChunkTask] = []
    order = np.lexsort((np.arange(digits.size), face_index))
    boundaries = np.flatnonzero(np.diff(face_index[order])) + 1
    for group in np.split(order, boundaries):
        if group.size == 0:
            continue
        face = faces[int(face_index[group[0]])]
        for start in range(0, group.size, CHUNK_SIZE):
            positions = group[start : start + CHUNK_SIZE]
            tasks.append(
                ChunkTask(len(tasks), face.glyphs, digits[positions], positions, str(images_dir), seed, augmentation)
            )
    return tasks


# --- processes -------------------------------------------------------------------------------------------------

MapFn = Callable[[Callable[..., object], Iterable[object]], Iterable[object]]


@contextmanager
def _mappers(workers: int) -> Iterator[tuple[MapFn, MapFn]]:
    """An ordered map (for discovery) and an unordered one (for rendering), in-process for one worker."""
    if workers == 1:
        yield map, map
        return
    with multiprocessing.get_context().Pool(workers) as pool:

        def ordered(fn: Callable[..., object], items: Iterable[object]) -> Iterable[object]:
            items = list(items)
            return pool.map(fn, items, chunksize=max(1, len(items) // (workers * 8)))

        def unordered(fn: Callable[..., object], items: Iterable[object]) -> Iterable[object]:
            return pool.imap_unordered(fn, items, chunksize=1)

        yield ordered, unordered


def default_workers() -> int:
    """All the cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# --- the step --------------------------------------------------------------------------------------------------


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_inputs(count: int, seed: int, workers: int | None, split: str, val_fraction: float) -> int:
    """Validate the options before anything is read or written; return the number of processes to use."""
    if not _is_integer(count) or count <= 0:
        raise ExpforgeError(f"--count: {count!r} is not a positive number of images")
    if count > MAX_COUNT:
        raise ExpforgeError(f"--count: {count} is more than the {MAX_COUNT:,} images one dataset may hold")
    if not _is_integer(seed) or seed < 0:
        raise ExpforgeError(f"--seed: {seed!r}; expected an integer ≥ 0")
    if workers is not None and (not _is_integer(workers) or workers < 1):
        raise ExpforgeError(f"--workers: {workers!r}; expected an integer ≥ 1 (or nothing for all cores)")
    most = MAX_WORKERS_PER_CORE * default_workers()
    if workers is not None and workers > most:
        raise ExpforgeError(
            f"--workers: {workers} is more than {most} ({MAX_WORKERS_PER_CORE}× the {default_workers()} core(s) here); "
            "more processes than that only slow the machine down"
        )
    check_split(split)
    if not 0.0 <= val_fraction < 1.0:
        raise ExpforgeError(f"--val-fraction: {val_fraction!r}; expected a fraction in [0, 1)")
    if val_fraction > 0 and split == "val":
        raise ExpforgeError("--val-fraction: the rows are already in split val; use --split train or test with it")
    return int(workers) if workers is not None else default_workers()


def _summary_info(
    discovery: FontDiscovery, count: int, seed: int, split: str, val_fraction: float, augmentation: Augmentation
) -> dict[str, object]:
    families = sorted({face.family for face in discovery.faces})
    return {
        "source": "fonts",
        "format": "MNIST: white digit on black, fitted into 20×20 (aspect kept, anti-aliased), centre of mass at "
        "(14, 14) in 28×28, uint8 PNG",
        "count": count,
        "seed": seed,
        "split": split,
        "val_fraction": val_fraction,
        "fonts_searched": discovery.searched,
        "fonts_used": families,
        "font_families": len(families),
        "font_faces": len(discovery.faces),
        "skipped_fonts": [s.as_dict() for s in discovery.skipped],
        "duplicate_fonts": [s.as_dict() for s in discovery.duplicates],
        "augmentation": augmentation.as_dict(),
    }


def generate_font_digits(
    count: int,
    output: Path | str,
    *,
    fonts: Sequence[Path | str] | None = None,
    seed: int = 0,
    workers: int | None = None,
    split: str = "train",
    val_fraction: float = 0.0,
    augmentation: Augmentation | None = None,
    overwrite: bool = False,
) -> dict[str, object]:
    """Render ``count`` augmented 28×28 digits from every usable face under ``fonts`` into the dataset ``output``.

    ``fonts`` names directories (searched recursively) or .ttf/.otf/.ttc files; ``None`` searches the system's
    font directories. ``workers`` processes render (default: all cores); the output does not depend on it.
    ``augmentation`` sets the ranges (default ``Augmentation()``; ``NO_AUGMENTATION`` gives the plain MNIST
    normalisation of each glyph). Returns the summary written to ``dataset.json``, plus ``elapsed_seconds``,
    ``images_per_second`` and ``workers``, which are kept out of the file so that it, like the images and
    ``labels.csv``, is the same byte for byte for the same inputs. An existing non-empty ``output`` is refused
    unless ``overwrite``; one that is or holds a font directory always.
    """
    started = time.perf_counter()
    processes = _check_inputs(count, seed, workers, split, val_fraction)
    inputs = list(fonts or [])
    check_output(output, directory=True, inputs=inputs, overwrite=overwrite, flag="--output")
    count, seed = int(count), int(seed)
    augmentation = (augmentation or Augmentation()).validate()
    output = Path(output)
    with (
        staged_directory(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging,
        _mappers(processes) as (ordered_map, unordered_map),
    ):
        discovery = discover_fonts(fonts, map_fn=ordered_map)
        if not discovery.faces:
            where = ", ".join(discovery.searched)
            raise ExpforgeError(
                f"{where}: no usable fonts ({len(discovery.skipped)} font file(s) without real glyphs for 0–9)"
            )
        if discovery.skipped:
            names = [Path(s.font_file).name for s in discovery.skipped]
            shown = ", ".join(names[:SKIPPED_NAMES_IN_LOG]) + (", …" if len(names) > SKIPPED_NAMES_IN_LOG else "")
            log.warning(
                "skipped %d font file(s) without real glyphs for 0–9: %s (each named with its reason under "
                "skipped_fonts in %s)",
                len(names),
                shown,
                SUMMARY_NAME,
            )
        log.info(
            "%d faces of %d families usable (%.2f s)",
            len(discovery.faces),
            len({face.family for face in discovery.faces}),
            time.perf_counter() - started,
        )
        digits, face_index = plan_samples(count, len(discovery.faces), seed)
        images_dir = staging / IMAGES_DIR
        images_dir.mkdir()
        tasks = make_chunks(digits, face_index, discovery.faces, images_dir, seed, augmentation)
        # The pool starts on the chunks at once; the manifest is written meanwhile, then the results are awaited.
        results = unordered_map(render_chunk, tasks)
        splits = assign_splits(digits, split, val_fraction, seed)
        rows = []
        for position in range(count):
            face = discovery.faces[int(face_index[position])]
            extra = {"font": face.family, "style": face.style, "font_file": face.font_file}
            rows.append(ManifestRow(f"{IMAGES_DIR}/{position:06d}.png", int(digits[position]), splits[position], extra))
        write_manifest(staging, rows, EXTRA_COLUMNS)
        info = _summary_info(discovery, count, seed, split, val_fraction, augmentation)
        summary = write_summary(staging, rows, info)
        written = sum(int(n) for n in results)  # type: ignore[call-overload]
        if written != count:
            raise RuntimeError(f"rendered {written} images; planned {count}")
        log.info("rendered %d images in %d chunks (%.2f s)", written, len(tasks), time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    return {
        **summary,
        "workers": processes,
        "elapsed_seconds": round(elapsed, 3),
        "images_per_second": round(count / elapsed, 1),
    }
