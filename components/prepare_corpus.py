"""prepare-corpus: text (Shakespeare, the KJV Bible, a file, gs://, or an upstream text artifact) → token files."""

from kfp.dsl import Dataset, Input, Output

from expforge.components._adapter import artifact_dir, describe, step_component


@step_component("prepare-corpus")
def prepare_corpus(
    corpus: Output[Dataset],
    source: str = "shakespeare",
    tokenizer: str = "char",
    vocab_size: int = 512,
    val_fraction: float = 0.1,
    max_chars: int = 0,
    seed: int = 0,
    text: Input[Dataset] = None,
    vocabulary_from: Input[Dataset] = None,
) -> None:
    """Write a corpus directory (``train.bin``, ``val.bin``, ``meta.json``) with a deterministic block split.

    ``source`` is ``shakespeare``, ``bible-kjv``, a path or a ``gs://`` URI (several joined with commas);
    ``text`` (a text-file artifact such as generate-markov-text's output) replaces it when given.
    ``vocabulary_from`` (another corpus) reuses its tokenizer and vocabulary, so a synthetic pre-training
    corpus gives token ids the same meaning as the real one; ``tokenizer``/``vocab_size`` are then ignored.
    """
    from expforge.text.prepare import prepare_corpus as prepare

    sources = [text.path] if text is not None else [s.strip() for s in source.split(",") if s.strip()]
    result = prepare(
        sources,
        artifact_dir(corpus),
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        val_fraction=val_fraction,
        seed=seed,
        max_chars=max_chars or None,
        vocabulary_from=artifact_dir(vocabulary_from) if vocabulary_from is not None else None,
    )
    summary = {k: result[k] for k in ("corpus_id", "tokenizer", "vocab_size", "counts", "sources", "throughput")}
    describe(corpus, summary, layout="expforge.corpus/v1 (train.bin, val.bin: uint16; meta.json)")
