"""Fonts only vs fonts + adaptation on unlabeled real digits: real-test accuracy of the digit CNN.

The bundled 5,000 real MNIST digits are split once, stratified with a fixed seed (``--split-seed``, recorded in
the JSON; ``--seed`` varies only training and adaptation, so seeds are compared on the same digits):
``--test-fraction`` of them are the test digits (never read before the final evaluation), ``--val-fraction``
the val digits (labels used only to choose the adaptation candidate and the source's best epoch), the rest are
the unlabeled train digits (their labels are not read). The test split is drawn first, so it is the same 2,500
digits whatever ``--val-fraction`` is. The CNN trains on font digits only, validated on real val; ``adapt``
then adapts it to the unlabeled train images. ``--fine-tune-epochs`` adds the labelled reference figure:
the font model fine-tuned on the real train split's labels (the supervised upper bound, not adaptation);
``--fine-tune-members K`` also scores the mean of K such networks, each from its own font model.

The rendered fonts, the real split and the trained source model are cached under ``--cache`` (keyed by
everything that makes them), so adaptation settings can be compared on one source model without retraining.

    python bench/bench_adapt.py --output bench/results/adapt.json

(the defaults are the run of bench/reference/adapt.json: 20,000 font digits, width 16, one epoch, then the
library's self-training defaults). One point of the labelled reference's learning curve (adapt.json
``labels_learning_curve``: how the figure moves with the number of real labels, at equal optimiser steps):

    python bench/bench_adapt.py --no-adapt --fine-tune-labels 500 --fine-tune-epochs 240
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, write_report  # noqa: E402

from expforge.adapt.core import adapt_digit_cnn  # noqa: E402
from expforge.adapt.fine_tune import FineTuneSettings, fine_tune_digit_cnn  # noqa: E402
from expforge.adapt.methods import SelfTrainSettings  # noqa: E402
from expforge.data.fonts import generate_font_digits  # noqa: E402
from expforge.data.mnist import bootstrap_mnist  # noqa: E402
from expforge.train.classifier import load_classifier  # noqa: E402
from expforge.train.torch_data import load_split  # noqa: E402
from expforge.train.torch_trainer import TorchTrainConfig, train_torch  # noqa: E402


def _test_accuracy(model: Path, real: Path) -> tuple[float, list[list[int]]]:
    images, labels = load_split(real, "test")
    predicted = load_classifier(model, device="cpu").predict(images)
    matrix = np.zeros((10, 10), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return float((predicted == labels).mean()), matrix.tolist()


def _key(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _real(cache: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    path = cache / f"real-s{args.split_seed}-v{args.val_fraction}-t{args.test_fraction}"
    if not (path / "dataset.json").exists():
        bootstrap_mnist(
            5000, path, source="bundled", seed=args.split_seed,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, overwrite=True,
        )  # fmt: skip
    summary = json.loads((path / "dataset.json").read_text())
    return path, summary


def _fonts(cache: Path, count: int, seed: int) -> Path:
    path = cache / f"fonts-{count}-s{seed}"
    if not (path / "dataset.json").exists():
        generate_font_digits(count, path, seed=seed, overwrite=True)
    return path


def _source(cache: Path, fonts: Path, real: Path, config: TorchTrainConfig, epochs: int) -> tuple[Path, float]:
    path = cache / f"source-{_key({'fonts': fonts.name, 'real': real.name, 'epochs': epochs, **config.to_dict()})}.pt"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    train_torch([fonts], real, path, config=config, epochs=epochs, device="cpu")
    return path, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fonts", type=int, default=20000, help="Font digits to train on.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128, help="Units of the CNN's hidden layer.")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=True)
    defaults = SelfTrainSettings()
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="Self-training rounds.")
    parser.add_argument("--epochs-per-round", type=int, default=defaults.epochs_per_round)
    parser.add_argument("--threshold", type=float, default=defaults.threshold)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--ema", type=float, default=defaults.ema)
    parser.add_argument("--diversity", type=float, default=defaults.diversity)
    parser.add_argument("--strong", action=argparse.BooleanOptionalAction, default=defaults.strong)
    parser.add_argument("--fine-tune-epochs", type=int, default=0, help="Also fine-tune on real train labels.")
    parser.add_argument(
        "--adapt", action=argparse.BooleanOptionalAction, default=True, help="Adapt to the unlabeled train digits."
    )
    parser.add_argument(
        "--fine-tune-from", choices=("source", "adapted"), default="source", help="Which model the fine-tune starts at."
    )
    parser.add_argument("--fine-tune-lr", type=float, default=2e-3, help="Peak LR of the labelled fine-tune.")
    parser.add_argument("--fine-tune-strong", type=float, default=0.5, help="Share of each batch in strong views.")
    parser.add_argument("--fine-tune-ema", type=float, default=0.999, help="Weight averaging per step (0: off).")
    parser.add_argument(
        "--fine-tune-members",
        type=int,
        default=1,
        help="Also score an ensemble of this many fine-tuned networks (member i: its own font model, seed + i).",
    )
    parser.add_argument(
        "--fine-tune-labels",
        type=int,
        default=0,
        help="Fine-tune on this many of the labelled real train digits (stratified, nested; 0: all of them).",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0, help="Training and adaptation seed.")
    parser.add_argument(
        "--split-seed", type=int, default=0, help="Seed of the real split and the font digits (the data stays fixed)."
    )
    parser.add_argument("--cache", type=Path, default=Path("build/bench/adapt"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/adapt.json"))
    args = parser.parse_args()
    if args.fine_tune_from == "adapted" and not args.adapt:
        parser.error("--fine-tune-from adapted: needs the adaptation (drop --no-adapt)")
    if args.fine_tune_members < 1:
        parser.error(f"--fine-tune-members: {args.fine_tune_members} is not a number of networks (1 or more)")
    if args.fine_tune_members > 1 and args.fine_tune_from == "adapted":
        parser.error("--fine-tune-members: needs --fine-tune-from source (each member starts from its own font model)")
    if args.fine_tune_labels < 0:
        parser.error(f"--fine-tune-labels: {args.fine_tune_labels} is not a count of digits (0 means all)")
    started = time.perf_counter()
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    real, real_summary = _real(cache, args)
    fonts = _fonts(cache, args.fonts, args.split_seed)
    config = TorchTrainConfig.from_dict(
        {
            "width": args.width, "depth": args.depth, "hidden": args.hidden, "seed": args.seed, "augment": True,
            "label_smoothing": args.label_smoothing, "cpu_bf16": args.cpu_bf16,
        }
    )  # fmt: skip
    source, train_seconds = _source(cache, fonts, real, config, args.epochs)
    settings = SelfTrainSettings(
        rounds=args.rounds, epochs_per_round=args.epochs_per_round, threshold=args.threshold, lr=args.lr,
        seed=args.seed, ema=args.ema, diversity=args.diversity, strong=args.strong,
    )  # fmt: skip
    fonts_only, fonts_matrix = _test_accuracy(source, real)
    adapted_path = cache / f"adapted-{os.getpid()}.pt"
    adaptation: dict[str, Any] | None = None
    if args.adapt:
        adapt_started = time.perf_counter()
        result = adapt_digit_cnn(source, real, real, adapted_path, settings=settings, device="cpu", overwrite=True)
        adapted, adapted_matrix = _test_accuracy(adapted_path, real)
        adaptation = {
            "result": result.to_dict() | {"output": None},
            "test_accuracy": adapted,
            "confusion": adapted_matrix,
            "seconds": time.perf_counter() - adapt_started,
        }
    report: dict[str, Any] = {
        "benchmark": "adapt",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "device": "cpu",
            "load_average": list(os.getloadavg()),
        },  # fmt: skip
        "split": {
            "source": "bundled (5,000 real MNIST digits)",
            "seed": args.split_seed,
            "val_fraction": args.val_fraction,
            "test_fraction": args.test_fraction,
            "counts": real_summary.get("splits", real_summary.get("counts")),
        },
        "training": {
            "fonts": args.fonts,
            "epochs": args.epochs,
            "config": config.to_dict(),
            "cached": not train_seconds,
        },
        "test_accuracy": {"fonts_only": fonts_only},
        "confusion": {"fonts_only": fonts_matrix},
        "seconds": {"train": train_seconds},
        "targets": {},
    }
    if adaptation is not None:
        adapted = adaptation["test_accuracy"]
        report["adaptation"] = adaptation["result"]
        report["test_accuracy"] |= {"fonts_adapted": adapted, "gain": adapted - fonts_only}
        report["confusion"]["fonts_adapted"] = adaptation["confusion"]
        report["seconds"]["adapt"] = adaptation["seconds"]
        report["targets"]["fonts_adapted_ge_0.97"] = adapted >= 0.97
    if args.fine_tune_epochs:
        start = adapted_path if args.fine_tune_from == "adapted" else source
        tuned, probabilities = _fine_tune(start, real, args)
        report["fine_tuned"] = {"from": args.fine_tune_from} | tuned
        if not args.fine_tune_labels:  # the target is for every label the split has, not a learning-curve point
            report["targets"]["fonts_plus_real_labels_ge_0.995"] = report["fine_tuned"]["test_accuracy"] >= 0.995
        if args.fine_tune_members > 1:
            report["fine_tuned_ensemble"] = _ensemble(cache, fonts, real, config, args, tuned, probabilities)
            if not args.fine_tune_labels:
                report["targets"]["fonts_plus_real_labels_ensemble_ge_0.995"] = (
                    report["fine_tuned_ensemble"]["test_accuracy"] >= 0.995
                )
    adapted_path.unlink(missing_ok=True)
    report["seconds"]["total"] = time.perf_counter() - started
    write_report(report, args.output)


def _ensemble(
    cache: Path,
    fonts: Path,
    real: Path,
    config: TorchTrainConfig,
    args: argparse.Namespace,
    first: dict[str, Any],
    first_probabilities: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The labelled reference as an ensemble: ``--fine-tune-members`` networks, member ``i`` trained on the fonts
    and fine-tuned with seed ``--seed + i`` (member 0 is the run's own ``fine_tuned``), scored on the mean of their
    softmax outputs. Every member is listed with its own figures, so the ensemble's gain over one network shows.
    """
    members = [{"seed": args.seed, "val_accuracy": first["val_accuracy"], "test_accuracy": first["test_accuracy"]}]
    summed = {split: values.copy() for split, values in first_probabilities.items()}
    for offset in range(1, args.fine_tune_members):
        seed = args.seed + offset
        member_config = TorchTrainConfig.from_dict(config.to_dict() | {"seed": seed})
        source, _ = _source(cache, fonts, real, member_config, args.epochs)
        tuned, probabilities = _fine_tune(source, real, argparse.Namespace(**(vars(args) | {"seed": seed})))
        members.append({"seed": seed, "val_accuracy": tuned["val_accuracy"], "test_accuracy": tuned["test_accuracy"]})
        for split, values in probabilities.items():
            summed[split] += values
    wrong = {split: summed[split].argmax(axis=1) != load_split(real, split)[1] for split in ("val", "test")}
    scores = {split: 1.0 - float(misses.mean()) for split, misses in wrong.items()}
    errors = int(wrong["test"].sum())
    return {
        "members": members, "combination": "mean of the members' softmax outputs (each at its best val epoch)",
        "val_accuracy": scores["val"], "test_accuracy": scores["test"], "test_errors": errors,
    }  # fmt: skip


def _fine_tune(source: Path, real: Path, settings: argparse.Namespace) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The font model fine-tuned on the real train split's *labels* by the library's ``fine_tune_digit_cnn`` (the
    pipeline's fine-tune step): the labelled reference figure, not adaptation. Scored here on the test digits,
    which the library never reads. Returns the figures and the scored model's softmax outputs on the val and test
    digits (for an ensemble). ``--fine-tune-labels`` keeps only that many of the labelled digits (the library's
    ``labelled_subset``, drawn with the split seed): a learning curve keeps the optimiser steps equal by scaling the
    epochs (epochs × labels constant), since the weight average's horizon is in steps.
    """
    import torch
    import torch.nn.functional as F

    from expforge.adapt.core import load_source_model
    from expforge.train.digit_cnn import to_input

    tuned_path = settings.cache / f"fine-tuned-{os.getpid()}.pt"
    options = FineTuneSettings(
        epochs=settings.fine_tune_epochs, lr=settings.fine_tune_lr, strong_share=settings.fine_tune_strong,
        ema=settings.fine_tune_ema, labels=settings.fine_tune_labels, subset_seed=settings.split_seed,
        seed=settings.seed,
    )  # fmt: skip
    try:
        result = fine_tune_digit_cnn(source, real, tuned_path, settings=options, device="cpu", overwrite=True)
        model, _ = load_source_model(tuned_path, torch.device("cpu"))
    finally:
        tuned_path.unlink(missing_ok=True)
    splits = {split: load_split(real, split) for split in ("val", "test")}
    with torch.no_grad():
        probabilities = {
            split: F.softmax(model(to_input(torch.from_numpy(np.ascontiguousarray(images)))), dim=1).numpy()
            for split, (images, _labels) in splits.items()
        }
    test = float((probabilities["test"].argmax(axis=1) == splits["test"][1]).mean())
    return {
        "labels": result.labelled_rows, "epochs": options.epochs, "lr": options.lr,
        "strong_share": options.strong_share, "ema": options.ema, "best_epoch": result.best_epoch,
        "val_accuracy": result.val_accuracy, "val_accuracy_by_epoch": result.val_accuracy_by_epoch,
        "test_accuracy": test, "seconds": result.seconds, "target_ge_0.995": test >= 0.995,
    }, probabilities  # fmt: skip


if __name__ == "__main__":
    main()
