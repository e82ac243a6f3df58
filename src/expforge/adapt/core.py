"""Adapt a font-trained digit CNN to real digits whose labels it never sees, and keep what measures best.

The step reads three things: the source checkpoint (kind ``digit-cnn``), the *images* of the target's train
split (their labels are dropped on load and never reach this module's methods) and the target's val split,
whose labels are used for one thing only: choosing among the candidates. The candidates are the unadapted
model, AdaBN, and AdaBN followed by rounds of self-training (each round a candidate), so adaptation can never
make the chosen model worse on val than the source; the test split is not read at all.

The output is an ordinary ``digit-cnn`` checkpoint (same architecture, the chosen weights) with an
``adaptation`` record of every candidate's val accuracy, so ``evaluate``, ``drift-check`` and
``register-model`` take it like any trained model. It is not a resume point: it holds no optimizer state.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from expforge.adapt.methods import SelfTrainSettings, adapt_batch_norm, self_train_round
from expforge.atomic import check_output
from expforge.errors import ExpforgeError

METHODS = ("adabn", "self-train")
MIN_UNLABELED = 2  # batch norm cannot estimate a variance from fewer


@dataclass
class Candidate:
    """One model the selection looked at: its name and its accuracy on the target's val split."""

    name: str
    val_accuracy: float
    details: dict[str, float] = field(default_factory=dict)


@dataclass
class AdaptResult:
    """The chosen candidate, all candidates in the order tried, and the data sizes used."""

    output: Path
    chosen: str
    val_accuracy: float
    source_val_accuracy: float
    candidates: list[Candidate]
    unlabeled_rows: int
    val_rows: int
    architecture: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "chosen": self.chosen,
            "val_accuracy": self.val_accuracy,
            "source_val_accuracy": self.source_val_accuracy,
            "gain": self.val_accuracy - self.source_val_accuracy,
            "candidates": [asdict(c) for c in self.candidates],
            "unlabeled_rows": self.unlabeled_rows,
            "val_rows": self.val_rows,
            "architecture": self.architecture,
        }


def check_methods(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The requested methods in canonical order; an unknown one is a one-line error."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ExpforgeError(f"--method: unknown method(s) {', '.join(unknown)}; expected {' or '.join(METHODS)}")
    if not methods:
        raise ExpforgeError(f"--method: at least one of {', '.join(METHODS)} is required")
    return tuple(m for m in METHODS if m in methods)


def load_source_model(path: Path | str, device: Any) -> tuple[Any, dict[str, Any]]:
    """The source checkpoint's network (eval mode, on ``device``) and its payload; anything that is not a
    ``digit-cnn`` checkpoint whose weights fit its architecture is a one-line error."""
    from expforge.train.checkpoint import load_checkpoint
    from expforge.train.digit_cnn import KIND, CNNSpec, build_model
    from expforge.train.model_format import TORCH, sniff_model_format

    path = Path(path)
    if sniff_model_format(path) != TORCH:
        raise ExpforgeError(f"{path}: a scikit-learn model; adaptation needs a {KIND} checkpoint (train-torch)")
    payload = load_checkpoint(path, kind=KIND)
    spec = CNNSpec.from_architecture(dict(payload.get("architecture") or {}), source=str(path))
    model = build_model(spec)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ExpforgeError(f"{path}: checkpoint weights do not fit its architecture ({exc!s:.200})") from None
    return model.to(device).eval(), payload


def accuracy(model: Any, images: Any, labels: Any) -> float:
    """Share of ``labels`` the model predicts on ``images`` (eval mode, full precision)."""
    from expforge.adapt.methods import pseudo_labels

    predicted, _ = pseudo_labels(model, images)
    return float((predicted == labels).float().mean())


def _unlabeled_images(path: Path | str, split: str) -> np.ndarray:
    """The images of ``split``; the labels ``load_split`` returns are discarded here, on purpose."""
    from expforge.train.torch_data import load_split

    try:
        images, _labels = load_split(path, split)
    except ExpforgeError as exc:
        raise ExpforgeError(f"--unlabeled: no unlabeled real digits to adapt on ({exc})") from None
    del _labels
    if len(images) < MIN_UNLABELED:
        raise ExpforgeError(
            f"--unlabeled: {path} split {split!r} has {len(images)} image(s); adaptation needs at least "
            f"{MIN_UNLABELED} unlabeled real digits"
        )
    return images


def adapt_digit_cnn(
    model_path: Path | str,
    unlabeled: Path | str,
    val: Path | str,
    output: Path | str,
    *,
    methods: list[str] | tuple[str, ...] = METHODS,
    unlabeled_split: str = "train",
    settings: SelfTrainSettings | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> AdaptResult:
    """Adapt ``model_path`` to the images of ``unlabeled``'s ``unlabeled_split``; choose on ``val``'s val split."""
    import torch

    from expforge.train.checkpoint import save_checkpoint
    from expforge.train.device import select_device
    from expforge.train.digit_cnn import KIND
    from expforge.train.torch_data import load_split

    chosen_methods = check_methods(list(methods))
    settings = settings or SelfTrainSettings()
    if settings.rounds < 1 or settings.epochs_per_round < 1:
        raise ExpforgeError("--rounds/--epochs-per-round: self-training needs at least one of each")
    if not 0.0 < settings.threshold < 1.0:
        raise ExpforgeError(f"--threshold: {settings.threshold} is not a confidence in (0, 1)")
    if not 0.0 <= settings.ema < 1.0:
        raise ExpforgeError(f"--ema: {settings.ema} is not a teacher decay in [0, 1)")
    if not settings.diversity >= 0.0:
        raise ExpforgeError(f"--diversity: {settings.diversity} is not a weight ≥ 0")
    output = check_output(output, directory=False, inputs=(model_path,), overwrite=overwrite, flag="--output")
    dev = select_device(device)
    source, payload = load_source_model(model_path, dev)
    target = torch.from_numpy(np.ascontiguousarray(_unlabeled_images(unlabeled, unlabeled_split))).to(dev)
    val_images, val_labels = load_split(val, "val")
    if len(val_labels) == 0:
        raise ExpforgeError(f"--val: {val} has no val split rows; the selection needs labelled real val digits")
    val_x = torch.from_numpy(np.ascontiguousarray(val_images)).to(dev)
    val_y = torch.from_numpy(np.ascontiguousarray(val_labels, dtype=np.int64)).to(dev)
    torch.manual_seed(settings.seed)

    candidates = [Candidate("none", accuracy(source, val_x, val_y))]
    states = {"none": copy.deepcopy(source.state_dict())}
    adapted = adapt_batch_norm(copy.deepcopy(source), target)
    candidates.append(Candidate("adabn", accuracy(adapted, val_x, val_y)))
    states["adabn"] = copy.deepcopy(adapted.state_dict())
    if "self-train" in chosen_methods:
        student = None
        for round_index in range(settings.rounds):
            figures, student = self_train_round(adapted, target, settings, round_index, student)
            adapt_batch_norm(adapted, target)
            name = f"self-train/{round_index + 1}"
            candidates.append(Candidate(name, accuracy(adapted, val_x, val_y), figures))
            states[name] = copy.deepcopy(adapted.state_dict())
    if "adabn" not in chosen_methods:  # self-training alone still starts from AdaBN, but AdaBN is not offered
        candidates = [c for c in candidates if c.name != "adabn"]
    best = max(candidates, key=lambda c: c.val_accuracy)  # first of equals: the simpler model wins ties

    architecture = dict(payload["architecture"])
    params = {
        **dict(payload.get("params") or {}),
        "adapted_from": str(model_path),
        "adaptation": {
            "chosen": best.name,
            "methods": list(chosen_methods),
            "settings": asdict(settings),
            "unlabeled": str(unlabeled),
            "unlabeled_split": unlabeled_split,
            "unlabeled_rows": len(target),
            "selected_on": f"{val} (val split)",
            "candidates": [asdict(c) for c in candidates],
        },
    }
    save_checkpoint(
        output,
        kind=KIND,
        architecture=architecture,
        model={k: v.detach().cpu() for k, v in states[best.name].items()},
        params=params,
        history=list(payload.get("history") or []),
        epoch=int(payload.get("epoch") or 0),
    )
    return AdaptResult(
        output,
        best.name,
        best.val_accuracy,
        candidates[0].val_accuracy,
        candidates,
        len(target),
        len(val_labels),
        architecture,
    )
