"""`make bench-text`: figures for the text steps, written as JSON (default ``bench/results/text.json``).

* prepare-corpus throughput (MB of source text per second, end to end: reading the plays, tokenizer training
  for BPE, encoding, checksums, the atomic write) for the char and the BPE tokenizer on the Shakespeare corpus;
* train-lm throughput (tokens/s) on 2 CPU cores (the whole benchmark is pinned to two cores where it has more);
* validation bits per character after a fixed CPU training budget (default 300 s of training time on 2 cores;
  char-level Shakespeare; the model's shape and parameter count are recorded) — smaller is better. The score is
  ``evaluate-lm`` over the *whole* validation split, not the trainer's sampled windows;
* on a machine with a CUDA GPU: train-lm tokens/s for the same model (mixed precision), and at a larger batch.

    python bench/bench_text.py                 # the real figures (≈ 6 minutes on 2 cores)
    python bench/bench_text.py --quick         # a smoke test: small text, tiny budget
    python bench/bench_text.py --budget-s 120 --set lr=6e-3 --set layers=6   # try another shape or schedule

The budget is wall-clock by default, so on a loaded machine a run gets fewer steps than on a quiet one; with
``--budget-clock cpu`` it counts the process's CPU seconds per thread instead, an estimate (on the low side:
threads spinning while they wait count too) of what the budget buys on a quiet machine. The official figure is
the default, wall clock, on a quiet machine; the JSON records the clock and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, write_report  # noqa: E402

from expforge.errors import ExpforgeError
from expforge.text.lm_eval import evaluate_lm
from expforge.text.lm_trainer import BUDGET_CLOCKS, LmHistoryRow, train_lm
from expforge.text.prepare import prepare_corpus
from expforge.train.device import available_cpus

# The benchmark model (813,696 parameters): big enough to learn real structure, small enough to see about an
# epoch of Shakespeare in 5 minutes on 2 cores with bfloat16 autocast. Batch 16 at peak LR 6e-3 was the best of
# six batch/LR settings at an equal CPU budget (bench/reference/text.json, "ranking"): more, smaller steps and
# a higher LR beat batch 32 at 3e-3 (the old setting) by ~0.3 bits/char at that budget.
BENCH_MODEL = {"layers": 4, "heads": 4, "width": 128, "context": 128}
BENCH_TRAINING = {"batch_size": 16, "lr": 6e-3, "warmup": 100, "weight_decay": 0.1, "dropout": 0.0}
QUICK_MODEL = {"layers": 1, "heads": 2, "width": 32, "context": 32}
QUICK_TRAINING = {**BENCH_TRAINING, "warmup": 10}
BPE_VOCAB = 2048


def pin_cpus(count: int) -> list[int]:
    """Restrict this process to ``count`` of its CPUs (the figure is "on N cores", whatever the machine)."""
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > count:
            os.sched_setaffinity(0, allowed[:count])
        return sorted(os.sched_getaffinity(0))
    return list(range(min(count, os.cpu_count() or 1)))


def prepare_throughput(work: Path, *, max_chars: int | None, seed: int) -> dict[str, Any]:
    """Prepare Shakespeare with each tokenizer; MB/s of source text, plus the corpus each produced."""
    figures: dict[str, Any] = {}
    for tokenizer in ("char", "bpe"):
        output = work / f"shakespeare-{tokenizer}"
        extra = {"vocab_size": BPE_VOCAB} if tokenizer == "bpe" else {}
        summary = prepare_corpus(["shakespeare"], output, tokenizer=tokenizer, seed=seed, max_chars=max_chars, **extra)
        throughput = summary["throughput"]
        counts = summary["counts"]
        figures[tokenizer] = {
            "mb_per_second": throughput["mb_per_s"],
            "seconds": throughput["seconds"],
            "megabytes": throughput["megabytes"],
            "tokenize_mb_per_second": throughput["tokenize_mb_per_s"],
            "characters": counts["characters"],
            "vocab_size": summary["vocab_size"],
            "train_tokens": counts["train_tokens"],
            "val_tokens": counts["val_tokens"],
            "corpus_id": summary["corpus_id"],
        }
    return figures


def _steady_tokens_per_second(history: list[LmHistoryRow]) -> float:
    """Median interval throughput, leaving out the first interval (allocator and kernel warm-up)."""
    rows = [r.tokens_per_second for r in history if r.tokens_per_second > 0]
    rows = rows[1:] if len(rows) > 1 else rows
    return statistics.median(rows) if rows else 0.0


def cpu_budget_run(
    corpus_dir: Path,
    work: Path,
    *,
    budget_s: float,
    model: dict[str, int],
    training: dict[str, Any],
    eval_interval: int,
    seed: int,
    budget_clock: str = "wall",
) -> dict[str, Any]:
    """Train on CPU until ``budget_s`` of training time is spent; score on the whole val split."""
    result = train_lm(
        corpus_dir,
        work / "cpu-model.pt",
        **model,
        **training,
        steps=10_000_000,  # the budget ends the run; the cosine schedule follows the budget fraction
        eval_interval=eval_interval,
        eval_batches=4,
        device="cpu",
        seed=seed,
        time_budget_s=budget_s,
        budget_clock=budget_clock,
    )
    scored = evaluate_lm(result.model_path, corpus_dir, max_windows=None, device="cpu")
    return {
        "budget_s": budget_s,
        "budget_clock": budget_clock,
        "val_bits_per_char": round(scored["bits_per_char"], 4),
        "val_loss": round(scored["val_loss"], 4),
        "val_tokens_scored": scored["tokens"],
        "steps": result.final["steps"],
        "train_seconds": round(result.final["train_seconds"], 2),
        "tokens_seen": result.final["steps"] * training["batch_size"] * model["context"],
        "tokens_per_second": round(result.final["tokens_per_second"], 1),
        "tokens_per_second_steady": round(_steady_tokens_per_second(result.history), 1),
        "history": [
            {"step": r.step, "val_bpc": round(r.val_bpc, 4), "train_loss": round(r.train_loss, 4), "s": int(r.seconds)}
            for r in result.history
        ],
        "parameters": result.final["parameters"],
        "device": result.device,
    }


def parse_overrides(pairs: list[str], allowed: dict[str, Any]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs → typed values (the type of the benchmark's own value for KEY)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in allowed:
            raise ExpforgeError(f"--set: {pair!r} is not KEY=VALUE with KEY one of {', '.join(sorted(allowed))}")
        try:
            values[key] = type(allowed[key])(float(text)) if isinstance(allowed[key], int) else float(text)
        except ValueError:
            raise ExpforgeError(f"--set: {pair!r}: {text!r} is not a number") from None
    return values


def gpu_throughput(
    corpus_dir: Path, work: Path, *, model: dict[str, int], training: dict[str, Any], steps: int, seed: int
) -> dict[str, Any]:
    """Tokens/s of the same model on CUDA with mixed precision (at the bench batch and at 8× that batch)."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU visible to torch"}
    figures: dict[str, Any] = {}
    for label, batch in (("same_batch", training["batch_size"]), ("batch_x8", 8 * training["batch_size"])):
        result = train_lm(
            corpus_dir,
            work / f"gpu-{label}.pt",
            **model,
            **{**training, "batch_size": batch, "warmup": min(training["warmup"], steps // 10)},
            steps=steps,
            eval_interval=max(1, steps // 5),
            eval_batches=2,
            device="cuda",
            seed=seed,
        )
        figures[label] = {
            "batch_size": batch,
            "tokens_per_second": round(_steady_tokens_per_second(result.history), 1),
            "steps": steps,
            "final_val_bpc": round(result.final["val_bpc"], 4),
            "device": result.device,
        }
    return figures


def run_benchmark(
    *,
    budget_s: float = 300.0,
    quick: bool = False,
    cpus: int = 2,
    workdir: Path | None = None,
    seed: int = 0,
    budget_clock: str = "wall",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All the text figures; ``quick`` shrinks everything to a smoke test (the numbers then mean little)."""
    overrides = overrides or {}
    model = {**(QUICK_MODEL if quick else BENCH_MODEL)}
    training = {**(QUICK_TRAINING if quick else BENCH_TRAINING)}
    for key, value in overrides.items():
        (model if key in model else training)[key] = value
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    usable_cpus = available_cpus()
    pinned = pin_cpus(cpus)  # every figure is "on N cores", whatever the machine has
    with tempfile.TemporaryDirectory(prefix="expforge-bench-text-", dir=workdir) as tmp:
        work = Path(tmp)
        prepare = prepare_throughput(work, max_chars=200_000 if quick else None, seed=seed)
        corpus_dir = work / "shakespeare-char"
        gpu = gpu_throughput(corpus_dir, work, model=model, training=training, steps=50 if quick else 500, seed=seed)
        cpu = cpu_budget_run(
            corpus_dir,
            work,
            budget_s=budget_s,
            model=model,
            training=training,
            eval_interval=20 if quick else 250,
            seed=seed,
            budget_clock=budget_clock,
        )
    from expforge.text.gpt import GptConfig, build_gpt, parameter_count

    config = GptConfig(vocab_size=prepare["char"]["vocab_size"], **model)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "quick": quick,
        "prepare_corpus": prepare,
        "model": {
            **config.architecture(),
            "parameters": parameter_count(build_gpt(config)),
            "tokenizer": "char",
            "training": training,
        },
        "cpu": {"cores": len(pinned), "cpu_ids": pinned, **cpu},
        "gpu": gpu,
        "seed": seed,
        "overrides": overrides,
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "usable_cpus_before_pinning": usable_cpus,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before] if load_before else None,
            "load_average_after": [round(x, 2) for x in load] if load else None,
        },
        "scope": (
            "prepare: end to end MB of source text per second; cpu: training time only (evaluations excluded), "
            "bits per character from evaluate-lm over the whole validation split"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=300.0, help="CPU training budget in seconds (300).")
    parser.add_argument("--quick", action="store_true", help="Tiny smoke test (200k characters, tiny model).")
    parser.add_argument("--cpus", type=int, default=2, help="Cores the CPU figures use (default 2).")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to write (default: the temp directory).")
    parser.add_argument("--output", type=Path, default=Path("bench/results/text.json"), help="JSON file to write.")
    parser.add_argument(
        "--budget-clock", choices=BUDGET_CLOCKS, default="wall", help="wall (default) or cpu seconds per thread."
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a model or training value."
    )
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set, {**BENCH_MODEL, **BENCH_TRAINING})
    except ExpforgeError as error:
        parser.error(str(error))
    report = run_benchmark(
        budget_s=args.budget_s,
        quick=args.quick,
        cpus=args.cpus,
        workdir=args.workdir,
        budget_clock=args.budget_clock,
        overrides=overrides,
    )
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
