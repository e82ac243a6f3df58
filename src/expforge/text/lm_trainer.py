"""train-lm: train the small GPT on a prepared corpus, on CPU or GPU, with exact resume.

The loop is deliberately plain: random contiguous windows of ``context + 1`` tokens drawn by a seeded
``torch.Generator`` (inputs and their one-step-shifted targets), AdamW, linear warmup then cosine decay to
``min_lr``, gradient clipping, mixed precision on GPU (float16 with loss scaling where bfloat16 is missing)
and bfloat16 autocast on a CPU with native bfloat16 units (AMX / AVX512-BF16: about twice the steps per
second of float32 for the benchmark model; attention itself stays float32, see :mod:`expforge.text.gpt`).
On CPU the run is bit-for-bit repeatable for a seed (``seed_everything`` asks for deterministic kernels).

Every ``eval_interval`` steps the mean training loss of the interval, the loss on a fixed set of validation
windows, its bits per character and the training throughput are appended to the history, and a checkpoint
holding everything needed to continue (weights, optimizer, LR schedule position, RNG states, history) is
written atomically to ``output``. A run killed between two evaluations therefore resumes from the last one
(``resume_from``) and ends with exactly the weights an uninterrupted run would have.

Optional pretraining: ``pretrain_steps`` steps on another corpus first (e.g. a Markov-generated one) sharing
the vocabulary, then ``steps`` on the target corpus; one warmup/cosine schedule spans both phases and the
validation figures are always on the target corpus, so the history shows what pretraining bought.

``time_budget_s`` bounds the *training* time (evaluations excluded): the cosine schedule then follows the
fraction of the budget spent (or of the steps, whichever is further), so a budgeted run still ends at a low
learning rate — this is how the 5-minute CPU benchmark trains. ``budget_clock="cpu"`` counts the process's
CPU seconds per thread instead of wall seconds: on a machine shared with other work that approximates what the
same budget buys on a quiet machine (conservatively: threads spinning while they wait count too).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError

BUDGET_CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class LmHistoryRow:
    """One evaluation point. ``val_*`` are always on the target corpus's validation windows."""

    step: int
    phase: str  # pretrain | train
    train_loss: float  # mean training loss (nats/token) over the steps since the previous row
    val_loss: float
    val_bpc: float
    tokens_per_second: float  # training tokens per second of training time over the interval
    seconds: float  # wall-clock seconds since the run started (resumed runs continue the count)
    lr: float


@dataclass
class LmTrainResult:
    """What ``train_lm`` returns: the checkpoint path, the history and the final figures."""

    model_path: Path
    history: list[LmHistoryRow]
    final: dict[str, Any]
    params: dict[str, Any]
    device: dict[str, Any] = field(default_factory=dict)
    stopped_by_budget: bool = False


def learning_rate(
    step: int, total: int, *, peak: float, floor: float, warmup: int, budget_fraction: float = 0.0
) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from ``peak`` to ``floor`` (``step`` counts from 1)."""
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(1.0, max(progress, budget_fraction))
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_context(corpus: Any, context: int, where: str) -> None:
    for split in ("train", "val"):
        count = len(getattr(corpus, split))
        if count <= context:
            raise ExpforgeError(
                f"--context: {context} tokens is longer than the {split} split of {where} ({count} tokens); "
                f"use a context of at most {max(count - 1, 1)}"
            )


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ExpforgeError(f"--{name}: {value} is out of range; expected {bound}")


def train_lm(
    corpus_dir: Path | str,
    output: Path | str,
    *,
    context: int = 64,
    layers: int = 2,
    heads: int = 2,
    width: int = 64,
    dropout: float = 0.0,
    bias: bool = False,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 3e-3,
    min_lr: float | None = None,
    warmup: int | None = None,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    eval_interval: int = 50,
    eval_batches: int = 8,
    pretrain_corpus: Path | str | None = None,
    pretrain_steps: int = 0,
    device: str = "auto",
    amp: bool = True,
    seed: int = 0,
    time_budget_s: float | None = None,
    budget_clock: str = "wall",
    resume_from: Path | str | None = None,
    on_eval: Callable[[LmHistoryRow], Any] | None = None,
) -> LmTrainResult:
    """Train a GPT on ``corpus_dir`` (after ``pretrain_steps`` on ``pretrain_corpus``); checkpoint to ``output``.

    ``min_lr`` defaults to ``lr / 10``; ``warmup`` to 10% of all steps (at most 100). ``on_eval`` is called with
    each history row after its checkpoint is written (the CLI prints progress with it).
    """
    import numpy as np
    import torch

    from expforge.text.corpus import load_corpus
    from expforge.text.gpt import MODEL_KIND, GptConfig, build_gpt, optimizer_groups, parameter_count
    from expforge.text.lm_eval import bits_per_char, chars_per_token, mean_loss_over_windows, window_starts
    from expforge.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
    from expforge.train.device import (
        autocast,
        cpu_autocast_used,
        describe_device,
        needs_grad_scaler,
        seed_everything,
        select_device,
    )

    # --- validate everything before any work, so bad input never leaves a partial output ---------------------
    for name, value in (("steps", steps), ("batch-size", batch_size), ("eval-interval", eval_interval)):
        _positive(name, value)
    _positive("eval-batches", eval_batches)
    _positive("lr", lr)
    _positive("pretrain-steps", pretrain_steps, allow_zero=True)
    _positive("weight-decay", weight_decay, allow_zero=True)
    _positive("grad-clip", grad_clip, allow_zero=True)
    if time_budget_s is not None:
        _positive("time-budget-s", time_budget_s)
    if budget_clock not in BUDGET_CLOCKS:
        raise ExpforgeError(f"--budget-clock: {budget_clock!r} is not one of {', '.join(BUDGET_CLOCKS)}")
    floor = lr / 10 if min_lr is None else min_lr
    if not 0 <= floor <= lr:
        raise ExpforgeError(f"--min-lr: {floor} is outside [0, --lr {lr}]")
    total_steps = pretrain_steps + steps
    warmup_steps = min(100, total_steps // 10) if warmup is None else warmup
    _positive("warmup", warmup_steps, allow_zero=True)
    if warmup_steps >= total_steps:
        raise ExpforgeError(f"--warmup: {warmup_steps} steps is not below the {total_steps} training steps")
    if pretrain_steps > 0 and pretrain_corpus is None:
        raise ExpforgeError("--pretrain-steps: pretraining steps were asked for but no --pretrain corpus was given")
    output = Path(output)
    if output.is_dir():
        raise ExpforgeError(f"--output: {output} is a directory; expected a checkpoint file path")

    corpus = load_corpus(corpus_dir)
    config = GptConfig(
        vocab_size=corpus.vocab_size,
        context=context,
        layers=layers,
        heads=heads,
        width=width,
        dropout=dropout,
        bias=bias,
    ).validate()
    _check_context(corpus, context, str(corpus.path))
    pretrain = None
    if pretrain_corpus is not None and pretrain_steps > 0:
        pretrain = load_corpus(pretrain_corpus)
        corpus.check_same_vocabulary(pretrain, f"--pretrain {pretrain_corpus}")
        _check_context(pretrain, context, f"--pretrain {pretrain.path}")

    params: dict[str, Any] = {
        "corpus_id": corpus.corpus_id,
        "pretrain_corpus_id": pretrain.corpus_id if pretrain is not None else None,
        **dataclasses.asdict(config),
        "steps": steps,
        "pretrain_steps": pretrain_steps if pretrain is not None else 0,
        "batch_size": batch_size,
        "lr": lr,
        "min_lr": floor,
        "warmup": warmup_steps,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "eval_interval": eval_interval,
        "eval_batches": eval_batches,
        "amp": amp,
        "seed": seed,
        "time_budget_s": time_budget_s,
        "budget_clock": budget_clock,
    }
    resumed = None
    if resume_from is not None:
        # The corpus first: another corpus usually means another vocabulary size too, and "trained on another
        # corpus" is the message that says what is wrong.
        resumed = load_checkpoint(resume_from, kind=MODEL_KIND)
        corpus.check_matches(resumed.get("corpus") or {}, str(resume_from))
        load_checkpoint(resume_from, kind=MODEL_KIND, architecture=config.architecture())

    torch_device = select_device(device)
    seed_everything(seed, torch_device)
    if torch_device.type == "cuda":
        # A CPU run earlier in this process (tests, the benchmark) left deterministic algorithms on; on CUDA
        # that makes cuBLAS refuse to run without CUBLAS_WORKSPACE_CONFIG. Bit-exactness is not promised on GPU.
        torch.use_deterministic_algorithms(False)
    model = build_gpt(config).to(torch_device)
    use_amp = amp and torch_device.type == "cuda"
    cpu_bf16 = amp and cpu_autocast_used(torch_device, True)
    # Fused AdamW: one kernel over all parameters instead of a dozen per tensor (CPU and CUDA alike).
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, weight_decay),
        lr=lr,
        betas=(0.9, 0.95),
        **({"fused": True} if torch_device.type in ("cpu", "cuda") else {}),
    )
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(torch_device, use_amp) else None
    generator = torch.Generator().manual_seed(seed)

    def as_tensor(tokens: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(tokens).astype(np.int64))

    train_tokens = as_tensor(corpus.train)
    pretrain_tokens = as_tensor(pretrain.train) if pretrain is not None else None
    offsets = torch.arange(context + 1)
    # The same validation windows at every evaluation (evenly spread over the split) keep rows comparable.
    eval_starts = window_starts(len(corpus.val), context, eval_batches * batch_size)
    val_ratio = chars_per_token(corpus, "val")

    step, history, train_seconds, elapsed_before = 0, [], 0.0, 0.0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scaler is not None and resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        restore_rng_state(resumed["rng"], generator)
        step = int(resumed["step"])
        history = [LmHistoryRow(**row) for row in resumed.get("history", [])]
        train_seconds = float(resumed.get("train_seconds", 0.0))
        elapsed_before = float(resumed.get("elapsed_seconds", 0.0))
        if step >= total_steps:
            raise ExpforgeError(
                f"--resume-from: {resume_from} already reached step {step} of {total_steps}; raise --steps to continue"
            )

    def draw_batch(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(tokens) - context, (batch_size,), generator=generator)
        windows = tokens[starts[:, None] + offsets].to(torch_device, non_blocking=True)
        return windows[:, :-1], windows[:, 1:]

    def clock() -> float:
        if budget_clock == "cpu":
            return time.process_time() / max(1, torch.get_num_threads())
        return time.perf_counter()

    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)

    started = time.perf_counter()
    interval_loss = torch.zeros((), device=torch_device)
    interval_steps, interval_seconds = 0, 0.0
    run_tokens, run_seconds = 0, 0.0
    stopped_by_budget = False
    current_lr = lr
    model.train()

    def evaluate_and_checkpoint(phase: str) -> LmHistoryRow:
        nonlocal interval_loss, interval_steps, interval_seconds
        mean_train = float(interval_loss) / max(1, interval_steps)
        val_loss, _ = mean_loss_over_windows(model, corpus.val, eval_starts, context, torch_device, amp=use_amp)
        if not (math.isfinite(mean_train) and math.isfinite(val_loss)):
            raise ExpforgeError(
                f"--lr: training diverged at step {step} (train loss {mean_train}, val loss {val_loss}); "
                f"lower --lr (now {lr})"
            )
        row = LmHistoryRow(
            step=step,
            phase=phase,
            train_loss=mean_train,
            val_loss=val_loss,
            val_bpc=bits_per_char(val_loss, val_ratio),
            tokens_per_second=interval_steps * batch_size * context / interval_seconds if interval_seconds else 0.0,
            seconds=elapsed_before + time.perf_counter() - started,
            lr=current_lr,
        )
        history.append(row)
        save_checkpoint(
            output,
            kind=MODEL_KIND,
            architecture=config.architecture(),
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler={
                "kind": "warmup-cosine",
                "peak": lr,
                "floor": floor,
                "warmup": warmup_steps,
                "total": total_steps,
                "budget_s": time_budget_s,
                "train_seconds": train_seconds,
            },
            scaler=scaler.state_dict() if scaler is not None else None,
            rng=capture_rng_state(generator),
            step=step,
            history=[dataclasses.asdict(r) for r in history],
            params=params,
            corpus=corpus.corpus_signature(),
            train_seconds=train_seconds,
            elapsed_seconds=row.seconds,
        )
        interval_loss = torch.zeros((), device=torch_device)
        interval_steps, interval_seconds = 0, 0.0
        if on_eval is not None:
            on_eval(row)
        return row

    while step < total_steps:
        phase = "pretrain" if step < pretrain_steps else "train"
        tick, cpu_tick = time.perf_counter(), clock()
        step += 1
        budget_fraction = train_seconds / time_budget_s if time_budget_s else 0.0
        current_lr = learning_rate(
            step, total_steps, peak=lr, floor=floor, warmup=warmup_steps, budget_fraction=budget_fraction
        )
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        source = pretrain_tokens if phase == "pretrain" and pretrain_tokens is not None else train_tokens
        inputs, targets = draw_batch(source)
        with autocast(torch_device, use_amp, cpu=cpu_bf16):
            _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        interval_loss += loss.detach()
        interval_steps += 1
        if time_budget_s is not None or step % eval_interval == 0 or step in (pretrain_steps, total_steps):
            synchronize()  # so the clock measures finished work, not queued kernels
        spent = time.perf_counter() - tick
        train_seconds += spent if budget_clock == "wall" else clock() - cpu_tick
        interval_seconds += spent
        run_seconds += spent
        run_tokens += batch_size * context
        out_of_budget = time_budget_s is not None and train_seconds >= time_budget_s
        if step % eval_interval == 0 or step in (pretrain_steps, total_steps) or out_of_budget:
            evaluate_and_checkpoint(phase)
        if out_of_budget:
            stopped_by_budget = step < total_steps
            break

    last = history[-1]
    final = {
        "train_loss": last.train_loss,
        "val_loss": last.val_loss,
        "val_bpc": last.val_bpc,
        "val_perplexity": math.exp(min(last.val_loss, 700.0)),
        "tokens_per_second": run_tokens / run_seconds if run_seconds else 0.0,
        "steps": last.step,
        "train_seconds": train_seconds,
        "parameters": parameter_count(model),
    }
    return LmTrainResult(
        model_path=output,
        history=history,
        final=final,
        params=params,
        device={**describe_device(torch_device), "cpu_bf16": cpu_bf16},
        stopped_by_budget=stopped_by_budget,
    )


def write_history_csv(history: list[LmHistoryRow], path: Path | str) -> Path:
    """The training history as CSV (one row per evaluation), written atomically."""
    import csv

    from expforge.atomic import staged_file

    fields = [f.name for f in dataclasses.fields(LmHistoryRow)]
    with staged_file(path) as staging, open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(dataclasses.asdict(row) for row in history)
    return Path(path)
