"""prepare-corpus: text sources → tokenized train/val token files + ``meta.json`` (see :mod:`expforge.text.corpus`).

The split is made on the *text*, before tokenizing, so BPE is trained on the training text only and the
validation text is never seen by the tokenizer trainer. How (``meta.json`` → ``split`` records it):

1. the text is cut into ``SPLIT_BLOCKS`` (100) contiguous blocks of about equal length, each cut moved to the
   next line start so no line is split (short texts get fewer blocks, at least ``MIN_BLOCK_CHARS`` each);
2. a ``numpy`` RNG seeded with ``seed`` picks ``round(blocks × val_fraction)`` of them (at least one, never
   all) for validation;
3. train is the remaining blocks in text order, val the chosen ones in text order.

So validation samples the whole text (every play, every book), not just its tail, and the same sources and
parameters always give byte-identical files. The two splits are each one token stream; a model sees a seam
where two non-adjacent blocks meet, one per block, which is negligible at 100 blocks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expforge.atomic import check_output, staged_directory
from expforge.errors import ExpforgeError
from expforge.text import tokenize
from expforge.text.corpus import (
    FORMAT,
    META_FILE,
    TOKEN_DTYPE,
    TOKENIZER_FILE,
    TRAIN_FILE,
    VAL_FILE,
    VERSION,
    compute_corpus_id,
    load_corpus,
    sha256_bytes,
    vocabulary_sha256,
)
from expforge.text.sources import SourceText, load_source, source_path

SPLIT_BLOCKS = 100
MIN_BLOCK_CHARS = 256
SPLIT_METHOD = "line-aligned-blocks-v1"


def _check_parameters(val_fraction: float, seed: int, max_chars: int | None) -> None:
    if not 0.0 < float(val_fraction) < 1.0:
        raise ExpforgeError(f"--val-fraction: {val_fraction} is not between 0 and 1 (exclusive)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ExpforgeError(f"--seed: {seed!r} is not a non-negative integer")
    if max_chars is not None and max_chars < 0:
        raise ExpforgeError(f"--max-chars: {max_chars} is negative; use 0 for the whole text")


def block_boundaries(text: str, blocks: int) -> list[int]:
    """Start offsets of ``blocks`` contiguous blocks (plus ``len(text)``), each cut moved to a line start."""
    n = len(text)
    cuts = [0]
    for i in range(1, blocks):
        nominal = round(i * n / blocks)
        newline = text.find("\n", nominal - 1 if nominal else 0)
        cut = newline + 1 if newline != -1 else nominal
        if cuts[-1] < cut < n:
            cuts.append(cut)
    cuts.append(n)
    return cuts


def split_text(text: str, val_fraction: float, seed: int) -> tuple[str, str, dict[str, Any]]:
    """Deterministic block split of ``text`` (module docstring) → (train text, val text, split record)."""
    blocks = max(2, min(SPLIT_BLOCKS, len(text) // MIN_BLOCK_CHARS))
    cuts = block_boundaries(text, blocks)
    count = len(cuts) - 1
    if count < 2:
        raise ExpforgeError(
            f"input text: {len(text)} characters on too few lines to split into train and val; "
            f"give at least {2 * MIN_BLOCK_CHARS} characters over several lines"
        )
    n_val = min(count - 1, max(1, round(count * val_fraction)))
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(count, size=n_val, replace=False))
    is_val = set(chosen)
    train = "".join(text[cuts[i] : cuts[i + 1]] for i in range(count) if i not in is_val)
    val = "".join(text[cuts[i] : cuts[i + 1]] for i in chosen)
    record = {
        "method": SPLIT_METHOD,
        "description": (
            f"text cut into {count} contiguous line-aligned blocks of about equal length; "
            f"{n_val} blocks chosen for val by numpy.random.default_rng({seed}).choice; "
            "train and val each concatenate their blocks in text order"
        ),
        "blocks": count,
        "val_blocks": chosen,
        "val_ranges": [[cuts[i], cuts[i + 1]] for i in chosen],
    }
    return train, val, record


def _join_sources(texts: Sequence[SourceText]) -> str:
    """Sources in the given order, each ending in a newline, separated by a blank line."""
    return "\n".join(t.text if t.text.endswith("\n") else t.text + "\n" for t in texts)


def prepare_corpus(
    sources: Sequence[str | Path],
    output: Path | str,
    *,
    tokenizer: str = "char",
    vocab_size: int = 512,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_chars: int | None = None,
    vocabulary_from: Path | str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Read ``sources``, split, tokenize and write a corpus directory at ``output`` (atomically).

    ``vocabulary_from`` (a prepared corpus) reuses that corpus's tokenizer and vocabulary instead of building
    one, so a synthetic pre-training corpus gives ids the same meaning as the real corpus; ``tokenizer`` and
    ``vocab_size`` are then taken from it. ``max_chars`` (``None``/0: all) keeps the first characters of the
    joined text, for quick experiments. Returns ``meta.json``'s content plus ``throughput`` (seconds, MB/s)
    and ``path``; the timings are not written to ``meta.json``, which stays identical for identical inputs.
    An existing non-empty ``output`` is refused unless ``overwrite``; one that is or holds a source, always.
    """
    started = time.perf_counter()
    _check_parameters(val_fraction, seed, max_chars)
    if not sources:
        raise ExpforgeError("--source: no source given")
    base = load_corpus(vocabulary_from) if vocabulary_from is not None else None
    if base is not None:
        tokenizer = base.tokenizer_kind
    tokenize.check_tokenizer(tokenizer)
    if tokenizer == "bpe" and base is None:
        tokenize.check_vocab_size(vocab_size)
    output = Path(output)
    inputs = [source_path(source) for source in sources] + [vocabulary_from]
    check_output(output, directory=True, inputs=inputs, overwrite=overwrite, flag="--output")

    texts = [load_source(source) for source in sources]
    read_done = time.perf_counter()
    text = _join_sources(texts)
    if max_chars:
        text = text[:max_chars]
    if not text.strip():
        raise ExpforgeError(f"--max-chars: {max_chars} leaves no text")
    train_text, val_text, split = split_text(text, val_fraction, seed)

    tokenizer_json: bytes | None = None
    bpe_trained: float | None = None
    meta_vocab: dict[str, Any] = {}
    if tokenizer == "char":
        chars = list(base.meta["chars"]) if base is not None else tokenize.char_vocabulary(text)
        tokenize.check_fits_uint16(len(chars), "input text")
        where = f"input text (vocabulary of {base.path})" if base is not None else "input text"
        train_ids = tokenize.encode_chars(train_text, chars, what=where)
        val_ids = tokenize.encode_chars(val_text, chars, what=where)
        size = len(chars)
        vocabulary = vocabulary_sha256("char", chars=chars)
        meta_vocab["chars"] = chars
    else:
        if base is not None:
            tokenizer_json = (base.path / base.meta["tokenizer_file"]).read_bytes()
            bpe = tokenize.load_bpe(base.path / base.meta["tokenizer_file"])
        else:
            bpe = tokenize.train_bpe(train_text, vocab_size)
            tokenizer_json = tokenize.bpe_to_json(bpe)
            bpe_trained = time.perf_counter()
        size = int(bpe.get_vocab_size())
        train_ids = tokenize.encode_bpe(bpe, train_text, what="train text")
        val_ids = tokenize.encode_bpe(bpe, val_text, what="val text")
        vocabulary = vocabulary_sha256("bpe", tokenizer_json=tokenizer_json)
        meta_vocab["tokenizer_file"] = TOKENIZER_FILE
        if base is None:
            meta_vocab["vocab_size_requested"] = vocab_size
    tokenized = time.perf_counter()
    if len(train_ids) < 2 or len(val_ids) < 2:
        raise ExpforgeError(
            f"input text: too short to split ({len(train_ids)} train and {len(val_ids)} val tokens); "
            "give more text or a larger --val-fraction"
        )

    records = [t.record() for t in texts]
    split_parameters = {
        "val_fraction": float(val_fraction),
        "seed": seed,
        "max_chars": max_chars or None,
        "method": SPLIT_METHOD,
        "text_sha256": sha256_bytes(text.encode("utf-8")),
    }
    train_bytes = train_ids.astype(TOKEN_DTYPE).tobytes()
    val_bytes = val_ids.astype(TOKEN_DTYPE).tobytes()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "corpus_id": compute_corpus_id(
            [str(r["sha256"]) for r in records],
            tokenizer=tokenizer,
            vocab_size=size,
            vocabulary=vocabulary,
            split=split_parameters,
        ),
        "tokenizer": tokenizer,
        "vocab_size": size,
        **meta_vocab,
        "vocabulary_sha256": vocabulary,
        "vocabulary_from": base.corpus_id if base is not None else None,
        "sources": records,
        "counts": {"characters": len(text), "train_tokens": int(len(train_ids)), "val_tokens": int(len(val_ids))},
        "checksums": {TRAIN_FILE: sha256_bytes(train_bytes), VAL_FILE: sha256_bytes(val_bytes)},
        "val_fraction": float(val_fraction),
        "seed": seed,
        "max_chars": max_chars or None,
        "text_sha256": split_parameters["text_sha256"],
        "split": split,
    }
    with staged_directory(output, overwrite=overwrite, inputs=inputs, flag="--output") as staging:
        (staging / TRAIN_FILE).write_bytes(train_bytes)
        (staging / VAL_FILE).write_bytes(val_bytes)
        if tokenizer_json is not None:
            (staging / TOKENIZER_FILE).write_bytes(tokenizer_json)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    finished = time.perf_counter()
    megabytes = len(text.encode("utf-8")) / 1e6
    seconds = finished - started
    tokenize_seconds = tokenized - read_done
    return {
        **meta,
        "path": str(output),
        "throughput": {
            "megabytes": round(megabytes, 3),
            "seconds": round(seconds, 3),
            "mb_per_s": round(megabytes / seconds, 3) if seconds > 0 else None,
            "tokenize_seconds": round(tokenize_seconds, 3),
            "tokenize_mb_per_s": round(megabytes / tokenize_seconds, 3) if tokenize_seconds > 0 else None,
            "bpe_train_seconds": round(bpe_trained - read_done, 3) if bpe_trained is not None else None,
        },
    }
