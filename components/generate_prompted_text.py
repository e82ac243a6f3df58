"""generate-prompted-text: a text corpus from filled prompt templates, continued by the project's GPT or Gemini."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component


@step_component("generate-prompted-text")
def generate_prompted_text(
    text: Output[Dataset],
    manifest: Output[Artifact],
    metrics: Output[Metrics],
    prompts: list,
    values: dict = {},  # noqa: B006 (a KFP default, never mutated)
    backend: str = "local",
    count: int = 20,
    temperature: float = 0.8,
    seed: int = 0,
    length: int = 80,
    model: Input[Model] = None,
    corpus: Input[Dataset] = None,
    vertex_model: str = "gemini-2.0-flash-001",
    region: str = "us-central1",
    safety: dict = {},  # noqa: B006 (a KFP default, never mutated)
) -> None:
    """Fill ``count`` prompts from ``prompts`` (templates with ``{placeholders}``) and ``values`` (name → list),
    continue each with ``backend`` and write ``text`` (one UTF-8 file, a prepare-corpus source) and
    ``manifest`` (JSON: every prompt used). ``local`` needs ``model`` (train-lm) and its ``corpus``;
    ``vertex`` asks ``vertex_model`` in ``region`` with ``safety`` (category → threshold); token usage goes
    to ``metrics``."""
    from expforge.errors import ExpforgeError
    from expforge.text.prompted import LocalLmBackend, PromptSet, TextBackend, check_options, check_prompt_set
    from expforge.text.prompted import generate_prompted_text as generate

    check_options(count, temperature, backend)
    prompt_set = check_prompt_set(PromptSet(list(prompts), {k: list(v) for k, v in values.items()}, "prompts"))
    chosen: TextBackend
    if backend == "local":
        if model is None or corpus is None:
            raise ExpforgeError("backend local: needs the model (train-lm) and corpus inputs")
        chosen = LocalLmBackend(model.path, artifact_dir(corpus), length=length)
    else:
        from expforge.text.prompted_vertex import VertexGeminiBackend

        chosen = VertexGeminiBackend(vertex_model, region=region, safety=safety, max_output_tokens=length)
    summary = generate(prompt_set, chosen, text.path, manifest.path, count=count, temperature=temperature, seed=seed)
    log_scalars(
        metrics, {"texts": count, "bytes": summary["bytes"], **{f"{k}": v for k, v in summary["usage"].items()}}
    )
    describe(text, {k: v for k, v in summary.items() if k != "usage"}, layout="text/plain; charset=utf-8")
    manifest.metadata["format"] = "json"
