"""generate-markov-text: determinism, output made only of k-grams seen in training, bad input, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.text import sources
from expforge.text.corpus import load_corpus
from expforge.text.markov import corpus_source, fit_markov, generate, generate_markov_text, tokenize_units
from expforge.text.prepare import prepare_corpus


@pytest.fixture(scope="module")
def text() -> str:
    plays = sources.shakespeare_text().text
    return plays[: plays.index("\n", 60_000) + 1]


@pytest.mark.parametrize("order", [1, 3, 6])
def test_char_output_contains_only_grams_seen_in_training(text: str, order: int) -> None:
    model = fit_markov(text, order=order, unit="char")
    out = generate(model, 4_000, seed=1)
    assert len(out) == 4_000
    seen = {text[i : i + order + 1] for i in range(len(text) - order)}
    unseen = [out[i : i + order + 1] for i in range(len(out) - order) if out[i : i + order + 1] not in seen]
    assert unseen == []
    assert set(out) <= set(text)
    if order == 6:  # long contexts: mostly copied runs of real text, but not one long copy
        assert out not in text and out[:200] != text[:200]


def test_word_output_contains_only_word_grams_seen_in_training(text: str) -> None:
    order = 2
    model = fit_markov(text, order=order, unit="word")
    out = generate(model, 2_000, seed=0)
    vocabulary, ids = tokenize_units(text, "word")
    words = [vocabulary[i] for i in ids]
    seen = {tuple(words[i : i + order + 1]) for i in range(len(words) - order)}
    generated_vocabulary, generated_ids = tokenize_units(out, "word")
    generated = [generated_vocabulary[i] for i in generated_ids]
    assert len(generated) == 2_000  # re-tokenizing the output gives back the sampled tokens
    assert all(tuple(generated[i : i + order + 1]) in seen for i in range(len(generated) - order))
    assert "\n" in out and "  " not in out.replace("\n", "")


def test_generation_is_deterministic_in_the_seed(text: str) -> None:
    model = fit_markov(text, order=4)
    assert generate(model, 3_000, seed=7) == generate(fit_markov(text, order=4), 3_000, seed=7)
    assert generate(model, 3_000, seed=7) != generate(model, 3_000, seed=8)
    assert len(generate(model, 2, seed=0)) == 2  # shorter than the order: the start of a real context


def test_a_unique_ending_is_trimmed_so_generation_never_dead_ends() -> None:
    model = fit_markov("ab" * 50 + "X", order=1)
    assert model.tokens_used == 100
    assert set(generate(model, 500, seed=3)) == {"a", "b"}
    with pytest.raises(ExpforgeError, match="no 1-char context of the text repeats"):
        fit_markov("abcdefgh", order=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 0}, "--order: 0 is not an integer between 1 and 32"),
        ({"order": 40}, "--order: 40 is not an integer between 1 and 32"),
        ({"unit": "sentence"}, "--unit: unknown unit 'sentence'; expected one of char, word"),
        ({"length": 0}, "--length: 0 is not a positive integer"),
        ({"seed": -1}, "--seed: -1 is not a non-negative integer"),
    ],
)
def test_bad_parameters_are_one_clear_error(tmp_path: Path, text: str, kwargs: dict, message: str) -> None:
    source = sources.SourceText("plays", "memory", text[:5_000])
    with pytest.raises(ExpforgeError) as info:
        generate_markov_text(source, tmp_path / "out.txt", **kwargs)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_an_order_longer_than_the_text_is_refused(tmp_path: Path) -> None:
    source = sources.SourceText("tiny", "memory", "To be or not.")
    with pytest.raises(ExpforgeError, match=r"--order: 20 is longer than the text allows \(13 char tokens\)"):
        generate_markov_text(source, tmp_path / "out.txt", order=20)
    assert not (tmp_path / "out.txt").exists()


def test_fitting_on_a_corpus_uses_its_train_split_only(tmp_path: Path, text: str) -> None:
    plays = tmp_path / "plays.txt"
    plays.write_text(text)
    prepare_corpus([plays], tmp_path / "corpus")
    corpus = load_corpus(tmp_path / "corpus")
    source = corpus_source(corpus.path)
    assert source.text == corpus.split_text("train") and source.uri.endswith("#train")
    summary = generate_markov_text(source, tmp_path / "markov.txt", order=5, length=5_000, seed=0)
    out = (tmp_path / "markov.txt").read_text()
    assert summary["bytes"] == len(out.encode()) and summary["contexts"] > 1_000
    train = source.text
    assert all(out[i : i + 6] in train for i in range(0, len(out) - 6, 7))
    # ... and its text tokenizes with the real corpus's vocabulary, for pre-training.
    prepare_corpus([tmp_path / "markov.txt"], tmp_path / "pretrain", vocabulary_from=corpus.path)
    corpus.check_same_vocabulary(load_corpus(tmp_path / "pretrain"), "--pretrain")


def test_cli_writes_the_text_and_a_summary(tmp_path: Path, text: str) -> None:
    plays = tmp_path / "plays.txt"
    plays.write_text(text)
    output = tmp_path / "out" / "markov.txt"
    args = ["generate-markov-text", "--source", str(plays), "--output", str(output), "--order", "3"]
    result = CliRunner().invoke(app, [*args, "--length", "1000", "--unit", "word"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["unit"] == "word" and summary["source"]["name"] == "plays.txt"
    assert len(tokenize_units(output.read_text(), "word")[1]) == 1000
    bad = CliRunner().invoke(app, [*args, "--unit", "byte"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "expforge: error: --unit: unknown unit 'byte'; expected one of char, word"
