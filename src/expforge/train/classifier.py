"""One way to use any saved digit classifier: ``load_classifier(path)`` for scikit-learn bundles and CNN checkpoints.

Evaluation, drift checks and the registry should not care which trainer produced a model. The file itself says
what it is: a PyTorch checkpoint is a ``torch.save`` zip (loaded with ``weights_only=True``), a scikit-learn
bundle a skops zip (loaded with an explicit list of trusted types); the archive's table of contents decides
before anything is deserialised, and a pickle is never loaded at all. Torch is imported only for checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from expforge.data.manifest import IMAGE_SIZE
from expforge.errors import ExpforgeError

PREDICT_BATCH = 2048


def _as_images(images: np.ndarray) -> np.ndarray:
    """N×28×28 (or N×784) 0–255 pixels → N×28×28 ``uint8``; anything else is a one-line error."""
    array = np.asarray(images)
    if array.ndim == 2 and array.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        array = array.reshape(len(array), IMAGE_SIZE, IMAGE_SIZE)
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ExpforgeError(f"images: got shape {array.shape}; expected N×28×28 or N×784 pixels")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


class Classifier:
    """A loaded digit classifier. ``framework`` is ``scikit-learn`` or ``pytorch``; ``params`` are the training
    parameters saved with the model."""

    framework: str = ""
    path: Path
    params: dict[str, Any]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted digits (N ``int64``) for N×28×28 0–255 images."""
        raise NotImplementedError

    def predict_proba(self, images: np.ndarray) -> np.ndarray | None:
        """N×10 class probabilities (columns: digits 0–9), or ``None`` where the model has none."""
        raise NotImplementedError

    def embed(self, images: np.ndarray) -> np.ndarray | None:
        """Penultimate features (N×D ``float32``) for drift checks, or ``None`` for models without them."""
        raise NotImplementedError


class SklearnClassifier(Classifier):
    """A bundle written by :func:`expforge.train.sklearn_trainer.train_sklearn`."""

    framework = "scikit-learn"

    def __init__(self, path: Path, bundle: dict[str, Any]) -> None:
        self.path = path
        self.bundle = bundle
        self.params = dict(bundle.get("params") or {})

    def predict(self, images: np.ndarray) -> np.ndarray:
        from expforge.train.sklearn_trainer import predict

        return predict(self.bundle, _as_images(images))

    def predict_proba(self, images: np.ndarray) -> np.ndarray | None:
        from expforge.train.sklearn_trainer import predict_proba

        return predict_proba(self.bundle, _as_images(images))

    def embed(self, images: np.ndarray) -> np.ndarray | None:
        return None


class TorchClassifier(Classifier):
    """A ``digit-cnn`` checkpoint, in eval mode, on ``device``; predictions run in batches without autocast
    (full precision: an evaluation should not depend on the GPU's half-precision format)."""

    framework = "pytorch"

    def __init__(self, path: Path, payload: dict[str, Any], device: str = "auto") -> None:
        from expforge.train.device import select_device
        from expforge.train.digit_cnn import CNNSpec, build_model

        self.path = path
        self.params = dict(payload.get("params") or {})
        self.architecture = dict(payload["architecture"])
        self.device = select_device(device)
        spec = CNNSpec.from_architecture(self.architecture, source=str(path))
        model = build_model(spec)
        try:
            model.load_state_dict(payload["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            raise ExpforgeError(f"{path}: checkpoint weights do not fit its architecture ({exc!s:.200})") from None
        self.model = model.to(self.device).eval()

    def _run(self, images: np.ndarray, what: str) -> np.ndarray:
        import torch

        from expforge.train.digit_cnn import to_input

        pixels = torch.from_numpy(_as_images(images))
        outputs = []
        with torch.inference_mode():
            for lo in range(0, len(pixels), PREDICT_BATCH):
                batch = to_input(pixels[lo : lo + PREDICT_BATCH].to(self.device, non_blocking=True))
                if what == "embed":
                    out = self.model.embed(batch)
                else:
                    logits = self.model(batch)
                    out = torch.softmax(logits, dim=1) if what == "proba" else logits.argmax(dim=1)
                outputs.append(out.cpu())
        if not outputs:
            width = {"embed": self.architecture["hidden"], "proba": 10, "predict": None}[what]
            return np.empty((0,) if width is None else (0, width), dtype=np.int64 if width is None else np.float32)
        return torch.cat(outputs).numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, "predict").astype(np.int64)

    def predict_proba(self, images: np.ndarray) -> np.ndarray | None:
        return self._run(images, "proba")

    def embed(self, images: np.ndarray) -> np.ndarray | None:
        return self._run(images, "embed")


def load_classifier(path: Path | str, *, device: str = "auto") -> Classifier:
    """Load a model saved by ``train-sklearn`` (skops) or ``train-torch`` (a ``weights_only`` checkpoint).

    The format is decided from the file's bytes before anything is deserialised
    (:func:`~expforge.train.model_format.sniff_model_format`): a pickle or an unknown file is refused unread.
    ``device`` applies to CNN checkpoints only (``auto``: CUDA when present).
    """
    from expforge.train.model_format import SKOPS, sniff_model_format

    path = Path(path)
    if sniff_model_format(path) == SKOPS:
        from expforge.train.sklearn_trainer import load_model

        return SklearnClassifier(path, load_model(path))
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ExpforgeError(
            f"{path}: a PyTorch checkpoint; loading it needs torch (install the expforge[torch] extra)"
        ) from None
    from expforge.train.checkpoint import load_checkpoint
    from expforge.train.digit_cnn import KIND

    return TorchClassifier(path, load_checkpoint(path, kind=KIND), device=device)
