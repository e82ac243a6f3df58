"""prepare-corpus: sources, tokenizers, the block split, meta.json validation and every bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.text import sources, tokenize
from expforge.text.corpus import MAX_VOCAB_SIZE, describe_signature, load_corpus
from expforge.text.prepare import prepare_corpus as prepare
from expforge.text.prepare import split_text


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return sources.shakespeare_text().text


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory, shakespeare: str) -> Path:
    """40,000 characters of the real plays as a local text file."""
    path = tmp_path_factory.mktemp("text") / "plays.txt"
    path.write_text(shakespeare[: shakespeare.index("\n", 40_000) + 1], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def char_corpus(tmp_path_factory: pytest.TempPathFactory, sample_file: Path) -> Path:
    output = tmp_path_factory.mktemp("corpora") / "char"
    prepare([sample_file], output, tokenizer="char")
    return output


@pytest.fixture(scope="module")
def bpe_corpus(tmp_path_factory: pytest.TempPathFactory, sample_file: Path) -> Path:
    output = tmp_path_factory.mktemp("corpora") / "bpe"
    prepare([sample_file], output, tokenizer="bpe", vocab_size=400)
    return output


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- sources ---------------------------------------------------------------------------------------------------


def test_shakespeare_has_38_plays_with_markup_stripped(shakespeare: str) -> None:
    files = sources.shakespeare_play_files()
    assert len(files) == 38 == len({f.stem for f in files})
    assert {f.parent.name for f in files} >= {"comedies", "tragedies", "histories"}
    for markup in ("**", "#", "_", "\\", "[", "]", "*"):
        assert markup not in shakespeare, markup
    assert shakespeare.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert "\nHAMLET:\nTo be, or not to be: that is the question:\n" in shakespeare
    assert "Enter Ghost" not in shakespeare and "Exeunt" not in shakespeare.split("\n")
    assert 4_500_000 < len(shakespeare) < 5_000_000


def test_strip_play_markup_keeps_speakers_and_verse_only() -> None:
    markdown = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter FIRST LORD and a very long\nprocession_\n\n"
        "**FIRST LORD**  \n_\\[Aside]_  \nGood morrow,  \nand so\\! on\\.\n\n"
        "*Exit, pursued.*\n\n**PAGE**  \n[Within]_  \nWho's there? __\\[Awaking]_\n\n"
        "Continued after a pause.\n\n**NOBODY**  \n_\\[Sings]_\n"
    )
    assert sources.strip_play_markup(markdown) == (
        "FIRST LORD:\nGood morrow,\nand so! on.\n\nPAGE:\nWho's there?\n\nContinued after a pause.\n"
    )


def test_bible_kjv_from_the_debian_package_or_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bible") and sources.BIBLE_DATA.is_file():
        text = sources.bible_kjv_text().text
        assert text.startswith("Genesis 1\nIn the beginning God created the heaven and the earth.\n")
        assert text.endswith("The grace of our Lord Jesus Christ be with you all. Amen.\n")
        assert text.count("\n\n") == 1188  # 1,189 chapters
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ExpforgeError, match=r"^--source bible-kjv: the `bible` program is missing; .*apt-get install"):
        sources.load_source("bible-kjv")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "input text is empty"),
        (b"  \n\t\n", "input text is empty"),
        (b"PNG\x00\x01\x02binary", "binary input (NUL byte at offset 3)"),
        (b"caf\xe9 latin-1", "not UTF-8 text (invalid byte at offset 3)"),
    ],
)
def test_empty_and_binary_files_are_one_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    with pytest.raises(ExpforgeError, match=re.escape(message)) as info:
        prepare([path], tmp_path / "corpus")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert not (tmp_path / "corpus").exists()


def test_local_text_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "dos.txt"
    path.write_bytes("\ufeffline one\r\nline two\rthree\n".encode())
    assert sources.load_source(str(path)).text == "line one\nline two\nthree\n"
    with pytest.raises(ExpforgeError, match="file not found"):
        sources.load_source(str(tmp_path / "missing.txt"))
    with pytest.raises(ExpforgeError, match="is a directory"):
        sources.load_source(str(tmp_path))


def test_gs_uris_are_parsed_strictly() -> None:
    assert sources.parse_gs_uri("gs://my-bucket/texts/plays.txt") == ("my-bucket", "texts/plays.txt")
    for bad in ("gs://my-bucket", "gs://my-bucket/", "gs:///x.txt", "gs://B/x.txt", "gs://b/dir/"):
        with pytest.raises(ExpforgeError, match="expected gs://BUCKET/OBJECT"):
            sources.parse_gs_uri(bad)


# --- tokenizers and round trips --------------------------------------------------------------------------------


def test_char_corpus_round_trips_and_meta_describes_it(char_corpus: Path, sample_file: Path) -> None:
    corpus = load_corpus(char_corpus)
    text = sample_file.read_text()
    meta = corpus.meta
    assert meta["chars"] == sorted(set(text)) and corpus.vocab_size == len(meta["chars"])
    assert corpus.tokenizer_kind == "char" and len(corpus.corpus_id) == 64
    assert corpus.train.dtype == np.dtype("<u2") and isinstance(corpus.train, np.memmap)
    assert meta["counts"] == {"characters": len(text), "train_tokens": len(corpus.train), "val_tokens": len(corpus.val)}
    assert len(corpus.train) + len(corpus.val) == len(text)
    assert meta["sources"] == [
        {"name": "plays.txt", "uri": str(sample_file), "sha256": meta["sources"][0]["sha256"], "bytes": len(text)}
    ]
    train, val, split = split_text(text, 0.1, 0)
    assert corpus.split_text("train") == train and corpus.decode(corpus.val) == val
    assert split == meta["split"]
    assert corpus.decode(corpus.encode("Good morrow")) == "Good morrow"
    with pytest.raises(ExpforgeError, match="character '€' is not in the vocabulary"):
        corpus.encode("a €")
    signature = corpus.corpus_signature()
    assert signature["chars"] == meta["chars"] and signature["vocab_size"] == corpus.vocab_size


def test_bpe_corpus_round_trips_with_a_locally_trained_tokenizer(bpe_corpus: Path, sample_file: Path) -> None:
    corpus = load_corpus(bpe_corpus)
    text = sample_file.read_text()
    assert corpus.tokenizer_kind == "bpe" and 256 < corpus.vocab_size <= 400
    assert corpus.meta["tokenizer_file"] == "tokenizer.json" and "chars" not in corpus.meta
    train, val, _ = split_text(text, 0.1, 0)
    assert corpus.decode(corpus.train) == train and corpus.split_text("val") == val
    assert len(corpus.train) < 0.7 * len(train)  # merges compress
    assert int(corpus.train.max()) < corpus.vocab_size
    unseen = "Zebras quizzically jump! 42 €"
    assert corpus.decode(corpus.encode(unseen)) == unseen  # byte-level: anything encodes
    assert "tokenizer_sha256" in corpus.corpus_signature()


def test_chunked_bpe_encoding_equals_whole_text_encoding(bpe_corpus: Path, shakespeare: str) -> None:
    tokenizer = tokenize.load_bpe(bpe_corpus / "tokenizer.json")
    text = shakespeare[:60_000] + "\n\n  indented\n\ttab\nlast"
    chunks = list(tokenize.chunks_at_line_starts(text, size=500))
    assert len(chunks) > 50 and "".join(chunks) == text
    assert tokenize.encode_bpe(tokenizer, text).tolist() == tokenizer.encode(text).ids


def test_same_inputs_give_identical_bytes_even_in_another_process(
    tmp_path: Path, sample_file: Path, char_corpus: Path, bpe_corpus: Path
) -> None:
    prepare([sample_file], tmp_path / "char", tokenizer="char")
    assert files_of(tmp_path / "char") == files_of(char_corpus)
    code = (
        "import sys; from expforge.text.prepare import prepare_corpus as p; "
        "p([sys.argv[1]], sys.argv[2], tokenizer='bpe', vocab_size=400)"
    )
    subprocess.run([sys.executable, "-c", code, str(sample_file), str(tmp_path / "bpe")], check=True)
    assert files_of(tmp_path / "bpe") == files_of(bpe_corpus)
    prepare([sample_file], tmp_path / "seed1", tokenizer="char", seed=1)
    other = load_corpus(tmp_path / "seed1")
    assert other.meta["split"]["val_blocks"] != load_corpus(char_corpus).meta["split"]["val_blocks"]
    assert other.corpus_id != load_corpus(char_corpus).corpus_id


def test_split_draws_val_blocks_from_the_whole_text_at_line_starts(shakespeare: str) -> None:
    train, val, split = split_text(shakespeare, 0.1, 0)
    assert split["blocks"] == 100 and len(split["val_blocks"]) == 10
    assert max(split["val_blocks"]) - min(split["val_blocks"]) > 50  # spread out, not one tail
    assert len(train) + len(val) == len(shakespeare)
    assert 0.08 < len(val) / len(shakespeare) < 0.12
    for start, _ in split["val_ranges"]:
        assert start == 0 or shakespeare[start - 1] == "\n"
    assert val == "".join(shakespeare[s:e] for s, e in split["val_ranges"])
    assert split_text(shakespeare, 0.1, 0) == (train, val, split)


def test_several_sources_and_max_chars(tmp_path: Path, sample_file: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("Second source, line one.\nAnd line two, with more words than before.\n" * 40)
    result = prepare([sample_file, other], tmp_path / "both", tokenizer="char")
    assert [s["name"] for s in result["sources"]] == ["plays.txt", "other.txt"]
    assert result["counts"]["characters"] == len(sample_file.read_text()) + 1 + len(other.read_text())
    assert result["throughput"]["mb_per_s"] > 0 and "throughput" not in json.loads(
        (tmp_path / "both/meta.json").read_text()
    )
    small = prepare([sample_file], tmp_path / "small", max_chars=5_000)
    assert small["counts"]["characters"] == 5_000 and small["max_chars"] == 5_000


# --- vocabularies shared with another corpus --------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["char_corpus", "bpe_corpus"])
def test_vocabulary_from_gives_ids_the_same_meaning(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str
) -> None:
    base = load_corpus(request.getfixturevalue(fixture))
    synthetic = tmp_path / "synthetic.txt"
    synthetic.write_text("Good morrow, good morrow; what news?\nNone, my lord.\n" * 30)
    prepare([synthetic], tmp_path / "pre", tokenizer="char", vocabulary_from=base.path)
    pre = load_corpus(tmp_path / "pre")
    assert pre.tokenizer_kind == base.tokenizer_kind and pre.vocab_size == base.vocab_size
    assert pre.meta["vocabulary_from"] == base.corpus_id and pre.corpus_id != base.corpus_id
    base.check_same_vocabulary(pre, "--pretrain")
    assert base.decode(pre.train) == pre.split_text("train")
    with pytest.raises(ExpforgeError, match=r"^model\.pt: model was trained on corpus"):
        base.check_matches(pre.corpus_signature(), "model.pt")


def test_vocabulary_from_rejects_characters_the_vocabulary_lacks(tmp_path: Path, char_corpus: Path) -> None:
    text = tmp_path / "greek.txt"
    text.write_text("Καλημέρα κόσμε\n" * 100)
    with pytest.raises(ExpforgeError, match=r"character 'Κ' is not in the vocabulary"):
        prepare([text], tmp_path / "pre", vocabulary_from=char_corpus)
    assert not (tmp_path / "pre").exists()


def test_check_matches_names_both_corpora(char_corpus: Path, bpe_corpus: Path) -> None:
    char, bpe = load_corpus(char_corpus), load_corpus(bpe_corpus)
    char.check_matches(char.corpus_signature(), "model.pt")
    char.check_matches(char.meta, "model.pt")
    char.check_matches(char.corpus_id, "model.pt")
    with pytest.raises(ExpforgeError) as info:
        bpe.check_matches(char.corpus_signature(), "runs/model.pt")
    assert str(info.value).startswith(
        f"runs/model.pt: model was trained on corpus {char.corpus_id[:8]} (char, vocab {char.vocab_size}) "
        f"but this corpus is {bpe.corpus_id[:8]} (bpe, vocab {bpe.vocab_size})"
    )
    with pytest.raises(ExpforgeError, match="has another vocabulary"):
        bpe.check_same_vocabulary(char, "--pretrain")
    assert describe_signature({"corpus_id": "abc"}) == "abc (?, vocab ?)"


# --- meta.json validation ---------------------------------------------------------------------------------------


def copy_corpus(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_missing_or_foreign_meta_is_one_clear_error(tmp_path: Path, char_corpus: Path, bpe_corpus: Path) -> None:
    with pytest.raises(ExpforgeError, match=r"corpus directory not found; run `expforge prepare-corpus` first"):
        load_corpus(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExpforgeError) as info:
        load_corpus(empty)
    assert str(info.value) == f"{empty}/meta.json: missing; run `expforge prepare-corpus` first"

    def broken(name: str, edit: object) -> Path:
        corpus = copy_corpus(char_corpus, tmp_path / name)
        meta_path = corpus / "meta.json"
        if callable(edit):
            meta = json.loads(meta_path.read_text())
            edit(meta)
            meta_path.write_text(json.dumps(meta))
        else:
            meta_path.write_text(str(edit))
        return corpus

    cases = [
        (broken("json", "{not json"), "not valid JSON"),
        (broken("format", lambda m: m.update(format="something.else")), "format is 'something.else'"),
        (broken("version", lambda m: m.update(version=2)), "version 2 is not supported"),
        (broken("tokenizer", lambda m: m.update(tokenizer="wordpiece")), "unknown tokenizer 'wordpiece'"),
        (broken("vocab", lambda m: m.update(vocab_size=70_000)), "outside 1..65536"),
        (broken("chars", lambda m: m["chars"].reverse()), "'chars' does not match vocabulary_sha256"),
        (broken("counts", lambda m: m["counts"].update(train_tokens=7)), "14 bytes"),
    ]
    for corpus, message in cases:
        with pytest.raises(ExpforgeError, match=re.escape(message)):
            load_corpus(corpus)

    # A meta.json copied from another corpus: the token files do not match it.
    foreign = copy_corpus(bpe_corpus, tmp_path / "foreign")
    shutil.copy(char_corpus / "meta.json", foreign / "meta.json")
    with pytest.raises(ExpforgeError, match="the meta.json belongs to another corpus"):
        load_corpus(foreign)
    # Same sizes but other bytes: caught by the checksums.
    swapped = copy_corpus(char_corpus, tmp_path / "swapped")
    ids = np.fromfile(swapped / "val.bin", dtype="<u2")
    ids[::-1].tofile(swapped / "val.bin")
    with pytest.raises(ExpforgeError, match=r"val\.bin: SHA-256 differs"):
        load_corpus(swapped)
    assert len(load_corpus(swapped, verify=False).val) == len(ids)
    # A BPE corpus whose tokenizer.json was replaced or removed.
    retrained = copy_corpus(bpe_corpus, tmp_path / "retrained")
    (retrained / "tokenizer.json").write_bytes(tokenize.bpe_to_json(tokenize.train_bpe("ab ab ab abc\n" * 50, 300)))
    with pytest.raises(ExpforgeError, match="tokenizer.json: does not match meta.json"):
        load_corpus(retrained)
    (retrained / "tokenizer.json").unlink()
    with pytest.raises(ExpforgeError, match="tokenizer.json: missing"):
        load_corpus(retrained)


# --- bad input: one clear error, nothing half-written --------------------------------------------------------------


def test_bad_parameters_are_one_clear_error_and_keep_the_old_corpus(
    tmp_path: Path, sample_file: Path, char_corpus: Path
) -> None:
    target = copy_corpus(char_corpus, tmp_path / "existing")
    before = files_of(target)
    cases = [
        ({"tokenizer": "wordpiece"}, "--tokenizer: unknown tokenizer 'wordpiece'; expected one of char, bpe"),
        ({"tokenizer": "bpe", "vocab_size": 70_000}, "--vocab-size: 70000 is larger than uint16 token ids allow"),
        ({"tokenizer": "bpe", "vocab_size": 100}, "--vocab-size: 100 is below 256"),
        ({"val_fraction": 0.0}, "--val-fraction: 0.0 is not between 0 and 1"),
        ({"val_fraction": 1.5}, "--val-fraction: 1.5 is not between 0 and 1"),
        ({"max_chars": -1}, "--max-chars: -1 is negative"),
        ({"seed": -3}, "--seed: -3 is not a non-negative integer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ExpforgeError) as info:
            prepare([sample_file], target, **kwargs)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ExpforgeError, match="^--source: no source given"):
        prepare([], target)
    assert files_of(target) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_a_char_vocabulary_larger_than_uint16_is_refused(tmp_path: Path) -> None:
    printable = (chr(c) for c in range(0x21, 0x30000) if not 0xD800 <= c < 0xE000 and chr(c).isprintable())
    chars = [c for _, c in zip(range(MAX_VOCAB_SIZE + 10), printable, strict=False)]
    assert len(chars) > MAX_VOCAB_SIZE
    path = tmp_path / "unicode.txt"
    path.write_text("\n".join("".join(chars[i : i + 100]) for i in range(0, len(chars), 100)), encoding="utf-8")
    with pytest.raises(ExpforgeError, match=r"vocabulary of \d+ tokens is larger than uint16 token ids allow"):
        prepare([path], tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_text_too_short_to_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("To be.")
    with pytest.raises(ExpforgeError, match="too few lines to split into train and val"):
        prepare([path], tmp_path / "corpus")


# --- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_prepares_a_corpus_and_reports_bad_input_in_one_line(tmp_path: Path, sample_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["prepare-corpus", "--source", str(sample_file), "--output", str(tmp_path / "c"), "--max-chars", "9000"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["corpus_id"] == load_corpus(tmp_path / "c").corpus_id and summary["counts"]["characters"] == 9000
    assert "chars" not in summary and summary["throughput"]["megabytes"] == pytest.approx(0.009)
    bad = runner.invoke(app, ["prepare-corpus", "--source", str(sample_file), "--tokenizer", "sentencepiece"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "expforge: error: --tokenizer: unknown tokenizer 'sentencepiece'; expected one of char, bpe"
    )
    missing = runner.invoke(app, ["generate-markov-text", "--corpus", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "run `expforge prepare-corpus` first" in missing.stderr
