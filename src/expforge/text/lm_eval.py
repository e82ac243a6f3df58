"""evaluate-lm: validation loss, perplexity and bits per character of a trained GPT language model.

Bits per character is the figure that compares across tokenizers: a BPE model predicts fewer, longer tokens,
so its per-token loss is not comparable with a character model's. Dividing the total information (nats → bits)
by the number of *characters* the tokens stand for puts both on the same scale; for a character tokenizer one
token is one character and bpc is simply loss / ln 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError

DEFAULT_MAX_WINDOWS = 2048


def chars_per_token(corpus: Any, split: str = "val") -> float:
    """Characters represented per token in ``split`` (1.0 for a character tokenizer).

    For BPE the split is decoded once and its characters counted (meta.json only counts the whole corpus's
    characters, and the split's own ratio is the one its loss is measured on).
    """
    if corpus.tokenizer_kind == "char":
        return 1.0
    tokens = getattr(corpus, split)
    if len(tokens) == 0:
        raise ExpforgeError(f"{corpus.corpus_id}: the {split} split is empty; cannot count characters per token")
    return len(corpus.decode(tokens.tolist())) / len(tokens)


def bits_per_char(loss_nats_per_token: float, chars_per_token_ratio: float) -> float:
    """Mean loss in nats per token → bits per character: total nats / (ln 2 × characters)."""
    return loss_nats_per_token / (math.log(2) * chars_per_token_ratio)


def window_starts(token_count: int, context: int, max_windows: int | None) -> list[int]:
    """Non-overlapping windows of ``context + 1`` tokens (input + shifted target) covering the split.

    When there are more than ``max_windows``, an evenly spaced subset is taken: deterministic, and spread over
    the whole split rather than only its beginning.
    """
    span = context + 1
    if token_count < span:
        raise ExpforgeError(
            f"--context: {context} tokens is longer than the split ({token_count} tokens); "
            f"use a context of at most {token_count - 1}"
        )
    starts = list(range(0, token_count - span + 1, context))
    if max_windows is not None and len(starts) > max_windows:
        step = len(starts) / max_windows
        starts = [starts[int(i * step)] for i in range(max_windows)]
    return starts


def mean_loss_over_windows(
    model: Any, tokens: Any, starts: list[int], context: int, device: Any, *, batch_size: int = 32, amp: bool = True
) -> tuple[float, int]:
    """Mean next-token cross-entropy (nats) over every target of the given windows, and the target count."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    from expforge.train.device import autocast

    offsets = np.arange(context + 1)
    array = np.asarray(tokens)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(starts), batch_size):
                index = np.asarray(starts[first : first + batch_size])[:, None] + offsets
                batch = torch.from_numpy(array[index].astype(np.int64)).to(device)
                with autocast(device, amp):
                    logits, _ = model(batch[:, :-1])
                losses = F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
                )
                total += float(losses)
                count += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / count, count


def load_lm(model_path: Path | str, corpus: Any, device: Any) -> tuple[Any, dict[str, Any]]:
    """Load a gpt-lm checkpoint for inference after checking it was trained on ``corpus``'s vocabulary."""
    from expforge.text.gpt import MODEL_KIND, GptConfig, build_gpt
    from expforge.train.checkpoint import load_checkpoint

    payload = load_checkpoint(model_path, kind=MODEL_KIND)
    signature = payload.get("corpus")
    if not signature:
        raise ExpforgeError(f"{model_path}: checkpoint records no corpus; cannot check it matches {corpus.corpus_id}")
    corpus.check_matches(signature, str(model_path))
    config = GptConfig.from_architecture(payload["architecture"])
    if config.vocab_size != corpus.vocab_size:
        raise ExpforgeError(
            f"{model_path}: model vocabulary has {config.vocab_size} tokens but corpus {corpus.corpus_id} has "
            f"{corpus.vocab_size}"
        )
    model = build_gpt(config)
    model.load_state_dict(payload["model"])
    model.to(device)
    model.eval()
    return model, payload


def evaluate_lm(
    model_path: Path | str,
    corpus_dir: Path | str,
    *,
    max_windows: int | None = DEFAULT_MAX_WINDOWS,
    batch_size: int = 32,
    device: str = "auto",
) -> dict[str, Any]:
    """Validation loss (nats/token), perplexity and bits per character over the val split.

    The split is cut into non-overlapping context-length windows (every token predicted once, from the tokens
    before it in its window); at most ``max_windows`` evenly spaced windows are used (``None``: all).
    """
    from expforge.text.corpus import load_corpus
    from expforge.text.gpt import parameter_count
    from expforge.train.device import describe_device, select_device

    if max_windows is not None and max_windows < 1:
        raise ExpforgeError(f"--max-windows: {max_windows} is below 1")
    if batch_size < 1:
        raise ExpforgeError(f"--batch-size: {batch_size} is below 1")
    corpus = load_corpus(corpus_dir)
    torch_device = select_device(device)
    model, payload = load_lm(model_path, corpus, torch_device)
    context = model.config.context
    starts = window_starts(len(corpus.val), context, max_windows)
    loss, tokens = mean_loss_over_windows(model, corpus.val, starts, context, torch_device, batch_size=batch_size)
    ratio = chars_per_token(corpus, "val")
    return {
        "val_loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_char": bits_per_char(loss, ratio),
        "tokens": tokens,
        "windows": len(starts),
        "chars_per_token": ratio,
        "corpus_id": corpus.corpus_id,
        "tokenizer": corpus.tokenizer_kind,
        "vocab_size": corpus.vocab_size,
        "parameters": parameter_count(model),
        "architecture": payload["architecture"],
        "trained_steps": payload.get("step"),
        "model_path": str(model_path),
        "device": describe_device(torch_device),
    }


def markdown_report(result: dict[str, Any]) -> str:
    """A short Markdown summary for the KFP ``Markdown`` artifact (the Vertex UI renders it)."""
    arch = result.get("architecture", {})
    shape = ", ".join(f"{k}={arch[k]}" for k in ("layers", "heads", "width", "context") if k in arch)
    lines = [
        "# Language model evaluation",
        "",
        f"Corpus `{result['corpus_id']}` ({result['tokenizer']} tokenizer, vocabulary {result['vocab_size']}); "
        f"model {result['parameters']:,} parameters ({shape}), trained {result.get('trained_steps')} steps.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| validation loss (nats/token) | {result['val_loss']:.4f} |",
        f"| perplexity | {result['perplexity']:.3f} |",
        f"| bits per character | {result['bits_per_char']:.4f} |",
        f"| tokens scored | {result['tokens']:,} ({result['windows']:,} windows) |",
        f"| characters per token | {result['chars_per_token']:.3f} |",
        "",
    ]
    return "\n".join(lines)
