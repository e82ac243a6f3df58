"""sample-lm: seeded text samples from a GPT language model, as a Markdown artifact."""

from kfp.dsl import Dataset, Input, Markdown, Model, Output

from expforge.components._adapter import artifact_dir, step_component, write_text_artifact


@step_component("sample-lm")
def sample_lm(
    model: Input[Model],
    corpus: Input[Dataset],
    samples: Output[Markdown],
    prompt: str = "",
    count: int = 3,
    length: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
) -> None:
    """``count`` samples of ``length`` tokens continuing ``prompt``; the same seed gives the same samples."""
    from expforge.text.corpus import load_corpus
    from expforge.text.sampling import sample, samples_markdown

    texts = sample(model.path, artifact_dir(corpus), prompt, count, length, temperature, None, seed)
    markdown = samples_markdown(
        texts,
        prompt=prompt,
        temperature=temperature,
        seed=seed,
        length=length,
        corpus_id=load_corpus(artifact_dir(corpus), verify=False).corpus_id,
    )
    write_text_artifact(samples, markdown)
    samples.metadata["count"] = count
