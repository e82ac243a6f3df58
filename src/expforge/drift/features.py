"""Per-image features that drift checks compare: what a digit *looks like*, summarised in a few numbers.

Raw pixels are 784 correlated columns; a drift test on each would flag everything and explain nothing. These
features name the ways synthetic font digits and handwritten digits actually differ:

* ``hist_0`` … ``hist_7`` — the intensity histogram: the fraction of the image's pixels in each of eight equal
  intensity bins (``[0, 32)``, ``[32, 64)``, …). Anti-aliased glyphs, noise and blur move mass between bins.
* ink statistics over the *ink* (pixels ≥ ``INK_LEVEL``): ``ink_fraction``, ``mean_intensity`` (whole image),
  ``ink_intensity`` (mean of ink pixels), ``bbox_width``/``bbox_height`` (pixels), ``centroid_row``/
  ``centroid_col`` (intensity-weighted centre of mass), ``stroke_width`` (2·area / boundary pixels: the width of
  a band whose both edges are boundary), ``components`` (8-connected ink blobs: broken strokes) and ``holes``
  (enclosed background regions: loops of 0, 6, 8, 9).
* with a trained model: ``embed_pc1`` … — its penultimate-layer embeddings (or, for models without one, its
  class probabilities) projected onto principal components fitted on the *reference* set, so both sides are
  measured in the same coordinates; and ``predicted_class``, a categorical column, as Vertex Model Monitoring
  watches a model's prediction distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from expforge.errors import ExpforgeError

HISTOGRAM_BINS = 8
INK_LEVEL = 128
EMBEDDING_COMPONENTS = 4
PREDICTED_CLASS = "predicted_class"

HISTOGRAM_COLUMNS = tuple(f"hist_{k}" for k in range(HISTOGRAM_BINS))
INK_COLUMNS = (
    "ink_fraction",
    "mean_intensity",
    "ink_intensity",
    "bbox_width",
    "bbox_height",
    "centroid_row",
    "centroid_col",
    "stroke_width",
    "components",
    "holes",
)
IMAGE_COLUMNS = HISTOGRAM_COLUMNS + INK_COLUMNS


def _check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ExpforgeError(f"images: a {images.dtype} array of shape {images.shape}; expected N×28×28 uint8")
    return images


def _count_regions(mask: np.ndarray, structure: np.ndarray, *, enclosed_only: bool = False) -> int:
    """Connected regions of ``mask``; with ``enclosed_only``, only those that do not touch the image border."""
    from scipy import ndimage

    labelled, count = ndimage.label(mask, structure=structure)
    if not enclosed_only or count == 0:
        return int(count)
    border = np.concatenate([labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]])
    return int(count - np.count_nonzero(np.unique(border)))


def image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """The histogram and ink features of N×28×28 ``uint8`` images, one float64 array per column (see module doc).

    Blank images get zeros for the ink geometry and the image centre as centroid, rather than NaNs that would
    make every test undefined.
    """
    images = _check_images(images)
    n = len(images)
    pixels = images.astype(np.float64)
    bins = images // (256 // HISTOGRAM_BINS)
    columns: dict[str, np.ndarray] = {name: (bins == k).mean(axis=(1, 2)) for k, name in enumerate(HISTOGRAM_COLUMNS)}
    ink = images >= INK_LEVEL
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    columns["ink_fraction"] = area / ink[0].size if n else area
    columns["mean_intensity"] = pixels.mean(axis=(1, 2)) / 255.0
    ink_sum = np.where(ink, pixels, 0.0).sum(axis=(1, 2))
    columns["ink_intensity"] = np.divide(ink_sum, area * 255.0, out=np.zeros(n), where=area > 0)

    # an axis reduction of a 3-D array is an array; asarray says so to numpy's stubs (and copies nothing)
    rows_any, cols_any = np.asarray(ink.any(axis=2)), np.asarray(ink.any(axis=1))
    columns["bbox_height"] = _extent(rows_any)
    columns["bbox_width"] = _extent(cols_any)

    total = pixels.sum(axis=(1, 2))
    index = np.arange(28, dtype=np.float64)
    row_mass, col_mass = pixels.sum(axis=2) @ index, pixels.sum(axis=1) @ index
    centre = np.full(n, 13.5)
    columns["centroid_row"] = np.divide(row_mass, total, out=centre.copy(), where=total > 0)
    columns["centroid_col"] = np.divide(col_mass, total, out=centre.copy(), where=total > 0)

    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    boundary = (ink & ~interior).sum(axis=(1, 2)).astype(np.float64)
    columns["stroke_width"] = np.divide(2.0 * area, boundary, out=np.zeros(n), where=boundary > 0)

    eight = np.ones((3, 3), dtype=bool)
    four = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    columns["components"] = np.array([_count_regions(m, eight) for m in ink], dtype=np.float64)
    columns["holes"] = np.array([_count_regions(~m, four, enclosed_only=True) for m in ink], dtype=np.float64)
    return {name: columns[name] for name in IMAGE_COLUMNS}


def _extent(any_mask: np.ndarray) -> np.ndarray:
    """Length of the span from the first to the last True along axis 1 (0 where none)."""
    size = any_mask.shape[1]
    first = np.argmax(any_mask, axis=1)
    last = size - 1 - np.argmax(any_mask[:, ::-1], axis=1)
    return np.where(any_mask.any(axis=1), last - first + 1, 0).astype(np.float64)


# --- model-derived features ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOutputs:
    """What a trained model says about a set of images: a vector per image and the predicted digit."""

    vectors: np.ndarray  # N×D: penultimate embeddings, or class probabilities when the model has none
    predicted: np.ndarray  # N int64
    source: str  # "embedding" | "probabilities"


def model_outputs(model: Path | str, images: np.ndarray) -> ModelOutputs:
    """Run the model saved at ``model`` (a PyTorch checkpoint or a scikit-learn bundle) on ``images``.

    Embeddings come from the model's penultimate layer when it has one (CNNs); otherwise its class
    probabilities stand in, which still move when the inputs drift. A model with neither (hinge-loss linear
    models) cannot be compared this way: that is a clear error, not a silent omission.
    """
    images = _check_images(images)
    model = Path(model)
    if not model.is_file():
        raise ExpforgeError(f"{model}: model file not found")
    from expforge.train.classifier import load_classifier

    classifier = load_classifier(model)
    vectors, source = classifier.embed(images), "embedding"
    if vectors is None:
        vectors, source = classifier.predict_proba(images), "probabilities"
    if vectors is None:
        raise ExpforgeError(
            f"{model}: the model gives neither embeddings nor class probabilities; "
            "drift on model outputs needs a CNN or a log-loss model"
        )
    predicted = classifier.predict(images)
    return ModelOutputs(np.asarray(vectors, dtype=np.float64), np.asarray(predicted, dtype=np.int64), source)


def embedding_columns(reference: np.ndarray, current: np.ndarray, *, seed: int = 0) -> tuple[dict, dict]:
    """Project both sides' model vectors onto principal components fitted on ``reference`` only.

    Fitting on the reference alone keeps the axes fixed by what is known-good, so a shift in the current set
    shows up as a shift along them. At most ``EMBEDDING_COMPONENTS`` components, fewer for tiny inputs.
    """
    from sklearn.decomposition import PCA

    n_components = max(1, min(EMBEDDING_COMPONENTS, reference.shape[1], len(reference) - 1))
    pca = PCA(n_components=n_components, random_state=seed).fit(reference)
    ref, cur = pca.transform(reference), pca.transform(current)
    names = [f"embed_pc{i + 1}" for i in range(n_components)]
    return {name: ref[:, i] for i, name in enumerate(names)}, {name: cur[:, i] for i, name in enumerate(names)}
