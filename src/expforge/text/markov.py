"""generate-markov-text: synthetic text from an order-k Markov chain fitted on a corpus.

The text counterpart of the font-rendered digits: text that has the local statistics of the real corpus (its
characters, its k-grams) but no long-range structure, so "pre-train on synthetic, then train on real" can be
measured for language models as it is for digits.

* ``unit="char"``: the chain predicts the next character from the previous ``order`` characters.
* ``unit="word"``: tokens are newlines and words *with their leading spaces* (``" thee"``), so joining the
  generated tokens reproduces spacing exactly; the chain predicts the next token from the previous ``order``.

Every ``(order+1)``-gram of the output occurs in the training text: generation starts from a k-gram at a random
training position and only follows observed transitions. The one context that could have no successor (the
text's final k-gram, when it occurs nowhere else) is removed by trimming the end of the text before fitting,
so generation never hits a dead end. Sampling is a numpy RNG seeded with ``seed``: same inputs, same text.

Fitting is vectorized: k-grams get dense ids by repeated ``np.unique`` (an id of a j-gram and the next token
pack into one int64), transitions are counted with one more ``np.unique``; only the table of contexts is a
Python dict (for the generation loop, which uses ``bisect`` on cumulative counts).
"""

from __future__ import annotations

import bisect
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output, staged_file
from expforge.errors import ExpforgeError
from expforge.text.sources import SourceText, load_source, source_path

UNITS = ("char", "word")
MAX_ORDER = 32
#: Most units one run generates (about 100 MB of characters): more is a typo, and would exhaust memory.
MAX_LENGTH = 100_000_000
_WORD = re.compile(r"\n|[^\S\n]*\S+")


@dataclass(frozen=True)
class MarkovModel:
    """A fitted chain: contexts (k-token tuples) → successor tokens with cumulative counts."""

    order: int
    unit: str
    vocabulary: list[str]
    contexts: dict[tuple[int, ...], int]
    """Context tuple → row; row ``r``'s successors are ``successors[starts[r]:starts[r + 1]]``."""
    starts: list[int]
    successors: list[int]
    cumulative: list[int]
    """Per row, running sums of successor counts (each row's last value is its total)."""
    start_positions: np.ndarray
    """Token ids of the (trimmed) training text; generation starts at a k-gram of it."""
    tokens_used: int

    @property
    def transitions(self) -> int:
        """Number of distinct (context, successor) pairs."""
        return len(self.successors)


def _check(order: int, unit: str) -> None:
    if unit not in UNITS:
        raise ExpforgeError(f"--unit: unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ExpforgeError(f"--order: {order!r} is not an integer between 1 and {MAX_ORDER}")


def tokenize_units(text: str, unit: str) -> tuple[list[str], np.ndarray]:
    """(sorted vocabulary, int64 token ids) of ``text`` as characters or words (module docstring)."""
    if unit == "char":
        points = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")
        values, ids = np.unique(points, return_inverse=True)
        return [chr(int(v)) for v in values], ids.astype(np.int64).reshape(-1)
    words = _WORD.findall(text)
    vocabulary = sorted(set(words))
    index = {word: i for i, word in enumerate(vocabulary)}
    return vocabulary, np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words))


def _dense(codes: np.ndarray) -> np.ndarray:
    return np.unique(codes, return_inverse=True)[1].astype(np.int64).reshape(-1)


def fit_markov(text: str, order: int = 6, unit: str = "char") -> MarkovModel:
    """Fit an order-``order`` Markov chain over characters or words of ``text``."""
    _check(order, unit)
    vocabulary, ids = tokenize_units(text, unit)
    n = len(ids)
    k = order
    if n <= k + 1:
        raise ExpforgeError(
            f"--order: {k} is longer than the text allows ({n} {unit} tokens); give more text or a lower order"
        )
    size = len(vocabulary)
    # grams[i] = dense id of the k-gram ids[i:i+k], assigned in lexicographic order of the k-grams. When
    # size**k fits an int64 the k-gram packs into one integer; otherwise ids are made dense one token at a time.
    if size ** (k + 1) < 2**62:
        codes = np.zeros(n - k + 1, dtype=np.int64)
        for j in range(k):
            codes = codes * size + ids[j : n - k + 1 + j]
    else:
        codes = ids.copy()
        for j in range(1, k):
            codes = _dense(codes[:-1] * size + ids[j:])
    _, first, grams = np.unique(codes, return_index=True, return_inverse=True)
    grams = grams.astype(np.int64).reshape(-1)
    # Trim the end until the final k-gram also occurs earlier (with a successor): no dead end in generation.
    last = len(grams) - 1  # position of the final k-gram
    while last > 0 and first[grams[last]] >= last:
        last -= 1
    if last == 0:
        raise ExpforgeError(
            f"--order: no {k}-{unit} context of the text repeats, so an order-{k} chain cannot continue; "
            "give more text or a lower order"
        )
    used = last + k  # tokens ids[:used] are the training text
    pairs = grams[:last] * size + ids[k:used]
    unique_pairs, counts = np.unique(pairs, return_counts=True)
    context_rows = unique_pairs // size
    successors = (unique_pairs % size).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, context_rows[1:] != context_rows[:-1]])
    group = np.cumsum(np.r_[True, context_rows[1:] != context_rows[:-1]]) - 1
    totals_before = np.r_[0, np.cumsum(counts)][starts][group]
    cumulative = np.cumsum(counts) - totals_before
    # One k-token tuple per context row, from its first position in the text.
    row_contexts = context_rows[starts]
    positions = first[row_contexts]
    ids_list = ids[:used].tolist()
    contexts = {tuple(ids_list[p : p + k]): row for row, p in enumerate(positions.tolist())}
    return MarkovModel(
        order=k,
        unit=unit,
        vocabulary=vocabulary,
        contexts=contexts,
        starts=[*starts.tolist(), len(successors)],
        successors=successors.tolist(),
        cumulative=cumulative.tolist(),
        start_positions=ids[:used],
        tokens_used=used,
    )


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ExpforgeError(f"--length: {length!r} is not a positive integer")
    if length > MAX_LENGTH:
        raise ExpforgeError(f"--length: {length} is more than {MAX_LENGTH:,} units")


def generate(model: MarkovModel, length: int, seed: int = 0) -> str:
    """``length`` units (characters or word tokens) of text sampled from ``model``; deterministic in ``seed``."""
    _check_length(length)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ExpforgeError(f"--seed: {seed!r} is not a non-negative integer")
    k = model.order
    rng = np.random.default_rng(seed)
    # Any position whose k-gram has a successor, i.e. 0 .. tokens_used - k - 1.
    start = int(rng.integers(0, model.tokens_used - k))
    context = tuple(int(i) for i in model.start_positions[start : start + k])
    out = list(context[:length])
    uniforms = rng.random(max(0, length - k)).tolist()
    contexts, starts, successors, cumulative = model.contexts, model.starts, model.successors, model.cumulative
    append = out.append
    for u in uniforms:
        row = contexts[context]
        lo, hi = starts[row], starts[row + 1]
        pick = bisect.bisect_right(cumulative, u * cumulative[hi - 1], lo, hi)
        token = successors[pick]
        append(token)
        context = (*context[1:], token)
    vocabulary = model.vocabulary
    return "".join(vocabulary[i] for i in out)


def corpus_source(path: Path | str) -> SourceText:
    """The training split of a prepared corpus as a source: fitting on it keeps validation text out of the chain."""
    from expforge.text.corpus import load_corpus

    corpus = load_corpus(path)
    return SourceText(f"corpus {corpus.corpus_id[:8]} train split", f"{corpus.path}#train", corpus.split_text("train"))


def generate_markov_text(
    source: str | Path | SourceText,
    output: Path | str,
    *,
    order: int = 6,
    unit: str = "char",
    length: int = 1_000_000,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit a chain on ``source`` (a source name/path/URI, or a :class:`SourceText`) and write ``length`` units.

    The output is one UTF-8 text file, written atomically; an existing file is refused unless ``overwrite``,
    and the source file itself always. Returns a summary (source record, chain size, output checksum, seconds).
    """
    started = time.perf_counter()
    _check(order, unit)
    _check_length(length)
    inputs = [source_path(source)]
    check_output(output, directory=False, inputs=inputs, overwrite=overwrite, flag="--output")
    text = source if isinstance(source, SourceText) else load_source(source)
    model = fit_markov(text.text, order=order, unit=unit)
    fitted = time.perf_counter()
    generated = generate(model, length, seed)
    data = generated.encode("utf-8")
    with staged_file(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging:
        staging.write_bytes(data)
    finished = time.perf_counter()
    return {
        "source": text.record(),
        "order": order,
        "unit": unit,
        "length": length,
        "seed": seed,
        "vocabulary": len(model.vocabulary),
        "contexts": len(model.contexts),
        "transitions": model.transitions,
        "output": str(output),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "fit_seconds": round(fitted - started, 3),
        "seconds": round(finished - started, 3),
    }
