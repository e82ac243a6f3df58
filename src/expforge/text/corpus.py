"""A prepared text corpus on disk, and the checks that keep models and corpora from being mixed up.

``expforge prepare-corpus`` writes a *corpus directory*; everything that trains on, evaluates on or samples
from text reads it through :func:`load_corpus`::

    <corpus>/train.bin      little-endian uint16 token ids (np.memmap readable)
    <corpus>/val.bin        the same for the validation split
    <corpus>/meta.json      what the ids mean and where they came from (below)
    <corpus>/tokenizer.json the trained `tokenizers` BPE model (BPE corpora only)

``meta.json``::

    {"format": "expforge.corpus", "version": 1, "corpus_id": "<sha256>",
     "tokenizer": "char" | "bpe", "vocab_size": 65,
     "chars": ["\\n", " ", "!", ...]          # char only: id = index
     "tokenizer_file": "tokenizer.json",      # bpe only
     "vocabulary_sha256": "<sha256 of the vocabulary>",
     "sources": [{"name", "uri", "sha256", "bytes"}, ...],
     "counts": {"characters", "train_tokens", "val_tokens"},
     "checksums": {"train.bin": "<sha256>", "val.bin": "<sha256>"},
     "val_fraction": 0.1, "seed": 0, "max_chars": null, "split": {...}}

Why a ``corpus_id``: token ids mean nothing without their vocabulary, and a model evaluated on text that was
split differently may be scored on its own training data. The id hashes what decides both (the sorted source
checksums, the tokenizer, the vocabulary and the split parameters), so a checkpoint can store it (through
:meth:`Corpus.corpus_signature`) and :meth:`Corpus.check_matches` can refuse the wrong corpus with one line.
The vocabulary alone (``vocabulary_sha256``) decides whether two corpora can feed the same model, which is
what pre-training on a synthetic corpus needs (:meth:`Corpus.check_same_vocabulary`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expforge.errors import ExpforgeError
from expforge.text.token_format import MAX_VOCAB_SIZE, TOKEN_DTYPE, TOKENIZERS

FORMAT = "expforge.corpus"
VERSION = 1
META_FILE = "meta.json"
TRAIN_FILE = "train.bin"
VAL_FILE = "val.bin"
TOKENIZER_FILE = "tokenizer.json"

_HINT = "run `expforge prepare-corpus` first"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vocabulary_sha256(
    tokenizer: str, *, chars: Sequence[str] | None = None, tokenizer_json: bytes | None = None
) -> str:
    """The fingerprint of a vocabulary: two corpora with the same one give ids the same meaning."""
    if tokenizer == "char":
        assert chars is not None
        return sha256_bytes(json.dumps(["char", list(chars)], ensure_ascii=False).encode("utf-8"))
    assert tokenizer_json is not None
    return sha256_bytes(b"bpe\n" + tokenizer_json)


def compute_corpus_id(
    source_checksums: Iterable[str],
    *,
    tokenizer: str,
    vocab_size: int,
    vocabulary: str,
    split: Mapping[str, Any],
) -> str:
    """SHA-256 over the sorted source checksums, the tokenizer, the vocabulary and the split parameters."""
    payload = {
        "sources": sorted(source_checksums),
        "tokenizer": tokenizer,
        "vocab_size": int(vocab_size),
        "vocabulary_sha256": vocabulary,
        "split": dict(split),
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode("utf-8"))


def describe_signature(signature: Mapping[str, Any]) -> str:
    """``"1a2b3c4d (char, vocab 65)"`` — how error messages name a corpus."""
    corpus_id = str(signature.get("corpus_id") or "?")
    return f"{corpus_id[:8]} ({signature.get('tokenizer', '?')}, vocab {signature.get('vocab_size', '?')})"


def _fail(where: Path | str, message: str) -> ExpforgeError:
    return ExpforgeError(f"{where}: {message}")


class Corpus:
    """A loaded, validated corpus directory (see the module docstring for the layout)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r}, {describe_signature(self.corpus_signature())})"

    # --- identity ---------------------------------------------------------------------------------------------

    @property
    def corpus_id(self) -> str:
        """SHA-256 hex naming this corpus (sources, tokenizer, vocabulary, split)."""
        return str(self.meta["corpus_id"])

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (every id in the .bin files is below it)."""
        return int(self.meta["vocab_size"])

    @property
    def tokenizer_kind(self) -> str:
        """``"char"`` or ``"bpe"``."""
        return str(self.meta["tokenizer"])

    @property
    def vocabulary_sha256(self) -> str:
        """Fingerprint of the vocabulary alone (equal for corpora whose ids mean the same)."""
        return str(self.meta["vocabulary_sha256"])

    def corpus_signature(self) -> dict[str, Any]:
        """What a model checkpoint stores about the corpus it was trained on (plain JSON values)."""
        signature: dict[str, Any] = {
            "corpus_id": self.corpus_id,
            "tokenizer": self.tokenizer_kind,
            "vocab_size": self.vocab_size,
            "vocabulary_sha256": self.vocabulary_sha256,
        }
        if self.tokenizer_kind == "char":
            signature["chars"] = list(self.meta["chars"])
        else:
            signature["tokenizer_sha256"] = sha256_file(self.path / self.meta["tokenizer_file"])
        return signature

    signature = corpus_signature

    def check_matches(self, meta_or_id: Mapping[str, Any] | str, where: str) -> None:
        """Raise unless ``meta_or_id`` (a signature, a meta.json dict or a corpus id) names this very corpus.

        ``where`` names what is being checked (``"runs/model.pt"``), so the message says which file is wrong.
        """
        if isinstance(meta_or_id, str):
            other: Mapping[str, Any] = {"corpus_id": meta_or_id}
        else:
            other = meta_or_id
        if other.get("corpus_id") == self.corpus_id:
            return
        raise ExpforgeError(
            f"{where}: model was trained on corpus {describe_signature(other)} but this corpus is "
            f"{describe_signature(self.corpus_signature())} ({self.path})"
        )

    def check_same_vocabulary(self, other: Corpus | Mapping[str, Any], where: str) -> None:
        """Raise unless ``other`` (a corpus, signature or meta) gives token ids the same meaning as this one.

        Pre-training on a synthetic corpus and then training on the real one needs exactly this (their
        corpus ids differ, their vocabularies must not).
        """
        signature = other.corpus_signature() if isinstance(other, Corpus) else other
        if (
            signature.get("tokenizer") == self.tokenizer_kind
            and signature.get("vocabulary_sha256") == self.vocabulary_sha256
        ):
            return
        raise ExpforgeError(
            f"{where}: corpus {describe_signature(signature)} has another vocabulary than corpus "
            f"{describe_signature(self.corpus_signature())} ({self.path}); prepare it with "
            "`--vocabulary-from` the other corpus"
        )

    # --- tokens -----------------------------------------------------------------------------------------------

    @functools.cached_property
    def train(self) -> np.ndarray:
        """Training token ids (read-only memmap of ``train.bin``)."""
        return self._tokens(TRAIN_FILE, int(self.meta["counts"]["train_tokens"]))

    @functools.cached_property
    def val(self) -> np.ndarray:
        """Validation token ids (read-only memmap of ``val.bin``)."""
        return self._tokens(VAL_FILE, int(self.meta["counts"]["val_tokens"]))

    def _tokens(self, name: str, count: int) -> np.ndarray:
        if count == 0:  # np.memmap cannot map an empty file
            return np.zeros(0, dtype=TOKEN_DTYPE)
        return np.memmap(self.path / name, dtype=TOKEN_DTYPE, mode="r", shape=(count,))

    @functools.cached_property
    def _char_index(self) -> dict[str, int]:
        return {char: i for i, char in enumerate(self.meta["chars"])}

    @functools.cached_property
    def _bpe(self) -> Any:
        from expforge.text.tokenize import load_bpe

        return load_bpe(self.path / self.meta["tokenizer_file"])

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character the vocabulary lacks (char corpora) is a one-line error."""
        if self.tokenizer_kind == "char":
            index = self._char_index
            try:
                return [index[char] for char in text]
            except KeyError as exc:
                raise ExpforgeError(
                    f"text: character {exc.args[0]!r} is not in the vocabulary of corpus "
                    f"{describe_signature(self.corpus_signature())}"
                ) from None
        return list(self._bpe.encode(text).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids; an id outside the vocabulary is a one-line error."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ExpforgeError(
                f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1}) of {self.path}"
            )
        if self.tokenizer_kind == "char":
            chars = self.meta["chars"]
            return "".join(chars[i] for i in ids)
        return str(self._bpe.decode(ids, skip_special_tokens=False))

    def split_text(self, split: str = "train") -> str:
        """The text of a whole split (``"train"`` or ``"val"``), decoded from its token ids."""
        if split not in ("train", "val"):
            raise ExpforgeError(f"split: {split!r} is not 'train' or 'val'")
        ids = np.asarray(self.train if split == "train" else self.val)
        if self.tokenizer_kind == "char":
            points = np.array([ord(c) for c in self.meta["chars"]], dtype="<u4")
            return points[ids].tobytes().decode("utf-32-le")
        return str(self._bpe.decode(ids.tolist(), skip_special_tokens=False))


def read_meta(path: Path | str) -> dict[str, Any]:
    """Read and validate ``<corpus>/meta.json`` (format, version, fields) without touching the token files."""
    path = Path(path)
    if not path.is_dir():
        if path.name == META_FILE and path.is_file():
            path = path.parent
        else:
            raise _fail(path, f"corpus directory not found; {_HINT}")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise _fail(meta_path, f"missing; {_HINT}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(meta_path, f"not valid JSON ({exc}); {_HINT}") from None
    if not isinstance(meta, dict):
        raise _fail(meta_path, "expected a JSON object")
    if meta.get("format") != FORMAT:
        raise _fail(meta_path, f"format is {meta.get('format')!r}; expected {FORMAT!r} (not a prepared corpus)")
    if meta.get("version") != VERSION:
        raise _fail(meta_path, f"version {meta.get('version')!r} is not supported (expected {VERSION}); {_HINT}")
    for key, kind in (
        ("corpus_id", str),
        ("tokenizer", str),
        ("vocab_size", int),
        ("vocabulary_sha256", str),
        ("sources", list),
        ("counts", dict),
    ):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise _fail(meta_path, f"field {key!r} is missing or not a {kind.__name__}")
    if meta["tokenizer"] not in TOKENIZERS:
        raise _fail(meta_path, f"unknown tokenizer {meta['tokenizer']!r}; expected one of {', '.join(TOKENIZERS)}")
    if not 1 <= meta["vocab_size"] <= MAX_VOCAB_SIZE:
        raise _fail(meta_path, f"vocab_size {meta['vocab_size']} is outside 1..{MAX_VOCAB_SIZE} (uint16 token ids)")
    for key in ("characters", "train_tokens", "val_tokens"):
        value = meta["counts"].get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _fail(meta_path, f"counts.{key} is missing or not a non-negative integer")
    if meta["tokenizer"] == "char":
        chars = meta.get("chars")
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise _fail(meta_path, "field 'chars' must list the single characters of a char vocabulary")
        if len(chars) != meta["vocab_size"] or len(set(chars)) != len(chars):
            raise _fail(meta_path, f"'chars' has {len(chars)} entries for vocab_size {meta['vocab_size']}")
        if vocabulary_sha256("char", chars=chars) != meta["vocabulary_sha256"]:
            raise _fail(meta_path, "'chars' does not match vocabulary_sha256 (edited or from another corpus)")
    else:
        name = meta.get("tokenizer_file")
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise _fail(meta_path, "field 'tokenizer_file' must name the tokenizer JSON file in the corpus directory")
        tokenizer_path = path / name
        if not tokenizer_path.is_file():
            raise _fail(tokenizer_path, f"missing (named by {META_FILE}); {_HINT}")
        if vocabulary_sha256("bpe", tokenizer_json=tokenizer_path.read_bytes()) != meta["vocabulary_sha256"]:
            raise _fail(tokenizer_path, f"does not match {META_FILE} (vocabulary_sha256); it belongs to another corpus")
    return meta


def load_corpus(path: Path | str, *, verify: bool = True) -> Corpus:
    """Open a prepared corpus: meta.json must be there, of this format and version, and match the token files.

    With ``verify`` (the default) the token files' SHA-256 are checked against ``meta.json`` too, so a
    meta.json copied from another corpus is caught even when the token counts happen to agree.
    """
    path = Path(path)
    if path.name == META_FILE and path.is_file():
        path = path.parent
    meta = read_meta(path)
    meta_path = path / META_FILE
    checksums: dict[str, Any] = meta["checksums"] if isinstance(meta.get("checksums"), dict) else {}
    for name, key in ((TRAIN_FILE, "train_tokens"), (VAL_FILE, "val_tokens")):
        file = path / name
        if not file.is_file():
            raise _fail(file, f"missing; {_HINT}")
        expected = int(meta["counts"][key]) * TOKEN_DTYPE.itemsize
        size = file.stat().st_size
        if size != expected:
            raise _fail(
                file,
                f"{size} bytes but {META_FILE} counts {meta['counts'][key]} tokens ({expected} bytes); "
                "the meta.json belongs to another corpus or the file is truncated",
            )
        if verify and name in checksums and sha256_file(file) != checksums[name]:
            raise _fail(file, f"SHA-256 differs from {meta_path}; the meta.json belongs to another corpus")
    return Corpus(path, meta)


def corpus_signature(corpus: Corpus | Path | str) -> dict[str, Any]:
    """The signature of a corpus (or corpus directory) that a model checkpoint stores."""
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus)
    return corpus.corpus_signature()
