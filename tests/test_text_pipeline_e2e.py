"""text-corpus end to end: compiled YAML, the local runner's subprocess backend, a tiny corpus and model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from expforge.local_runner.api import RunResult, run_pipeline
from expforge.pipelines.compile import compile_pipeline
from expforge.text.corpus import load_corpus

pytestmark = pytest.mark.e2e

# Tiny: 50,000 characters of Shakespeare, a one-layer 32-wide GPT, 20 steps on the CPU.
TINY = {
    "max_chars": 50_000,
    "layers": 1,
    "heads": 2,
    "width": 32,
    "context": 32,
    "batch_size": 8,
    "steps": 20,
    "eval_interval": 10,
    "device": "cpu",
    "sample_count": 2,
    "sample_length": 40,
}
PRETRAIN = {"synthetic_source": "markov", "markov_order": 4, "markov_length": 20_000, "pretrain_steps": 10}


def task_dir(result: RunResult, task: str, artifact: str) -> Path:
    return Path(result.tasks[task]["artifacts"][artifact][0])


def check_trained_and_sampled(result: RunResult, train_task: str) -> None:
    assert result.state == "SUCCEEDED", json.dumps(result.record.get("tasks"), indent=1)[:3000]
    bits = result.pipeline_outputs["bits_per_char"]
    assert math.isfinite(bits) and 0.5 < bits < 8.0
    assert result.pipeline_outputs["model"][0] == str(task_dir(result, train_task, "model"))
    samples = task_dir(result, "sample-lm", "samples").read_text()
    assert samples.count("## Sample ") == 2
    corpus = load_corpus(task_dir(result, "prepare-corpus", "corpus"))
    assert corpus.meta["counts"]["characters"] == 50_000 and corpus.tokenizer_kind == "char"
    assert corpus.corpus_id[:12] in samples


def test_markov_pretraining_then_real_training_end_to_end(tmp_path: Path) -> None:
    spec = compile_pipeline("text-corpus", tmp_path / "text-corpus.yaml")
    result = run_pipeline(spec, {**TINY, **PRETRAIN}, backend="subprocess", root=tmp_path / "runs")
    check_trained_and_sampled(result, "train-lm")
    # train-lm-2 trains on prompted text, train-lm-3 on real text only: neither branch ran.
    assert {result.tasks[t]["state"] for t in ("train-lm-2", "train-lm-3")} == {"SKIPPED"}
    markov_text = task_dir(result, "generate-markov-text", "text").read_text()
    assert len(markov_text) == 20_000
    real = load_corpus(task_dir(result, "prepare-corpus", "corpus"))
    synthetic = load_corpus(task_dir(result, "prepare-corpus-2", "corpus"))
    assert synthetic.meta["vocabulary_from"] == real.corpus_id
    real.check_same_vocabulary(synthetic, "pretrain corpus")
    assert set(markov_text) <= set(real.split_text("train"))  # fitted on the real train split only

    # Without pre-training the other branch trains; the real corpus comes from the cache.
    plain = run_pipeline(spec, TINY, backend="subprocess", root=tmp_path / "runs")
    check_trained_and_sampled(plain, "train-lm-3")
    assert plain.tasks["prepare-corpus"]["cached"]
    assert {
        plain.tasks[t]["state"] for t in ("generate-markov-text", "prepare-corpus-2", "train-lm", "train-lm-2")
    } == {"SKIPPED"}
