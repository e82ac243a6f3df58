"""The GPT language model: training, exact resume, evaluation, sampling, bad input, CLI and components.

Everything runs on tiny models and a tiny corpus prepared by the real ``prepare_corpus`` from a local file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kfp import dsl
from tensorboard_events import assert_matches_history
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.text.corpus import load_corpus
from expforge.text.gpt import GptConfig, build_gpt
from expforge.text.lm_eval import bits_per_char, chars_per_token, evaluate_lm, markdown_report
from expforge.text.lm_trainer import learning_rate, train_lm
from expforge.text.prepare import prepare_corpus
from expforge.text.sampling import sample, samples_markdown

VERSE = """\
HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to.

"""

OTHER = """\
KING LEAR:
Blow, winds, and crack your cheeks! rage! blow!
You cataracts and hurricanoes, spout
Till you have drench'd our steeples, drown'd the cocks!

"""

TINY = {"context": 16, "layers": 1, "heads": 2, "width": 32, "batch_size": 8, "eval_batches": 2, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def one_cpu() -> Iterator[None]:
    """Run this module on one core: models this small train ~40× faster on one thread than on two when the
    other core is busy (e.g. under ``pytest -n 2``), where OpenMP threads wait on each other."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)
        torch.set_num_threads(len(allowed))


def _prepare(tmp: Path, name: str, text: str, **kwargs: object) -> Path:
    source = tmp / f"{name}.txt"
    source.write_text(text, encoding="utf-8")
    output = tmp / name
    prepare_corpus([source], output, val_fraction=0.2, seed=0, **kwargs)
    return output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char corpus of repeated verse (about 9,000 characters)."""
    return _prepare(tmp_path_factory.mktemp("lm"), "verse", VERSE * 20)


@pytest.fixture(scope="module")
def other_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another char corpus: different text, different vocabulary."""
    return _prepare(tmp_path_factory.mktemp("lm-other"), "lear", OTHER * 40)


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One tiny model trained for 60 steps, shared by the evaluation and sampling tests."""
    output = tmp_path_factory.mktemp("lm-model") / "model.pt"
    return output, train_lm(corpus, output, steps=60, eval_interval=20, lr=1e-2, **{**TINY, "batch_size": 16})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_loss_decreases_and_history_is_complete(trained, corpus: Path) -> None:
    path, result = trained
    history = result.history
    assert [row.step for row in history] == [20, 40, 60]
    assert {row.phase for row in history} == {"train"}
    losses = [row.val_loss for row in history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.25
    assert losses[-1] < math.log(load_corpus(corpus).vocab_size) - 1.0  # uniform guessing: ln(vocab)
    assert history[-1].train_loss < history[0].train_loss
    assert math.log(2) * history[-1].val_bpc == pytest.approx(history[-1].val_loss)  # char: bpc = loss / ln 2
    assert all(row.tokens_per_second > 0 and row.seconds > 0 for row in history)
    assert result.final["val_loss"] == history[-1].val_loss
    saved = torch.load(path, weights_only=True)
    assert saved["kind"] == "gpt-lm" and saved["step"] == 60 and len(saved["history"]) == 3
    assert saved["corpus"]["corpus_id"] == result.params["corpus_id"]


def test_training_is_deterministic_on_cpu(corpus: Path, tmp_path: Path) -> None:
    runs = [train_lm(corpus, tmp_path / f"{i}.pt", steps=20, eval_interval=10, dropout=0.1, **TINY) for i in range(2)]
    assert [r.val_loss for r in runs[0].history] == [r.val_loss for r in runs[1].history]
    first, second = _weights(tmp_path / "0.pt"), _weights(tmp_path / "1.pt")
    assert all(torch.equal(first[k], second[k]) for k in first)
    other_seed = train_lm(corpus, tmp_path / "s1.pt", steps=20, eval_interval=10, dropout=0.1, seed=1, **TINY)
    assert other_seed.history[-1].val_loss != runs[0].history[-1].val_loss


def test_resume_after_a_crash_ends_with_the_same_weights(corpus: Path, tmp_path: Path) -> None:
    settings = {"steps": 30, "eval_interval": 10, "dropout": 0.1, **TINY}
    straight = train_lm(corpus, tmp_path / "straight.pt", **settings)

    class Crash(Exception):
        pass

    def crash_at_step_20(row: object) -> None:
        if row.step == 20:
            raise Crash

    with pytest.raises(Crash):
        train_lm(corpus, tmp_path / "crashed.pt", on_eval=crash_at_step_20, **settings)
    assert torch.load(tmp_path / "crashed.pt", weights_only=True)["step"] == 20
    resumed = train_lm(corpus, tmp_path / "resumed.pt", resume_from=tmp_path / "crashed.pt", **settings)
    assert [r.step for r in resumed.history] == [10, 20, 30]
    assert [r.val_loss for r in resumed.history] == [r.val_loss for r in straight.history]
    expected, got = _weights(tmp_path / "straight.pt"), _weights(tmp_path / "resumed.pt")
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_resume_into_another_architecture_or_corpus_is_a_clear_error(
    trained, corpus: Path, other_corpus: Path, tmp_path: Path
) -> None:
    path, _ = trained
    with pytest.raises(ExpforgeError, match=r"another architecture \(width: checkpoint 32 vs requested 64\)"):
        train_lm(corpus, tmp_path / "x.pt", steps=80, resume_from=path, **{**TINY, "width": 64})
    with pytest.raises(ExpforgeError, match="trained on corpus"):
        train_lm(other_corpus, tmp_path / "y.pt", steps=80, resume_from=path, **TINY)
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_model_and_corpus_mismatch_names_both_ids(trained, corpus: Path, other_corpus: Path) -> None:
    path, _ = trained
    mine, theirs = load_corpus(corpus).corpus_id, load_corpus(other_corpus).corpus_id
    for call in (lambda: evaluate_lm(path, other_corpus), lambda: sample(path, other_corpus, count=1, length=5)):
        with pytest.raises(ExpforgeError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and mine[:8] in message and theirs[:8] in message and str(path) in message


def test_context_longer_than_the_corpus_is_one_clear_error(corpus: Path, tmp_path: Path) -> None:
    val_tokens = len(load_corpus(corpus).val)
    with pytest.raises(ExpforgeError, match=rf"--context: {val_tokens + 5} tokens is longer than the val split"):
        train_lm(corpus, tmp_path / "model.pt", steps=5, **{**TINY, "context": val_tokens + 5})
    assert list(tmp_path.iterdir()) == []


def test_missing_meta_json_fails_fast_and_writes_nothing(trained, corpus: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "meta.json").unlink()
    output = tmp_path / "out" / "model.pt"
    with pytest.raises(ExpforgeError, match=r"meta\.json: missing"):
        train_lm(broken, output, steps=5, **TINY)
    assert not output.parent.exists()
    with pytest.raises(ExpforgeError, match=r"meta\.json: missing"):
        sample(trained[0], broken, count=1, length=5)


def test_meta_json_from_another_corpus_is_caught(corpus: Path, other_corpus: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(corpus, mixed)
    shutil.copy(other_corpus / "meta.json", mixed / "meta.json")
    with pytest.raises(ExpforgeError, match="another corpus"):
        train_lm(mixed, tmp_path / "model.pt", steps=5, **TINY)
    assert not (tmp_path / "model.pt").exists()


def test_pretraining_needs_the_same_vocabulary(corpus: Path, other_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ExpforgeError, match="another vocabulary"):
        train_lm(corpus, tmp_path / "m.pt", steps=10, pretrain_corpus=other_corpus, pretrain_steps=5, **TINY)
    # The same characters, other text: prepared with the target corpus's vocabulary.
    shared = _prepare(tmp_path, "shared", VERSE[::-1] * 10, vocabulary_from=corpus)
    result = train_lm(
        corpus, tmp_path / "m.pt", steps=10, pretrain_corpus=shared, pretrain_steps=10, eval_interval=5, **TINY
    )
    assert [(r.step, r.phase) for r in result.history] == [
        (5, "pretrain"),
        (10, "pretrain"),
        (15, "train"),
        (20, "train"),
    ]
    with pytest.raises(ExpforgeError, match="--pretrain-steps"):
        train_lm(corpus, tmp_path / "n.pt", steps=10, pretrain_steps=5, **TINY)


def test_time_budget_stops_training_and_still_checkpoints(corpus: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = train_lm(corpus, tmp_path / "m.pt", steps=1_000_000, eval_interval=1000, time_budget_s=0.5, **TINY)
    assert result.stopped_by_budget and 0 < result.final["steps"] < 1_000_000
    assert 0.5 <= result.final["train_seconds"] < 5 and time.perf_counter() - started < 30
    assert torch.load(tmp_path / "m.pt", weights_only=True)["step"] == result.final["steps"]


def test_cpu_clock_budget_counts_cpu_seconds_and_bad_clocks_are_refused(corpus: Path, tmp_path: Path) -> None:
    result = train_lm(
        corpus, tmp_path / "m.pt", steps=1_000_000, eval_interval=1000, time_budget_s=0.5, budget_clock="cpu", **TINY
    )
    assert result.stopped_by_budget and result.params["budget_clock"] == "cpu"
    assert 0.5 <= result.final["train_seconds"] < 5
    with pytest.raises(ExpforgeError, match="--budget-clock: 'gpu' is not one of wall, cpu"):
        train_lm(corpus, tmp_path / "n.pt", steps=10, time_budget_s=1, budget_clock="gpu", **TINY)
    assert not (tmp_path / "n.pt").exists()


def test_cpu_bfloat16_autocast_is_used_only_where_native_and_matches_float32(corpus: Path, tmp_path: Path) -> None:
    from expforge.train.device import cpu_has_bf16_units

    full = train_lm(corpus, tmp_path / "f.pt", steps=4, eval_interval=4, amp=False, **TINY)
    mixed = train_lm(corpus, tmp_path / "m.pt", steps=4, eval_interval=4, **TINY)
    assert full.device["cpu_bf16"] is False
    assert mixed.device["cpu_bf16"] is cpu_has_bf16_units()
    torch.manual_seed(0)
    model = build_gpt(GptConfig(vocab_size=11, context=16, layers=2, heads=2, width=32))
    tokens = torch.randint(0, 11, (4, 17))
    with torch.no_grad():
        reference, reference_loss = model(tokens[:, :-1], tokens[:, 1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.allclose(logits.float(), reference, atol=0.05) and abs(float(loss.detach() - reference_loss)) < 0.02
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    rates = [learning_rate(s, 100, peak=1.0, floor=0.1, warmup=10) for s in range(1, 101)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False)) and rates[-1] == pytest.approx(0.1)
    assert learning_rate(20, 100, peak=1.0, floor=0.1, warmup=10, budget_fraction=1.0) == pytest.approx(0.1)


def test_config_rejects_heads_that_do_not_divide_width() -> None:
    with pytest.raises(ExpforgeError, match="--width: 30 is not divisible by --heads 4"):
        GptConfig(vocab_size=10, width=30, heads=4).validate()


def test_model_is_causal() -> None:
    torch.manual_seed(0)
    model = build_gpt(GptConfig(vocab_size=11, context=8, layers=2, heads=2, width=16)).eval()
    tokens = torch.randint(0, 11, (1, 8))
    changed = tokens.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 11
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    assert torch.allclose(before[0, :5], after[0, :5], atol=1e-6)
    assert not torch.allclose(before[0, 5:], after[0, 5:])


def test_evaluation_matches_an_independent_computation(trained, corpus: Path) -> None:
    path, _ = trained
    result = evaluate_lm(path, corpus, max_windows=None, device="cpu")
    # Recompute: every non-overlapping window of context+1 tokens, summed cross-entropy over its targets.
    loaded = load_corpus(corpus)
    payload = torch.load(path, weights_only=True)
    model = build_gpt(GptConfig.from_architecture(payload["architecture"]))
    model.load_state_dict(payload["model"])
    model.eval()
    val = torch.tensor(loaded.val.astype("int64"))
    context = payload["architecture"]["context"]
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(val) - context, context):
            window = val[start : start + context + 1]
            logits, _ = model(window[None, :-1])
            total += torch.nn.functional.cross_entropy(logits[0], window[1:], reduction="sum").item()
            count += context
    assert result["tokens"] == count
    assert result["val_loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["bits_per_char"] == pytest.approx(total / count / math.log(2), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert "bits per character" in markdown_report(result)


def test_bits_per_char_for_bpe_divides_by_characters(tmp_path: Path) -> None:
    bpe = load_corpus(_prepare(tmp_path, "bpe", VERSE * 20, tokenizer="bpe", vocab_size=300))
    ratio = chars_per_token(bpe, "val")
    assert ratio == pytest.approx(len(bpe.decode(bpe.val.tolist())) / len(bpe.val)) and ratio > 1.5
    assert bits_per_char(2.0, ratio) == pytest.approx(2.0 * len(bpe.val) / (math.log(2) * ratio * len(bpe.val)))


def test_sampling_is_deterministic_per_seed(trained, corpus: Path) -> None:
    path, _ = trained
    first = sample(path, corpus, "To be", count=2, length=30, seed=3)
    assert first == sample(path, corpus, "To be", count=2, length=30, seed=3)
    assert first != sample(path, corpus, "To be", count=2, length=30, seed=4)
    assert all(text.startswith("To be") and len(text) == len("To be") + 30 for text in first)
    greedy = sample(path, corpus, "", count=2, length=20, temperature=0, seed=0)
    assert greedy[0] == greedy[1] and len(greedy[0]) == 20
    markdown = samples_markdown(first, prompt="To be", seed=3)
    assert all(text in markdown for text in first) and "## Sample 2" in markdown
    with pytest.raises(ExpforgeError, match="not in the vocabulary"):
        sample(path, corpus, "Zebra%", count=1, length=5)


def test_cli_end_to_end(corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model.pt"
    args = ["train-lm", "--corpus", str(corpus), "--output", str(model), "--steps", "20", "--eval-interval", "10"]
    args += ["--context", "16", "--layers", "1", "--width", "32", "--batch-size", "8", "--device", "cpu"]
    trained = runner.invoke(app, [*args, "--history-out", str(tmp_path / "history.csv")])
    assert trained.exit_code == 0, trained.output
    assert "step     20 [train]" in trained.output and model.is_file()
    assert (tmp_path / "history.csv").read_text().startswith("step,phase,train_loss,val_loss,val_bpc")
    evaluated = runner.invoke(
        app, ["evaluate-lm", "--model", str(model), "--corpus", str(corpus), "--report", str(tmp_path / "r.md")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["bits_per_char"] > 0 and (tmp_path / "r.md").is_file()
    sampled = runner.invoke(
        app,
        ["sample-lm", "--model", str(model), "--corpus", str(corpus), "--prompt", "To", "--count", "2"]
        + ["--length", "10", "--output", str(tmp_path / "s.md")],
    )
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "s.md").read_text().count("## Sample") == 2
    exists = runner.invoke(app, args)
    assert exists.exit_code == 2 and "file already exists; pass --overwrite" in exists.output
    bad = runner.invoke(app, [*args[:5], "--context", "100000", "--device", "cpu", "--overwrite"])
    assert bad.exit_code == 2
    assert bad.output.strip().count("\n") == 0 and "expforge: error: --context" in bad.output
    clock = runner.invoke(app, [*args, "--overwrite", "--time-budget-s", "1", "--budget-clock", "gpu"])
    assert clock.exit_code == 2 and "expforge: error: --budget-clock: 'gpu'" in clock.output


def _artifact(kind: type, path: Path) -> dsl.Artifact:
    artifact = kind(name=path.name, uri=str(path), metadata={})
    artifact.path = str(path)
    return artifact


def test_components_run_their_steps(corpus: Path, tmp_path: Path) -> None:
    from expforge.components.evaluate_lm import evaluate_lm as evaluate_component
    from expforge.components.sample_lm import sample_lm as sample_component
    from expforge.components.train_lm import train_lm as train_component

    data = _artifact(dsl.Dataset, corpus)
    model = _artifact(dsl.Model, tmp_path / "model")
    history = _artifact(dsl.Artifact, tmp_path / "history")
    board = _artifact(dsl.Artifact, tmp_path / "tensorboard")
    metrics = _artifact(dsl.Metrics, tmp_path / "metrics")
    train_component.python_func(
        corpus=data, model=model, metrics=metrics, history=history, tensorboard=board, layers=1, width=32,
        context=16, steps=10, eval_interval=5, device="cpu",
    )  # fmt: skip
    assert metrics.metadata["val_bpc"] > 0 and model.metadata["kind"] == "gpt-lm"
    assert Path(history.path).read_text().count("\n") == 3
    columns = ["train_loss", "val_loss", "val_bpc", "lr", "tokens_per_second"]
    assert_matches_history(Path(board.path), Path(history.path), "step", columns)  # TensorBoard's own reader
    report = _artifact(dsl.Markdown, tmp_path / "report.md")
    outputs = evaluate_component.python_func(
        model=model, corpus=data, metrics=_artifact(dsl.Metrics, tmp_path / "m2"), report=report
    )
    assert outputs.bits_per_char == pytest.approx(outputs.val_loss / math.log(2))
    samples = _artifact(dsl.Markdown, tmp_path / "samples.md")
    sample_component.python_func(model=model, corpus=data, samples=samples, count=2, length=10)
    assert Path(samples.path).read_text().count("## Sample") == 2
    with pytest.raises(SystemExit) as exited:  # bad input: one line on stderr, exit status 2
        train_component.python_func(
            corpus=data, model=model, metrics=metrics, history=history, tensorboard=board, heads=3
        )
    assert exited.value.code == 2


@pytest.mark.gpu
def test_gpu_training_throughput_with_amp(corpus: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    settings = {"context": 128, "layers": 4, "heads": 4, "width": 128, "batch_size": 64, "eval_batches": 2}
    big = _prepare(tmp_path, "big", VERSE * 200)
    result = train_lm(big, tmp_path / "gpu.pt", steps=300, eval_interval=100, device="cuda", **settings)
    assert result.device["device"] == "cuda" and result.history[-1].val_loss < result.history[0].val_loss
    tokens_per_second = result.history[-1].tokens_per_second
    assert tokens_per_second > 0
    if os.environ.get("EXPFORGE_GPU_RESULTS"):
        record = {
            "test": "test_gpu_training_throughput_with_amp",
            "tokens_per_second": tokens_per_second,
            "model": settings,
            "gpu": result.device.get("gpu"),
            "amp": True,
            "final_val_loss": result.final["val_loss"],
        }
        Path(os.environ["EXPFORGE_GPU_RESULTS"]).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
