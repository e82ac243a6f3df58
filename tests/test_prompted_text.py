"""generate-prompted-text: filled templates, the local GPT and Gemini (the Vertex stand-in's GenerateContent,
through the real ``vertexai`` SDK) as backends, the corpus prepare-corpus reads, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expforge.cli import app
from expforge.errors import ExpforgeError
from expforge.text.prepare import prepare_corpus
from expforge.text.prompted import PromptSet, fill_prompts, generate_prompted_text, load_prompt_file

TOML = """prompts = ["The {animal} sat by the {place}", "A {animal} dreams"]
[values]
animal = ["cat", "heron", "fox"]
place = ["river", "mill"]
"""


@pytest.fixture()
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


def test_templates_are_filled_from_seeded_values(prompt_file: Path, tmp_path: Path) -> None:
    prompts = load_prompt_file(prompt_file)
    first, again, other = fill_prompts(prompts, 8, 1), fill_prompts(prompts, 8, 1), fill_prompts(prompts, 8, 2)
    assert first == again and first != other
    assert all("{" not in p["prompt"] for p in first)
    assert {p["values"]["animal"] for p in first} <= {"cat", "heron", "fox"}
    lines = tmp_path / "prompts.txt"
    lines.write_text("# comment\nA {animal} runs\n\nThe end\n", encoding="utf-8")
    assert load_prompt_file(lines, {"animal": ["dog"]}).templates == ["A {animal} runs", "The end"]


@pytest.mark.parametrize(
    ("templates", "values", "message"),
    [
        (["A {colour} dog"], {"animal": ["x"]}, "prompt 1 uses unknown placeholder {colour}; values define animal"),
        ([], {}, "the prompt list is empty"),
        (["A {0} dog"], {}, "expected {name} placeholders"),
    ],
)
def test_bad_prompt_sets(templates: list[str], values: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ExpforgeError, match=message.replace("{", r"\{").replace("}", r"\}")):
        fill_prompts(PromptSet(templates, values), 1, 0)


class Echo:
    name = "local"

    def generate(self, prompt: str, *, temperature: float, seed: int):  # noqa: ANN201
        from expforge.text.prompted import Generation

        return Generation(f"echo {seed}")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"count": 0}, "--count: 0 is not a positive"), ({"count": 2, "temperature": 2.5}, r"--temperature: 2.5")],
)
def test_bad_options_write_nothing(prompt_file: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ExpforgeError, match=message):
        generate_prompted_text(
            load_prompt_file(prompt_file), Echo(), tmp_path / "o.txt", tmp_path / "m.json", **options
        )
    assert not (tmp_path / "o.txt").exists() and not (tmp_path / "m.json").exists()


@pytest.fixture()
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    pytest.importorskip("vertexai.generative_models")
    from expforge.standins.vertex import start_vertex_standin

    with start_vertex_standin() as standin:
        monkeypatch.setenv("EXPFORGE_VERTEX_ENDPOINT", standin.endpoint)
        yield standin


def test_vertex_backend_requests_and_corpus(vertex: object, prompt_file: Path, tmp_path: Path) -> None:
    from expforge.standins.vertex_prediction import answer_for
    from expforge.text.prompted_vertex import VertexGeminiBackend

    backend = VertexGeminiBackend(
        "gemini-2.0-flash-001", region="europe-west4", safety={"HARM_CATEGORY_HATE_SPEECH": "BLOCK_ONLY_HIGH"},
        max_output_tokens=12, project="proj",
    )  # fmt: skip
    output, manifest = tmp_path / "prompted.txt", tmp_path / "manifest.json"
    summary = generate_prompted_text(
        load_prompt_file(prompt_file), backend, output, manifest, count=30, temperature=0.7, seed=3
    )
    requests = vertex.requests_for("GenerateContent")  # type: ignore[attr-defined]
    assert len(requests) == 30 and not vertex.unimplemented  # type: ignore[attr-defined]
    used = json.loads(manifest.read_text())["prompts"]
    model = "projects/proj/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001"
    for request, item in zip(requests, used, strict=True):
        assert request.model == model and request.contents[0].parts[0].text == item["prompt"]
        assert request.generation_config.temperature == pytest.approx(0.7)
        config = request.generation_config
        assert config.max_output_tokens == 12 and config.seed == 3 + item["index"]
        assert request.safety_settings[0].threshold.name == "BLOCK_ONLY_HIGH"
    texts = output.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    assert texts == [f"{p['prompt']} {answer_for(model, p['prompt'], 0.7, 12)}" for p in used]
    assert summary["usage"]["total_tokens"] == sum(p["usage"]["total_tokens"] for p in used) > 0
    corpus = prepare_corpus([output], tmp_path / "corpus", val_fraction=0.2, seed=0)  # the layout it reads
    assert corpus["counts"]["train_tokens"] > 0 and corpus["counts"]["val_tokens"] > 0


def test_vertex_retries_then_fails_naming_the_last_error(vertex: object, prompt_file: Path, tmp_path: Path) -> None:
    from expforge.standins.vertex_prediction import Predictions
    from expforge.text.prompted_vertex import VertexGeminiBackend

    sleeps: list[float] = []
    backend = VertexGeminiBackend(retries=3, backoff_s=0.5, sleep=sleeps.append)
    predictions = vertex.service(Predictions)  # type: ignore[attr-defined]
    predictions.fail_next = 2  # two transient failures: retried, then answered
    prompts = load_prompt_file(prompt_file)
    generate_prompted_text(prompts, backend, tmp_path / "a.txt", tmp_path / "a.json", count=2)
    assert sleeps == [0.5, 1.0] and len(vertex.requests_for("GenerateContent")) == 4  # type: ignore[attr-defined]
    predictions.fail_always = True
    with pytest.raises(ExpforgeError, match=r"failed after 4 attempts; last error: 503 .*unavailable.*0 of 2 texts"):
        generate_prompted_text(prompts, backend, tmp_path / "b.txt", tmp_path / "b.json", count=2)
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "b.json").exists()


def test_vertex_refuses_a_model_name(vertex: object, prompt_file: Path, tmp_path: Path) -> None:
    from expforge.text.prompted_vertex import VertexGeminiBackend

    with pytest.raises(ExpforgeError, match=r"--model: 'gpt-4' is not a Gemini model id"):
        VertexGeminiBackend("gpt-4")
    args = ["generate-prompted-text", "--prompts", str(prompt_file), "--backend", "vertex", "--output"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "x.txt"), "--vertex-model", "palm"])
    assert result.exit_code == 2 and "--model: 'palm'" in result.output


def test_local_backend_continues_prompts_with_the_project_gpt(prompt_file: Path, tmp_path: Path) -> None:
    from expforge.text.lm_trainer import train_lm

    text = "The cat sat by the river.\nA heron dreams of the mill.\nThe fox ran.\n" * 40
    (tmp_path / "source.txt").write_text(text, encoding="utf-8")
    prepare_corpus([tmp_path / "source.txt"], tmp_path / "corpus", val_fraction=0.2, seed=0)
    tiny = {"context": 16, "layers": 1, "heads": 2, "width": 32, "batch_size": 8, "eval_batches": 2}
    train_lm(tmp_path / "corpus", tmp_path / "lm.pt", steps=5, eval_interval=5, device="cpu", **tiny)
    output = tmp_path / "out.txt"
    args = ["generate-prompted-text", "--prompts", str(prompt_file), "--output", str(output), "--count", "3"]
    local = ["--model", str(tmp_path / "lm.pt"), "--corpus", str(tmp_path / "corpus"), "--length", "10"]
    result = CliRunner().invoke(app, [*args, *local, "--seed", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out.txt.manifest.json").read_text())
    texts = output.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    assert len(texts) == 3 and all(t.startswith(p["prompt"]) for t, p in zip(texts, manifest["prompts"], strict=True))
    assert all(len(t) > len(p["prompt"]) for t, p in zip(texts, manifest["prompts"], strict=True))
    again = CliRunner().invoke(app, [*args, *local, "--seed", "4", "--output", str(tmp_path / "again.txt")])
    assert again.exit_code == 0 and (tmp_path / "again.txt").read_text() == output.read_text()  # seeded
