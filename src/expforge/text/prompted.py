"""generate-prompted-text: a synthetic text corpus from prompts, continued by a language model.

The scaffold's third generator (beside Markov chains and font-rendered digits): prompt *templates* with
``{placeholders}`` are filled from seeded choices of values, each filled prompt is sent to a backend, and the
answers are written as one UTF-8 text file — the layout ``prepare-corpus`` reads as a file source — plus a JSON
manifest of every prompt used (template index, the values chosen, the backend's token usage).

Backends share one small protocol (:class:`TextBackend`): ``local`` continues each prompt with the project's
own trained GPT (``sample-lm``'s model; offline), ``vertex`` asks a Gemini model on Vertex AI
(:mod:`expforge.text.prompted_vertex`). Everything is checked before the first call (templates, placeholders,
count, temperature, model name), and the corpus is written only once every text exists: a backend that keeps
failing leaves no file that looks like a complete corpus.
"""

from __future__ import annotations

import hashlib
import json
import string
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from expforge.atomic import check_output, staged_file
from expforge.errors import ExpforgeError

BACKENDS = ("local", "vertex")
MAX_TEMPERATURE = 2.0
SEPARATOR = "\n\n"


@dataclass
class Generation:
    """One backend answer: the text and what it cost (token counts; empty for the local model)."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)


class TextBackend(Protocol):
    """What a generator needs from a model: continue one prompt."""

    name: str

    def generate(self, prompt: str, *, temperature: float, seed: int) -> Generation: ...


@dataclass(frozen=True)
class PromptSet:
    """Templates and the values their placeholders draw from."""

    templates: list[str]
    values: dict[str, list[str]]
    where: str = "prompts"


def placeholders(template: str, where: str) -> list[str]:
    """The ``{name}`` fields of ``template`` (positional fields and format specs are refused)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ExpforgeError(f"{where}: template {template!r} is not a valid template ({exc})") from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ExpforgeError(f"{where}: template {template!r} has field {{{name}}}; expected {{name}} placeholders")
        names.append(name)
    return names


def check_prompt_set(prompts: PromptSet) -> PromptSet:
    """Refuse an empty list, empty templates, placeholders without values and empty value lists."""
    if not prompts.templates:
        raise ExpforgeError(f"{prompts.where}: the prompt list is empty; expected at least one prompt")
    for name, choices in prompts.values.items():
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str | int | float) for c in choices):
            raise ExpforgeError(f"{prompts.where}: values.{name} must be a non-empty list of strings")
    for number, template in enumerate(prompts.templates, start=1):
        if not isinstance(template, str) or not template.strip():
            raise ExpforgeError(f"{prompts.where}: prompt {number} is empty")
        for name in placeholders(template, prompts.where):
            if name not in prompts.values:
                known = ", ".join(sorted(prompts.values)) or "none"
                raise ExpforgeError(
                    f"{prompts.where}: prompt {number} uses unknown placeholder {{{name}}}; values define {known}"
                )
    return prompts


def load_prompt_file(path: Path | str, values: Mapping[str, Sequence[str]] | None = None) -> PromptSet:
    """A ``.toml`` file (``prompts = [...]`` and a ``[values]`` table) or a text file of one prompt per line
    (blank lines and ``#`` comments skipped); ``values`` adds to (and overrides) the file's values."""
    path = Path(path)
    if not path.is_file():
        raise ExpforgeError(f"--prompts: {path} is not a file")
    text = path.read_text(encoding="utf-8")
    file_values: dict[str, list[str]] = {}
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ExpforgeError(f"{path}: not valid TOML ({exc})") from exc
        templates = data.get("prompts")
        if not isinstance(templates, list):
            raise ExpforgeError(f"{path}: expected a list 'prompts = [...]'")
        raw = data.get("values", {})
        if not isinstance(raw, dict):
            raise ExpforgeError(f"{path}: 'values' must be a table of lists")
        file_values = {str(k): v for k, v in raw.items()}
    else:
        templates = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    merged = {**file_values, **{k: list(v) for k, v in (values or {}).items()}}
    return check_prompt_set(PromptSet(list(templates), merged, str(path)))


def fill_prompts(prompts: PromptSet, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` filled prompts: template and values chosen by a seeded generator (same seed, same prompts)."""
    check_prompt_set(prompts)
    rng = np.random.default_rng(seed)
    filled = []
    for index in range(count):
        template_index = int(rng.integers(len(prompts.templates)))
        template = prompts.templates[template_index]
        names = dict.fromkeys(placeholders(template, prompts.where))
        chosen = {name: str(prompts.values[name][int(rng.integers(len(prompts.values[name])))]) for name in names}
        filled.append(
            {"index": index, "template": template_index, "values": chosen, "prompt": template.format(**chosen)}
        )
    return filled


def check_options(count: int, temperature: float, backend: str) -> None:
    """Bad input before any work: one line each."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ExpforgeError(f"--count: {count!r} is not a positive number of texts")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise ExpforgeError(f"--temperature: {temperature!r} is outside [0, {MAX_TEMPERATURE:g}]")
    if backend not in BACKENDS:
        raise ExpforgeError(f"--backend: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def generate_prompted_text(
    prompts: PromptSet,
    backend: TextBackend,
    output: Path | str,
    manifest: Path | str,
    *,
    count: int,
    temperature: float = 0.8,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fill ``count`` prompts, continue each with ``backend`` and write the corpus and its manifest.

    The corpus is every prompt followed by its continuation, texts separated by a blank line (a file source
    for ``prepare-corpus``); both files are written atomically after the last text, so a failure midway
    writes neither. Returns the summary (also the manifest's header): counts, token usage, seconds.
    """
    check_options(count, temperature, getattr(backend, "name", "?"))
    check_output(output, directory=False, inputs=[], overwrite=overwrite, flag="--output")
    check_output(manifest, directory=False, inputs=[output], overwrite=overwrite, flag="--manifest")
    filled = fill_prompts(prompts, count, seed)
    started = time.perf_counter()
    texts = []
    usage: dict[str, int] = {}
    for item in filled:
        try:
            answer = backend.generate(item["prompt"], temperature=float(temperature), seed=seed + item["index"])
        except ExpforgeError as exc:
            raise ExpforgeError(
                f"{exc} ({item['index']} of {count} texts were generated; no corpus was written)"
            ) from exc
        item["usage"] = answer.usage
        for key, value in answer.usage.items():
            usage[key] = usage.get(key, 0) + int(value)
        texts.append(f"{item['prompt']} {answer.text.strip()}".strip())
    seconds = time.perf_counter() - started
    data = (SEPARATOR.join(texts) + "\n").encode("utf-8")
    summary = {
        "backend": backend.name,
        "count": count,
        "temperature": temperature,
        "seed": seed,
        "templates": len(prompts.templates),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "usage": usage,
        "seconds": round(seconds, 3),
        "texts_per_second": round(count / seconds, 3) if seconds > 0 else None,
    }
    with staged_file(manifest, overwrite=overwrite, flag="--manifest") as staging:
        staging.write_text(json.dumps({**summary, "prompts": filled}, indent=2) + "\n", encoding="utf-8")
    with staged_file(output, overwrite=overwrite, flag="--output") as staging:
        staging.write_bytes(data)
    return summary


class LocalLmBackend:
    """The project's own GPT (a ``train-lm`` checkpoint and its corpus) continuing each prompt, offline."""

    name = "local"

    def __init__(self, model_path: Path | str, corpus_dir: Path | str, *, length: int = 80, device: str = "cpu"):
        from expforge.text.corpus import load_corpus
        from expforge.text.lm_eval import load_lm
        from expforge.train.device import select_device

        if length < 1:
            raise ExpforgeError(f"--length: {length} is below 1")
        self.corpus = load_corpus(corpus_dir)
        self.device = select_device(device)
        self.model, _ = load_lm(model_path, self.corpus, self.device)
        self.length = length

    def generate(self, prompt: str, *, temperature: float, seed: int) -> Generation:
        from expforge.text.sampling import continue_ids

        start = self.corpus.encode(prompt)
        if not start:
            raise ExpforgeError(f"prompt {prompt!r} encodes to no tokens of corpus {self.corpus.corpus_id[:8]}")
        ids = continue_ids(self.model, [start], self.length, temperature, None, seed, self.device)[0]
        return Generation(self.corpus.decode(ids[len(start) :]))
