"""Multi-epoch SGD classifiers (scikit-learn ``partial_fit``) with train and validation loss per epoch.

Linear models on raw pixels are the baseline every synthetic-data experiment is measured against: they train
in seconds, and their epoch curves show whether synthetic digits help before real ones are added.

Preprocessing is a fixed scale to [0, 1], not a standardisation fitted on the training data: measured on the
bundled digits (2,000 digits, 3 seeds, held-out 3,400), averaged SGD on [0, 1] pixels reached 0.881 accuracy,
standardised plain SGD 0.872 and plain SGD on [0, 1] 0.848; and a fixed scale cannot carry statistics of
synthetic digits over to real ones. The model is averaged SGD (Polyak averaging), which removes most of the
epoch-to-epoch jitter; with a curriculum the average covers the last phase only, so fine-tuning on real digits
is not diluted by the weights of the synthetic phase. The default ``alpha=1e-3`` (L2 strength) keeps the
weights small enough for honest losses: with 1e-4 the validation log loss rose while accuracy stalled.

Scikit-learn and skops are imported inside functions: the module is importable by light code paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output, staged_file
from expforge.data.manifest import IMAGE_SIZE, check_split, load_arrays
from expforge.data.split import stratified_sample
from expforge.errors import ExpforgeError
from expforge.train.curriculum import check_curriculum, curriculum_phases, train_fractions_for

MODEL_FORMAT = "expforge.sklearn-model"
MODEL_FORMAT_VERSION = 1
CLASSES = tuple(range(10))
LOSSES = {"logreg": "log_loss", "svm": "hinge", "perceptron": "perceptron"}
PIXEL_SCALE = 1.0 / 255.0
#: Upper bounds of the numeric flags: past them a run would only burn the machine (scikit-learn's seeds are
#: 32-bit; a thousand epochs of SGD on raw pixels is far past where the loss stops moving).
MAX_EPOCHS = 1000
MAX_SEED = 2**32 - 1
MAX_BATCH_SIZE = 1_000_000


@dataclass
class EpochMetrics:
    """One epoch: ``phase`` is ``mixed`` or, in a curriculum, ``<stage index>:<dataset name>``."""

    epoch: int
    phase: str
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float

    def final_metrics(self) -> dict[str, float]:
        """The losses and accuracies a run reports as its final metrics when this is its last epoch (both
        trainers; the torch trainer adds its own keys after these)."""
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
        }


@dataclass
class TrainResult:
    """Where the model was saved, its epoch history, the last epoch's metrics and the run's parameters."""

    model_path: Path
    history: list[EpochMetrics]
    final: dict[str, float]
    params: dict[str, object]


@dataclass
class _Stage:
    """The training rows of one dataset after ``train_fractions``."""

    path: Path
    fraction: float
    features: np.ndarray
    labels: np.ndarray
    rows: int


def preprocess(images: np.ndarray, scale: float = PIXEL_SCALE) -> np.ndarray:
    """N×28×28 (or N×784) raw 0–255 pixels → N×784 ``float32`` features in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
        images = images.reshape(len(images), -1)
    if images.ndim != 2 or images.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
        raise ExpforgeError(f"images: got shape {images.shape}; expected N×28×28 or N×784 pixels")
    return images.astype(np.float32) * np.float32(scale)


def _check_options(
    train: Sequence[Path | str],
    model: str,
    epochs: int,
    seed: int,
    curriculum: str,
    batch_size: int,
    alpha: float,
    train_fractions: Sequence[float] | None,
) -> list[float]:
    """Validate every flag before any data is read; return the fraction per training dataset."""
    if model not in LOSSES:
        raise ExpforgeError(f"--model: unknown model {model!r}; expected one of {', '.join(LOSSES)}")
    check_curriculum(curriculum, flag="--schedule")
    if not train:
        raise ExpforgeError("--train: at least one training dataset is required")
    if epochs < 1:
        raise ExpforgeError(f"--epochs: {epochs} is not a positive number of epochs")
    if epochs > MAX_EPOCHS:
        raise ExpforgeError(f"--epochs: {epochs} is more than {MAX_EPOCHS} epochs; expected 1–{MAX_EPOCHS}")
    if seed < 0:
        raise ExpforgeError(f"--seed: {seed} is negative; expected an integer ≥ 0")
    if seed > MAX_SEED:
        raise ExpforgeError(f"--seed: {seed} is too large; expected an integer in 0–{MAX_SEED}")
    if batch_size < 1:
        raise ExpforgeError(f"--batch-size: {batch_size} is not a positive batch size")
    if batch_size > MAX_BATCH_SIZE:
        raise ExpforgeError(f"--batch-size: {batch_size} is too large; expected 1–{MAX_BATCH_SIZE}")
    if not 0 < alpha < float("inf"):
        raise ExpforgeError(f"--alpha: {alpha} is not a positive regularisation strength")
    return train_fractions_for(train, train_fractions)


def _load_stage(path: Path, fraction: float, split: str, rng: np.random.Generator) -> _Stage:
    images, labels, _ = load_arrays(path, [split])
    if fraction < 1.0:
        keep = stratified_sample(labels, max(1, round(len(labels) * fraction)), rng)
        images, labels = images[keep], labels[keep]
    return _Stage(path, fraction, preprocess(images), labels, rows=len(labels))


def _new_estimator(model: str, alpha: float, seed: int, average: bool | int) -> Any:
    from sklearn.linear_model import SGDClassifier

    # shuffle=False: epochs are shuffled here, by a seeded generator, so runs repeat exactly.
    return SGDClassifier(loss=LOSSES[model], alpha=alpha, random_state=seed, shuffle=False, average=average)


def _measure(estimator: Any, model: str, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy): log loss for logreg; multiclass hinge loss of the decision function otherwise."""
    from sklearn.metrics import accuracy_score, hinge_loss, log_loss

    labels_list = list(CLASSES)
    if model == "logreg":
        loss = log_loss(labels, estimator.predict_proba(features), labels=labels_list)
    else:
        loss = hinge_loss(labels, estimator.decision_function(features), labels=labels_list)
    return float(loss), float(accuracy_score(labels, estimator.predict(features)))


def _run_epoch(
    estimator: Any, features: np.ndarray, labels: np.ndarray, *, batch_size: int, rng: np.random.Generator
) -> None:
    """One pass in a fresh seeded order, ``partial_fit`` batch by batch."""
    classes = np.array(CLASSES)
    order = rng.permutation(len(labels))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        estimator.partial_fit(features[batch], labels[batch], classes=classes)


def train_sklearn(
    train: Sequence[Path | str],
    val: Path | str,
    model_out: Path | str,
    *,
    model: str = "logreg",
    epochs: int = 10,
    seed: int = 0,
    train_fractions: Sequence[float] | None = None,
    curriculum: str = "mixed",
    batch_size: int = 256,
    alpha: float = 1e-3,
    train_split: str = "train",
    val_split: str = "val",
    average: bool = True,
    overwrite: bool = False,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Train an SGD linear classifier on ``train`` (in order), validating on ``val``'s ``val_split`` each epoch.

    ``curriculum="mixed"`` reshuffles the union of all training rows every epoch. ``"sequential"`` is a
    curriculum: ``epochs`` epochs on the first dataset, then ``epochs`` on the next, and so on (synthetic
    first, then real); every epoch records which phase it belongs to, and its train metrics are measured on
    that phase's rows. ``train_fractions`` keeps a seeded, stratified fraction of each dataset's train rows.
    The model is written atomically (a failed run leaves no file at ``model_out``); an existing file there, or
    a ``model_out`` inside a training dataset, is refused before any data is read unless ``overwrite``.
    ``on_epoch`` is called with every epoch's record (the hook for per-epoch logging: TensorBoard).
    """
    fractions = _check_options(train, model, epochs, seed, curriculum, batch_size, alpha, train_fractions)
    check_split(train_split, where="--train-split")
    check_split(val_split, where="--val-split")
    model_out = check_output(model_out, directory=False, inputs=[*train, val], overwrite=overwrite, flag="--model-out")
    stages = [
        _load_stage(Path(path), fraction, train_split, np.random.default_rng([seed, index]))
        for index, (path, fraction) in enumerate(zip(train, fractions, strict=True))
    ]
    val_images, val_labels, _ = load_arrays(val, [val_split])
    val_features = preprocess(val_images)

    phases = curriculum_phases([(s.path, s.features, s.labels) for s in stages], curriculum)
    # Averaging starts with the last phase: earlier phases initialise the weights, the last one is averaged.
    samples_before_last = epochs * sum(len(labels) for _, _, labels in phases[:-1])
    average_from: bool | int = (samples_before_last + 1 if samples_before_last else True) if average else False
    estimator = _new_estimator(model, alpha, seed, average_from)

    rng = np.random.default_rng(seed)
    history: list[EpochMetrics] = []
    for phase, features, labels in phases:
        for _ in range(epochs):
            _run_epoch(estimator, features, labels, batch_size=batch_size, rng=rng)
            train_loss, train_accuracy = _measure(estimator, model, features, labels)
            val_loss, val_accuracy = _measure(estimator, model, val_features, val_labels)
            history.append(EpochMetrics(len(history) + 1, phase, train_loss, val_loss, train_accuracy, val_accuracy))
            if on_epoch is not None:
                on_epoch(history[-1])

    final = history[-1].final_metrics()
    params: dict[str, object] = {
        "model": model,
        "loss": LOSSES[model],
        "epochs": epochs,
        "epochs_total": len(history),
        "seed": seed,
        "curriculum": curriculum,
        "batch_size": batch_size,
        "alpha": alpha,
        "average": average,
        "train": [str(s.path) for s in stages],
        "train_fractions": fractions,
        "train_rows": [s.rows for s in stages],
        "train_split": train_split,
        "val": str(val),
        "val_split": val_split,
        "val_rows": len(val_labels),
    }
    save_model(model_out, estimator, params=params, history=history, overwrite=overwrite)
    return TrainResult(model_out, history, final, params)


# --- the saved model ------------------------------------------------------------------------------------------

#: Every type a saved model may contain, by its qualified name as the skops schema records it. Loading audits
#: the archive's ``schema.json`` (plain JSON) against this list and refuses any other type *before* an object is
#: built — stricter than skops's own default, which trusts every scikit-learn class. The loss objects are the
#: compiled losses of SGD (their module moved between scikit-learn releases, so both homes are listed).
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.bool",
    "builtins.dict",
    "builtins.float",
    "builtins.int",
    "builtins.list",
    "builtins.NoneType",
    "builtins.str",
    "builtins.tuple",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.float32",
    "numpy.float64",
    "numpy.int64",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.Log",
    "sklearn._loss._loss.CyHalfBinomialLoss",
)


def _schema_types(path: Path) -> set[str]:
    """Qualified names of every type in a skops archive's schema, read as JSON (nothing is deserialised)."""
    import json
    import zipfile

    from expforge.train.model_format import SKOPS_SCHEMA

    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read(SKOPS_SCHEMA))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RecursionError) as exc:
        raise ExpforgeError(
            f"{path}: not an expforge sklearn model (unreadable schema: {type(exc).__name__})"
        ) from None
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, name = node.get("__module__"), node.get("__class__")
            if module is not None or name is not None:
                found.add(f"{module}.{name}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def save_model(
    path: Path | str,
    estimator: Any,
    *,
    params: dict[str, object],
    history: list[EpochMetrics],
    overwrite: bool = True,
) -> Path:
    """Write the model bundle with ``skops.io`` through a temporary file, so ``path`` is whole or untouched."""
    import sklearn
    import skops.io

    bundle = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "estimator": estimator,
        "classes": list(CLASSES),
        "preprocessing": {"input_shape": [IMAGE_SIZE, IMAGE_SIZE], "scale": PIXEL_SCALE},
        "params": params,
        "history": [dataclasses.asdict(epoch) for epoch in history],
        "sklearn_version": sklearn.__version__,
    }
    path = Path(path)
    with staged_file(path, overwrite=overwrite, flag="--model-out") as staging:
        skops.io.dump(bundle, staging)
    return path


def load_model(path: Path | str) -> dict[str, Any]:
    """Load and validate a bundle written by :func:`train_sklearn`.

    The file must be a skops archive whose every type is listed in :data:`TRUSTED_TYPES`, checked from the
    archive's schema before any object is built; skops then loads it with those types trusted explicitly. A
    pickle/joblib file (the format of older expforge models) is refused unread, with the command that converts
    it deliberately.
    """
    from expforge.train.model_format import SKOPS, sniff_model_format

    path = Path(path)
    if sniff_model_format(path) != SKOPS:
        raise ExpforgeError(f"{path}: a PyTorch checkpoint, not a scikit-learn model")
    try:
        import skops.io
    except ImportError:
        raise ExpforgeError(
            f"{path}: loading a scikit-learn model needs skops (install the expforge[sklearn] extra)"
        ) from None
    refused = sorted(_schema_types(path) - set(TRUSTED_TYPES))
    if refused:
        shown = ", ".join(refused[:5]) + (", …" if len(refused) > 5 else "")
        raise ExpforgeError(f"{path}: refused unread: the model holds untrusted type(s) {shown}")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        bundle = skops.io.load(path, trusted=[name for name in untrusted if name in TRUSTED_TYPES])
    except Exception as exc:  # the audit passed, yet the content does not rebuild: report, never a traceback
        raise ExpforgeError(f"{path}: not an expforge sklearn model (unreadable: {type(exc).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise ExpforgeError(f"{path}: not an expforge sklearn model (no {MODEL_FORMAT!r} marker)")
    version = bundle.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ExpforgeError(
            f"{path}: model format version {version!r}; this expforge reads version {MODEL_FORMAT_VERSION}"
        )
    estimator = bundle.get("estimator")
    preprocessing = bundle.get("preprocessing")
    if not hasattr(estimator, "predict") or not hasattr(estimator, "classes_"):
        raise ExpforgeError(f"{path}: model bundle holds no fitted estimator")
    if not isinstance(preprocessing, dict) or not isinstance(preprocessing.get("scale"), float):
        raise ExpforgeError(f"{path}: model bundle has no valid preprocessing spec")
    return bundle


def convert_pickled_model(
    source: Path | str, output: Path | str, *, trust_pickle: bool, overwrite: bool = False
) -> Path:
    """Rewrite an old joblib model bundle as a skops one — only with ``trust_pickle``, because reading the old
    file unpickles it, which runs any code it holds. Do it once, for files whose origin you know."""
    from expforge.atomic import check_output
    from expforge.train.model_format import check_regular_file

    source = check_regular_file(source)
    if not trust_pickle:
        raise ExpforgeError(
            f"{source}: converting unpickles the file, which runs any code in it; pass --trust-pickle only for "
            "a file whose origin you trust"
        )
    check_output(output, directory=False, inputs=[source], overwrite=overwrite, flag="--output")
    import joblib

    try:
        old = joblib.load(source)
    except Exception as exc:  # a truncated or foreign pickle fails in many ways
        raise ExpforgeError(f"{source}: not a readable joblib model ({type(exc).__name__})") from None
    if not isinstance(old, dict) or old.get("format") != MODEL_FORMAT or not hasattr(old.get("estimator"), "predict"):
        raise ExpforgeError(f"{source}: not an expforge sklearn model bundle (no {MODEL_FORMAT!r} marker)")
    history = [EpochMetrics(**epoch) for epoch in old.get("history") or []]
    return save_model(
        output, old["estimator"], params=dict(old.get("params") or {}), history=history, overwrite=overwrite
    )


def predict(bundle: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """Predicted labels for raw 0–255 images (N×28×28 or N×784)."""
    features = preprocess(images, bundle["preprocessing"]["scale"])
    return np.asarray(bundle["estimator"].predict(features), dtype=np.int64)


def predict_proba(bundle: dict[str, Any], images: np.ndarray) -> np.ndarray | None:
    """Class probabilities (N×10, columns in ``bundle["classes"]`` order), or ``None`` for models without them
    (hinge and perceptron losses give scores, not probabilities)."""
    estimator = bundle["estimator"]
    if getattr(estimator, "loss", None) != "log_loss":
        return None
    features = preprocess(images, bundle["preprocessing"]["scale"])
    return np.asarray(estimator.predict_proba(features))
