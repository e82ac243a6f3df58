"""CLI commands of the GPT language model: ``train-lm``, ``evaluate-lm``, ``sample-lm``.

Registered by the static area list of :mod:`expforge.cli`; each command imports its step lazily.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Add the three language-model commands to the ``expforge`` app."""

    @command("train-lm")
    def train_lm(
        corpus: Path = typer.Option(..., "--corpus", help="Corpus directory (from prepare-corpus)."),
        output: Path = typer.Option(Path("runs/lm/model.pt"), "--output", help="Checkpoint file to write."),
        pretrain: Path | None = typer.Option(
            None, "--pretrain", help="Corpus to pretrain on first (same vocabulary, e.g. Markov-generated)."
        ),
        pretrain_steps: int = typer.Option(0, "--pretrain-steps", help="Steps on --pretrain before --steps."),
        layers: int = typer.Option(2, "--layers", help="Transformer blocks."),
        heads: int = typer.Option(2, "--heads", help="Attention heads per block (must divide --width)."),
        width: int = typer.Option(64, "--width", help="Embedding width."),
        context: int = typer.Option(64, "--context", help="Context length in tokens."),
        dropout: float = typer.Option(0.0, "--dropout", help="Dropout probability while training."),
        steps: int = typer.Option(200, "--steps", help="Optimizer steps on the corpus."),
        batch_size: int = typer.Option(32, "--batch-size", help="Windows per step."),
        lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate (AdamW)."),
        min_lr: float | None = typer.Option(None, "--min-lr", help="Final learning rate (default --lr / 10)."),
        warmup: int | None = typer.Option(None, "--warmup", help="Warmup steps (default 10% of steps, ≤ 100)."),
        weight_decay: float = typer.Option(0.1, "--weight-decay", help="AdamW weight decay of the matrices."),
        eval_interval: int = typer.Option(50, "--eval-interval", help="Steps between evaluations/checkpoints."),
        eval_batches: int = typer.Option(8, "--eval-batches", help="Validation batches per evaluation."),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
        no_amp: bool = typer.Option(
            False, "--no-amp", help="Full precision (no mixed precision on GPU, no bfloat16 on a bf16 CPU)."
        ),
        seed: int = typer.Option(0, "--seed"),
        time_budget_s: float | None = typer.Option(
            None, "--time-budget-s", help="Stop when this much training time is spent."
        ),
        budget_clock: str = typer.Option(
            "wall", "--budget-clock", help="wall|cpu: --time-budget-s in wall seconds or CPU seconds per thread."
        ),
        resume_from: Path | None = typer.Option(None, "--resume-from", help="Checkpoint to continue from."),
        history_out: Path | None = typer.Option(None, "--history-out", help="Also write the history as CSV."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (never an input)."),
    ) -> None:
        """Train the small GPT; train/val loss and bits per character are printed per evaluation."""
        from expforge.atomic import check_output
        from expforge.text.lm_trainer import LmHistoryRow, write_history_csv
        from expforge.text.lm_trainer import train_lm as train

        # The checkpoint is rewritten as training goes (it is the resume point): checked here, once.
        inputs = [corpus, pretrain]
        in_place = resume_from is not None and Path(resume_from).resolve() == Path(output).resolve()
        check_output(output, directory=False, inputs=inputs, overwrite=overwrite or in_place, flag="--output")
        if history_out is not None:
            check_output(
                history_out, directory=False, inputs=[*inputs, output], overwrite=overwrite, flag="--history-out"
            )

        def show(row: LmHistoryRow) -> None:
            typer.echo(
                f"step {row.step:>6} [{row.phase}] train_loss={row.train_loss:.4f} val_loss={row.val_loss:.4f} "
                f"val_bpc={row.val_bpc:.4f} tok/s={row.tokens_per_second:,.0f} t={row.seconds:.1f}s"
            )

        result = train(
            corpus,
            output,
            context=context,
            layers=layers,
            heads=heads,
            width=width,
            dropout=dropout,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            min_lr=min_lr,
            warmup=warmup,
            weight_decay=weight_decay,
            eval_interval=eval_interval,
            eval_batches=eval_batches,
            pretrain_corpus=pretrain,
            pretrain_steps=pretrain_steps,
            device=device,
            amp=not no_amp,
            seed=seed,
            time_budget_s=time_budget_s,
            budget_clock=budget_clock,
            resume_from=resume_from,
            on_eval=show,
        )
        if history_out is not None:
            write_history_csv(result.history, history_out)
        typer.echo(f"parameters: {result.final['parameters']:,}  device: {result.device['device']}")
        typer.echo(f"model: {result.model_path}")

    @command("evaluate-lm")
    def evaluate_lm(
        model: Path = typer.Option(..., "--model", help="Checkpoint written by train-lm."),
        corpus: Path = typer.Option(..., "--corpus", help="The corpus the model was trained on."),
        max_windows: int = typer.Option(2048, "--max-windows", help="Cap on context windows scored (0: all)."),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
        report: Path | None = typer.Option(None, "--report", help="Also write a Markdown report."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (never an input)."),
    ) -> None:
        """Validation loss, perplexity and bits per character over the corpus's val split (JSON)."""
        from expforge.atomic import check_output, staged_file
        from expforge.text.lm_eval import evaluate_lm as evaluate
        from expforge.text.lm_eval import markdown_report

        inputs = [model, corpus]
        if report is not None:
            check_output(report, directory=False, inputs=inputs, overwrite=overwrite, flag="--report")
        result = evaluate(model, corpus, max_windows=max_windows or None, device=device)
        if report is not None:
            with staged_file(report, overwrite=overwrite, inputs=inputs, flag="--report") as staging:
                staging.write_text(markdown_report(result), encoding="utf-8")
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))

    @command("sample-lm")
    def sample_lm(
        model: Path = typer.Option(..., "--model", help="Checkpoint written by train-lm."),
        corpus: Path = typer.Option(..., "--corpus", help="The corpus the model was trained on."),
        prompt: str = typer.Option("", "--prompt", help="Text each sample continues."),
        count: int = typer.Option(3, "--count", help="Number of samples."),
        length: int = typer.Option(200, "--length", help="New tokens per sample."),
        temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature (0: greedy)."),
        top_k: int = typer.Option(0, "--top-k", help="Sample among the k likeliest tokens (0: all)."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
        output: Path | None = typer.Option(None, "--output", help="Markdown file to write (default: stdout)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (never an input)."),
    ) -> None:
        """Seeded samples from the model, as Markdown."""
        from expforge.atomic import check_output, staged_file
        from expforge.text.corpus import load_corpus
        from expforge.text.sampling import sample, samples_markdown

        inputs = [model, corpus]
        if output is not None:
            check_output(output, directory=False, inputs=inputs, overwrite=overwrite, flag="--output")

        texts = sample(model, corpus, prompt, count, length, temperature, top_k or None, seed, device)
        markdown = samples_markdown(
            texts,
            prompt=prompt,
            temperature=temperature,
            top_k=top_k or None,
            seed=seed,
            length=length,
            model=str(model),
            corpus_id=load_corpus(corpus, verify=False).corpus_id,
        )
        if output is None:
            typer.echo(markdown)
            return
        with staged_file(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging:
            staging.write_text(markdown, encoding="utf-8")
        typer.echo(str(output))
