"""A labelled grid of sample digits: the quickest check that a generator or loader produced what it claims.

Rows are the digits 0–9 and columns are seeded random samples of that digit, so a wrong label, an inverted
image (black on white) or a blank font shows at a glance. When the manifest has a ``font`` column, each tile
gets a tiny caption with it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from expforge.atomic import staged_file
from expforge.data.manifest import MANIFEST_NAME, ManifestRow, check_split, load_image, read_manifest
from expforge.errors import ExpforgeError

DIGITS = tuple(range(10))
MAX_PER_CLASS = 64
FONT_COLUMN = "font"
_CAPTION_CHARS = 14


def _pick_rows(rows: list[ManifestRow], per_class: int, seed: int) -> dict[int, list[ManifestRow]]:
    """Up to ``per_class`` rows per digit, chosen by a seeded generator from rows in manifest order."""
    by_label: dict[int, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        by_label[row.label].append(row)
    rng = np.random.default_rng(seed)
    picked: dict[int, list[ManifestRow]] = {}
    for digit in DIGITS:
        candidates = by_label.get(digit, [])
        count = min(per_class, len(candidates))
        chosen = sorted(rng.choice(len(candidates), size=count, replace=False)) if count else []
        picked[digit] = [candidates[i] for i in chosen]
    return picked


def visualize_samples(
    dataset: Path | str, output: Path | str, *, per_class: int = 8, seed: int = 0, split: str | None = None
) -> Path:
    """Draw ``per_class`` samples of each digit of ``dataset`` (all splits, or only ``split``) into a PNG.

    Labels outside 0–9 are an error (this grid is for digit datasets). A digit with fewer samples leaves its
    remaining tiles blank. The PNG is written atomically; the return value is its path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if per_class < 1 or per_class > MAX_PER_CLASS:
        raise ExpforgeError(f"--per-class: {per_class} is not between 1 and {MAX_PER_CLASS}")
    if seed < 0:
        raise ExpforgeError(f"--seed: {seed} is negative; expected an integer ≥ 0")
    if split is not None:
        check_split(split, where="--split")
    dataset = Path(dataset)
    output = Path(output)
    if output.is_dir():
        raise ExpforgeError(f"--output: {output} is a directory; expected a PNG file path")
    rows = read_manifest(dataset)
    if split is not None:
        rows = [r for r in rows if r.split == split]
        if not rows:
            raise ExpforgeError(f"{dataset / MANIFEST_NAME}: no rows in split {split}")
    for row in rows:
        if row.label not in DIGITS:
            raise ExpforgeError(f"{dataset / MANIFEST_NAME}: row {row.path!r} has label {row.label}; expected 0–9")
    if not rows:
        raise ExpforgeError(f"{dataset / MANIFEST_NAME}: the dataset has no rows")
    picked = _pick_rows(rows, per_class, seed)
    with_font = any(FONT_COLUMN in r.extra for r in rows)

    tile = 0.62 if with_font else 0.5
    figure = Figure(figsize=(0.6 + per_class * 0.5, 0.9 + len(DIGITS) * tile), dpi=100)
    FigureCanvasAgg(figure)
    axes_grid = figure.subplots(len(DIGITS), per_class, squeeze=False)
    for digit in DIGITS:
        for column in range(per_class):
            axes = axes_grid[digit][column]
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_visible(False)
            if column == 0:
                axes.set_ylabel(str(digit), rotation=0, fontsize=11, labelpad=10, va="center")
            if column >= len(picked[digit]):
                continue
            row = picked[digit][column]
            axes.imshow(load_image(dataset, row), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if with_font:
                axes.set_xlabel(row.extra.get(FONT_COLUMN, "")[:_CAPTION_CHARS], fontsize=4, labelpad=1)
    scope = f"split {split}" if split else "all splits"
    figure.suptitle(f"{dataset.resolve().name}: {per_class} per digit ({scope}, {len(rows)} images)", fontsize=10)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.02, top=1 - 0.5 / figure.get_figheight(), hspace=0.35)
    with staged_file(output) as staging:
        figure.savefig(staging, format="png")
    return output
