"""sample-lm: seeded text samples from a trained GPT, written as a Markdown artifact.

Sampling is autoregressive: the model's next-token distribution (scaled by ``temperature``, optionally cut to
the ``top_k`` most likely tokens) is sampled with a seeded ``torch.Generator`` on the CPU, so the same seed gives
the same samples whether the forward passes ran on CPU or GPU (up to the GPU's own rounding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expforge.errors import ExpforgeError


def _start_ids(corpus: Any, prompt: str) -> list[int]:
    """The prompt's tokens, or — for an empty prompt — a newline (the natural start of a line of text)."""
    if prompt:
        ids = corpus.encode(prompt)
        if not ids:
            raise ExpforgeError(f"--prompt: {prompt!r} encodes to no tokens in corpus {corpus.corpus_id[:8]}")
        return ids
    try:
        ids = corpus.encode("\n")
    except ExpforgeError:
        ids = []
    return ids[-1:] or [0]


def sample(
    model_path: Path | str,
    corpus_dir: Path | str,
    prompt: str = "",
    count: int = 3,
    length: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> list[str]:
    """``count`` samples of ``length`` new tokens each, continuing ``prompt`` (included in each sample).

    ``temperature`` 0 means greedy decoding (always the most likely token); ``top_k`` ``None``/0 means no cut.
    The model must have been trained on this corpus (its vocabulary gives the ids their meaning).
    """
    from expforge.text.corpus import load_corpus
    from expforge.text.lm_eval import load_lm
    from expforge.train.device import select_device

    if count < 1:
        raise ExpforgeError(f"--count: {count} is below 1")
    if length < 1:
        raise ExpforgeError(f"--length: {length} is below 1")
    if temperature < 0:
        raise ExpforgeError(f"--temperature: {temperature} is negative; expected ≥ 0 (0 = greedy)")
    if top_k is not None and top_k < 0:
        raise ExpforgeError(f"--top-k: {top_k} is negative; expected ≥ 0 (0 = no cut)")
    if seed < 0:
        raise ExpforgeError(f"--seed: {seed} is negative; expected an integer ≥ 0")
    corpus = load_corpus(corpus_dir)
    torch_device = select_device(device)
    model, _ = load_lm(model_path, corpus, torch_device)
    start = _start_ids(corpus, prompt)
    rows = continue_ids(model, [start] * count, length, temperature, top_k, seed, torch_device)

    keep_from = 0 if prompt else len(start)
    return [corpus.decode(row[keep_from:]) for row in rows]


def continue_ids(
    model: Any,
    starts: list[list[int]],
    length: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    device: Any,
) -> list[list[int]]:
    """Each start (equal lengths) followed by ``length`` sampled tokens: the decoding loop ``sample`` and the
    prompted-text generator share (seeded ``torch.Generator`` on the CPU; temperature 0 is greedy)."""
    import torch

    context = model.config.context
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.tensor(starts, dtype=torch.long)
    with torch.inference_mode():
        for _ in range(length):
            logits, _ = model(tokens[:, -context:].to(device))
            logits = logits[:, -1, :].float().cpu()
            if temperature == 0:
                chosen = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                chosen = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            tokens = torch.cat([tokens, chosen], dim=1)
    return [row.tolist() for row in tokens]


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks inside ``text``, so the sample cannot close it."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def samples_markdown(
    samples: list[str],
    *,
    prompt: str = "",
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    length: int | None = None,
    model: str | None = None,
    corpus_id: str | None = None,
) -> str:
    """The samples as a Markdown document (settings first, then one fenced block per sample)."""
    settings = [
        f"- prompt: {('`' + prompt.replace('`', '´') + '`') if prompt else '(empty: starts at a new line)'}",
        f"- temperature: {temperature}" + (" (greedy)" if temperature == 0 else ""),
        f"- top-k: {top_k or 'off'}",
        f"- seed: {seed}",
    ]
    if length is not None:
        settings.append(f"- new tokens per sample: {length}")
    if model:
        settings.append(f"- model: `{model}`")
    if corpus_id:
        settings.append(f"- corpus: `{corpus_id[:12]}`")
    lines = ["# Language model samples", "", *settings, ""]
    for number, text in enumerate(samples, start=1):
        fence = _fence(text)
        lines += [f"## Sample {number}", "", f"{fence}text", text, fence, ""]
    return "\n".join(lines)
