"""evaluate-lm: validation loss, perplexity and bits per character of a GPT language model."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, log_scalars, step_component, write_text_artifact


class EvaluateLmOutputs(NamedTuple):
    """Output parameters of ``evaluate-lm``: what a pipeline compares or gates on."""

    val_loss: float
    perplexity: float
    bits_per_char: float


@step_component("evaluate-lm")
def evaluate_lm(
    model: Input[Model],
    corpus: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> EvaluateLmOutputs:
    """Score ``model`` on the val split of ``corpus`` (the corpus it was trained on, or a clear error)."""
    from expforge.text.lm_eval import evaluate_lm as evaluate
    from expforge.text.lm_eval import markdown_report

    result = evaluate(model.path, artifact_dir(corpus))
    log_scalars(
        metrics,
        {k: result[k] for k in ("val_loss", "perplexity", "bits_per_char", "tokens", "parameters")},
    )
    write_text_artifact(report, markdown_report(result))
    return EvaluateLmOutputs(float(result["val_loss"]), float(result["perplexity"]), float(result["bits_per_char"]))
