"""text-corpus: a small GPT on real text, optionally pre-trained on synthetic text first.

prepare real corpus ─┬──────────────────────────────────────────────────────┐
                     │ synthetic_source=markov                              │
                     ├─► generate Markov text (fitted on real train) ──┐    │
                     │ synthetic_source=prompted                       │    │
                     ├─► generate prompted text (Gemini / local GPT) ──┤    │
                     │        prepare it with the real vocabulary ◄────┘    ▼
                     └────────────────────────────────────────────► train (pretrain steps, then real steps)
                       synthetic_source=none: real only                  ├─► evaluate on real val
                                                                         └─► sample

The Markov chain is fitted on the real corpus's *train split* (never val); prompted text comes from filled
prompt templates (``prompt_templates`` with ``{placeholders}`` from ``prompt_values``). Either is tokenized with
the real corpus's vocabulary (``vocabulary_from``), so the pre-training ids mean what the real ids mean — the
text counterpart of "train on font digits, then on real MNIST" (a character the real text lacks is refused by
that preparation step). Defaults are small; tests pass tiny values as parameters (``-p max_chars=50000 -p
steps=20 ...``) rather than a preset.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model

from expforge.components.evaluate_lm import evaluate_lm
from expforge.components.generate_markov_text import generate_markov_text
from expforge.components.generate_prompted_text import generate_prompted_text
from expforge.components.prepare_corpus import prepare_corpus
from expforge.components.sample_lm import sample_lm
from expforge.components.train_lm import train_lm

PIPELINE_NAME = "text-corpus"


class TextCorpusOutputs(NamedTuple):
    """What a run yields: the trained model and its bits per character on the real validation text."""

    model: Model
    bits_per_char: float


def build() -> dsl.graph_component.GraphComponent:
    """Build the pipeline graph (call inside ``pinned_images`` to choose the images)."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Prepare a text corpus, optionally pre-train on Markov-chain text, train a small GPT, "
        "evaluate bits per character on real val and sample from it.",
    )
    def text_corpus(
        source: str = "shakespeare",
        tokenizer: str = "char",
        vocab_size: int = 512,
        max_chars: int = 0,
        val_fraction: float = 0.1,
        synthetic_source: str = "none",
        prompt_templates: list = ["The {who} spoke of {what}", "O {who}, where is the {what}"],  # noqa: B006
        prompt_values: dict = {"who": ["king", "queen", "fool"], "what": ["crown", "sea", "night"]},  # noqa: B006
        prompt_backend: str = "vertex",
        prompt_count: int = 200,
        vertex_model: str = "gemini-2.0-flash-001",
        vertex_region: str = "us-central1",
        markov_order: int = 6,
        markov_unit: str = "char",
        markov_length: int = 1000000,
        pretrain_steps: int = 200,
        layers: int = 2,
        heads: int = 2,
        width: int = 64,
        context: int = 64,
        batch_size: int = 32,
        steps: int = 200,
        lr: float = 0.003,
        eval_interval: int = 50,
        device: str = "auto",
        sample_count: int = 3,
        sample_length: int = 200,
        prompt: str = "",
        temperature: float = 0.8,
        seed: int = 0,
    ) -> TextCorpusOutputs:
        real = prepare_corpus(
            source=source,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            val_fraction=val_fraction,
            max_chars=max_chars,
            seed=seed,
        ).set_display_name("prepare real corpus")
        real.set_cpu_limit("2").set_memory_limit("4G")
        model_settings = dict(
            layers=layers,
            heads=heads,
            width=width,
            context=context,
            batch_size=batch_size,
            steps=steps,
            lr=lr,
            eval_interval=eval_interval,
            device=device,
            seed=seed,
        )
        with dsl.If(synthetic_source == "markov", name="markov-pretraining"):
            markov = generate_markov_text(
                corpus=real.outputs["corpus"], order=markov_order, unit=markov_unit, length=markov_length, seed=seed
            ).set_display_name("generate Markov text")
            markov.set_cpu_limit("2").set_memory_limit("4G")
            synthetic = prepare_corpus(
                text=markov.outputs["text"],
                vocabulary_from=real.outputs["corpus"],
                val_fraction=val_fraction,
                seed=seed,
            ).set_display_name("prepare Markov corpus")
            pretrained = train_lm(
                corpus=real.outputs["corpus"],
                pretrain=synthetic.outputs["corpus"],
                pretrain_steps=pretrain_steps,
                **model_settings,
            ).set_display_name("train (Markov, then real)")
            pretrained.set_cpu_limit("2").set_memory_limit("8G")
        with dsl.Elif(synthetic_source == "prompted", name="prompted-pretraining"):
            prompted = generate_prompted_text(
                prompts=prompt_templates,
                values=prompt_values,
                backend=prompt_backend,
                count=prompt_count,
                temperature=temperature,
                seed=seed,
                vertex_model=vertex_model,
                region=vertex_region,
            ).set_display_name("generate prompted text")
            prompted_corpus = prepare_corpus(
                text=prompted.outputs["text"],
                vocabulary_from=real.outputs["corpus"],
                val_fraction=val_fraction,
                seed=seed,
            ).set_display_name("prepare prompted corpus")
            on_prompted = train_lm(
                corpus=real.outputs["corpus"],
                pretrain=prompted_corpus.outputs["corpus"],
                pretrain_steps=pretrain_steps,
                **model_settings,
            ).set_display_name("train (prompted, then real)")
            on_prompted.set_cpu_limit("2").set_memory_limit("8G")
        with dsl.Else(name="real-only"):
            plain = train_lm(corpus=real.outputs["corpus"], **model_settings).set_display_name("train (real)")
            plain.set_cpu_limit("2").set_memory_limit("8G")
        model = dsl.OneOf(pretrained.outputs["model"], on_prompted.outputs["model"], plain.outputs["model"])
        scored = evaluate_lm(model=model, corpus=real.outputs["corpus"]).set_display_name("evaluate on real val")
        sample_lm(
            model=model,
            corpus=real.outputs["corpus"],
            prompt=prompt,
            count=sample_count,
            length=sample_length,
            temperature=temperature,
            seed=seed,
        ).set_display_name("sample")
        return TextCorpusOutputs(model=model, bits_per_char=scored.outputs["bits_per_char"])

    return text_corpus
