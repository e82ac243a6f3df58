"""generate-markov-text: synthetic text from an order-k character or word Markov chain (the text 'font digits')."""

from kfp.dsl import Dataset, Input, Output

from expforge.components._adapter import describe, step_component


@step_component("generate-markov-text")
def generate_markov_text(
    text: Output[Dataset],
    source: str = "shakespeare",
    order: int = 6,
    unit: str = "char",
    length: int = 1_000_000,
    seed: int = 0,
    corpus: Input[Dataset] = None,
) -> None:
    """Fit a chain on ``source`` — or, when ``corpus`` is given, on that prepared corpus's *train split*, so no
    validation text leaks into pre-training — and write ``length`` units of sampled text to ``text`` (a file).
    """
    from expforge.text.markov import corpus_source
    from expforge.text.markov import generate_markov_text as generate

    fitted_on = corpus_source(corpus.path) if corpus is not None else source
    summary = generate(fitted_on, text.path, order=order, unit=unit, length=length, seed=seed)
    describe(text, {k: v for k, v in summary.items() if k != "output"}, layout="text/plain; charset=utf-8")
