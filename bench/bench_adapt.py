"""Fonts only vs fonts + adaptation on unlabeled real digits: real-test accuracy of the digit CNN.

The bundled 5,000 real MNIST digits are split once, stratified with a fixed seed (recorded in the JSON):
``--test-fraction`` of them are the test digits (never read before the final evaluation), ``--val-fraction``
the val digits (labels used only to choose the adaptation candidate and the source's best epoch), the rest are
the unlabeled train digits (their labels are not read). The test split is drawn first, so it is the same 2,500
digits whatever ``--val-fraction`` is. The CNN trains on font digits only, validated on real val; ``adapt``
then adapts it to the unlabeled train images. ``--fine-tune-epochs`` adds the labelled reference figure:
the font model fine-tuned on the real train split's labels (the supervised upper bound, not adaptation).

The rendered fonts, the real split and the trained source model are cached under ``--cache`` (keyed by
everything that makes them), so adaptation settings can be compared on one source model without retraining.

    python bench/bench_adapt.py --output bench/results/adapt.json

(the defaults are the run of bench/reference/adapt.json: 20,000 font digits, width 16, one epoch, then the
library's self-training defaults).
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
    path = cache / f"real-s{args.seed}-v{args.val_fraction}-t{args.test_fraction}"
    if not (path / "dataset.json").exists():
        bootstrap_mnist(
            5000, path, source="bundled", seed=args.seed,
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
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("build/bench/adapt"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/adapt.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    real, real_summary = _real(cache, args)
    fonts = _fonts(cache, args.fonts, args.seed)
    config = TorchTrainConfig.from_dict(
        {
            "width": args.width, "depth": args.depth, "seed": args.seed, "augment": True,
            "label_smoothing": args.label_smoothing, "cpu_bf16": args.cpu_bf16,
        }
    )  # fmt: skip
    source, train_seconds = _source(cache, fonts, real, config, args.epochs)
    settings = SelfTrainSettings(
        rounds=args.rounds, epochs_per_round=args.epochs_per_round, threshold=args.threshold, lr=args.lr,
        seed=args.seed, ema=args.ema, diversity=args.diversity, strong=args.strong,
    )  # fmt: skip
    adapted_path = cache / f"adapted-{os.getpid()}.pt"
    adapt_started = time.perf_counter()
    result = adapt_digit_cnn(source, real, real, adapted_path, settings=settings, device="cpu", overwrite=True)
    adapt_seconds = time.perf_counter() - adapt_started
    fonts_only, fonts_matrix = _test_accuracy(source, real)
    adapted, adapted_matrix = _test_accuracy(adapted_path, real)
    adapted_path.unlink()
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
            "seed": args.seed,
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
        "adaptation": result.to_dict() | {"output": None},
        "test_accuracy": {"fonts_only": fonts_only, "fonts_adapted": adapted, "gain": adapted - fonts_only},
        "confusion": {"fonts_only": fonts_matrix, "fonts_adapted": adapted_matrix},
        "seconds": {"train": train_seconds, "adapt": adapt_seconds},
        "targets": {"fonts_adapted_ge_0.97": adapted >= 0.97},
    }
    if args.fine_tune_epochs:
        report["fine_tuned"] = _fine_tune(source, real, args.fine_tune_epochs, args.seed)
    report["seconds"]["total"] = time.perf_counter() - started
    write_report(report, args.output)


def _fine_tune(source: Path, real: Path, epochs: int, seed: int) -> dict[str, Any]:
    """The font model fine-tuned on the real train split's *labels* (AdamW, cosine, the trainer's affine warp):
    the labelled reference figure, not adaptation; the best epoch on real val is kept."""
    import copy

    import torch
    import torch.nn.functional as F

    from expforge.adapt.core import accuracy, load_source_model
    from expforge.train.augment_torch import draw_params, random_affine
    from expforge.train.digit_cnn import to_input

    started = time.perf_counter()
    torch.manual_seed(seed)
    model, _ = load_source_model(source, torch.device("cpu"))
    images, labels = (torch.from_numpy(np.ascontiguousarray(a)) for a in load_split(real, "train"))
    val_x, val_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in load_split(real, "val"))
    test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in load_split(real, "test"))
    labels, val_y, test_y = labels.long(), val_y.long(), test_y.long()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    steps = epochs * -(-len(images) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps)
    best, best_state = -1.0, copy.deepcopy(model.state_dict())
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for lo in range(0, len(order), 64):
            rows = order[lo : lo + 64]
            if len(rows) < 2:
                continue
            view = random_affine(to_input(images[rows]), draw_params(len(rows), generator))
            loss = F.cross_entropy(model(view), labels[rows], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        val = accuracy(model, val_x, val_y)
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test = accuracy(model, test_x, test_y)
    return {
        "epochs": epochs, "val_accuracy": best, "test_accuracy": test,
        "seconds": time.perf_counter() - started, "target_ge_0.995": test >= 0.995,
    }  # fmt: skip


if __name__ == "__main__":
    main()
