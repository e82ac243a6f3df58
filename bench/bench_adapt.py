"""Fonts only vs fonts + adaptation on unlabeled real digits: real-test accuracy of the digit CNN.

The bundled 5,000 real MNIST digits are split once, stratified with a fixed seed (recorded in the JSON):
``--test-fraction`` of them are the test digits (never read before the final evaluation), ``--val-fraction``
the val digits (labels used only to choose the adaptation candidate), the rest are the unlabeled train digits
(their labels are not read). The CNN trains on font digits only, validated on real val; ``adapt`` then adapts
it to the unlabeled train images.

    python bench/bench_adapt.py --output bench/results/adapt.json
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fonts", type=int, default=6000, help="Font digits to train on.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="Self-training rounds.")
    parser.add_argument("--val-fraction", type=float, default=0.3)
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/adapt.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="expforge-bench-adapt-") as work:
        root = Path(work)
        split = bootstrap_mnist(
            5000, root / "real", source="bundled", seed=args.seed,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        )  # fmt: skip
        generate_font_digits(args.fonts, root / "fonts", seed=args.seed)
        config = TorchTrainConfig.from_dict({"width": args.width, "seed": args.seed, "augment": True})
        train_started = time.perf_counter()
        train_torch([root / "fonts"], root / "real", root / "fonts.pt", config=config, epochs=args.epochs, device="cpu")
        train_seconds = time.perf_counter() - train_started
        adapt_started = time.perf_counter()
        result = adapt_digit_cnn(
            root / "fonts.pt", root / "real", root / "real", root / "adapted.pt",
            settings=SelfTrainSettings(rounds=args.rounds, seed=args.seed), device="cpu",
        )  # fmt: skip
        adapt_seconds = time.perf_counter() - adapt_started
        fonts_only, fonts_matrix = _test_accuracy(root / "fonts.pt", root / "real")
        adapted, adapted_matrix = _test_accuracy(root / "adapted.pt", root / "real")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    report = {
        "benchmark": "adapt",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "python": platform.python_version(), "device": "cpu"},
        "split": {
            "source": "bundled (5,000 real MNIST digits)",
            "seed": args.seed,
            "val_fraction": args.val_fraction,
            "test_fraction": args.test_fraction,
            "counts": split.get("splits", split.get("counts")),
        },  # fmt: skip
        "training": {"fonts": args.fonts, "epochs": args.epochs, "config": config.to_dict()},
        "adaptation": result.to_dict() | {"output": None},
        "test_accuracy": {"fonts_only": fonts_only, "fonts_adapted": adapted, "gain": adapted - fonts_only},
        "confusion": {"fonts_only": fonts_matrix, "fonts_adapted": adapted_matrix},
        "seconds": {"train": train_seconds, "adapt": adapt_seconds, "total": time.perf_counter() - started},
        "targets": {"fonts_adapted_ge_0.97": adapted >= 0.97},
    }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
