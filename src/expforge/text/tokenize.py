"""Tokenizers for text corpora: character-level, and byte-level BPE trained locally.

* ``char``: the vocabulary is the sorted set of distinct characters of the text (id = position), so the
  ids of a corpus are reproducible from its text alone and ``meta.json`` can list the whole vocabulary.
* ``bpe``: byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder, 256 byte tokens, then merges)
  trained on the corpus's *training split* with the ``tokenizers`` library. Nothing is downloaded at run
  time; the trained model is saved as ``tokenizer.json`` beside the token files. Training has no random
  choices (merges are taken by count, ties broken by token ids), so the same text gives the same bytes;
  ``tests/test_text_corpus.py`` checks this across runs.

Both encode to ``uint16`` arrays, so a vocabulary may hold at most 65,536 tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from expforge.errors import ExpforgeError
from expforge.text.token_format import MAX_VOCAB_SIZE, TOKEN_DTYPE, TOKENIZERS

#: Byte-level BPE starts from one token per byte value.
BPE_BYTE_ALPHABET = 256
#: Texts are encoded in pieces of about this many characters (cut where it cannot change the result).
CHUNK_CHARS = 1 << 16


def check_tokenizer(name: str, flag: str = "--tokenizer") -> str:
    """Return ``name`` if it is a known tokenizer, else a one-line error."""
    if name not in TOKENIZERS:
        raise ExpforgeError(f"{flag}: unknown tokenizer {name!r}; expected one of {', '.join(TOKENIZERS)}")
    return name


def check_vocab_size(vocab_size: int, flag: str = "--vocab-size") -> int:
    """A BPE vocabulary size must cover the 256 byte tokens and fit uint16 token ids."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ExpforgeError(f"{flag}: {vocab_size!r} is not an integer")
    if vocab_size > MAX_VOCAB_SIZE:
        raise ExpforgeError(
            f"{flag}: {vocab_size} is larger than uint16 token ids allow (at most {MAX_VOCAB_SIZE} tokens)"
        )
    if vocab_size < BPE_BYTE_ALPHABET:
        raise ExpforgeError(
            f"{flag}: {vocab_size} is below {BPE_BYTE_ALPHABET}; byte-level BPE starts from the 256 byte tokens"
        )
    return vocab_size


def check_fits_uint16(vocab_size: int, what: str) -> None:
    """One line when a vocabulary has more tokens than uint16 ids can name."""
    if vocab_size > MAX_VOCAB_SIZE:
        raise ExpforgeError(
            f"{what}: vocabulary of {vocab_size} tokens is larger than uint16 token ids allow "
            f"(at most {MAX_VOCAB_SIZE}); use --tokenizer bpe with a smaller --vocab-size"
        )


# --- char ------------------------------------------------------------------------------------------------------


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def char_vocabulary(*texts: str) -> list[str]:
    """The sorted distinct characters of ``texts`` (sorted by code point, like ``sorted(set(text))``)."""
    points = np.unique(np.concatenate([np.unique(_codepoints(t)) for t in texts] or [np.zeros(0, "<u4")]))
    return [chr(int(p)) for p in points]


def encode_chars(text: str, chars: list[str], *, what: str = "text") -> np.ndarray:
    """Token ids (uint16) of ``text`` under the char vocabulary ``chars`` (which must be sorted)."""
    check_fits_uint16(len(chars), what)
    vocabulary = np.array([ord(c) for c in chars], dtype="<u4")
    points = _codepoints(text)
    if not len(points):
        return np.zeros(0, dtype=TOKEN_DTYPE)
    ids = np.searchsorted(vocabulary, points)
    ids_clipped = np.minimum(ids, len(vocabulary) - 1)
    missing = vocabulary[ids_clipped] != points
    if missing.any():
        char = chr(int(points[np.argmax(missing)]))
        raise ExpforgeError(f"{what}: character {char!r} is not in the vocabulary ({len(chars)} characters)")
    return ids.astype(TOKEN_DTYPE)


# --- BPE -------------------------------------------------------------------------------------------------------


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ExpforgeError(
            "--tokenizer bpe: the `tokenizers` package is not installed (pip install 'expforge[text]')"
        ) from None
    return tokenizers


def chunks_at_line_starts(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Pieces of ``text`` of about ``size`` characters, cut only after a newline followed by a non-space.

    Why there: GPT-2's pre-tokenization regex always ends a piece at such a point (a run of whitespace
    ending in a newline never absorbs the next word), so encoding the pieces separately gives exactly the
    ids of encoding the whole text, while the pieces can be encoded in parallel.
    """
    start = 0
    n = len(text)
    while start < n:
        end = start + size
        if end >= n:
            yield text[start:]
            return
        cut = text.find("\n", end)
        while cut != -1 and cut + 1 < n and text[cut + 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut == -1 or cut + 1 >= n:
            yield text[start:]
            return
        yield text[start : cut + 1]
        start = cut + 1


def train_bpe(text: str, vocab_size: int) -> Any:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on ``text`` (at most ``vocab_size`` tokens)."""
    check_vocab_size(vocab_size)
    tokenizers = _require_tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(chunks_at_line_starts(text), trainer=trainer)
    return tokenizer


def bpe_to_json(tokenizer: Any) -> bytes:
    """The tokenizer's JSON (what ``tokenizer.json`` holds), as UTF-8 bytes."""
    return str(tokenizer.to_str(pretty=False)).encode("utf-8")


def load_bpe(path: Path | str) -> Any:
    """Load a ``tokenizer.json`` written by :func:`train_bpe`; a corrupt file is a one-line error."""
    tokenizers = _require_tokenizers()
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception subclasses
        raise ExpforgeError(f"{path}: not a valid tokenizers JSON file ({exc})") from None


def encode_bpe(tokenizer: Any, text: str, *, what: str = "text") -> np.ndarray:
    """Token ids (uint16) of ``text`` under a byte-level BPE tokenizer (pieces encoded in parallel)."""
    check_fits_uint16(int(tokenizer.get_vocab_size()), what)
    chunks = list(chunks_at_line_starts(text))
    if not chunks:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    encodings = tokenizer.encode_batch_fast(chunks) if hasattr(tokenizer, "encode_batch_fast") else None
    if encodings is None:
        encodings = tokenizer.encode_batch(chunks)
    return np.concatenate([np.asarray(e.ids, dtype=TOKEN_DTYPE) for e in encodings])
