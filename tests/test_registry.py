"""The model registry, local and Vertex AI (over the wire: the real SDK against the Vertex stand-in, model files in
fake-gcs-server): versions, aliases that live on one version, the champion/challenger policy, the evaluation
required (missing → one clear error, nothing registered), the register-model component and the CLI."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl
from typer.testing import CliRunner

from expforge.errors import ExpforgeError
from expforge.registry.base import NotRegisteredError, load_evaluation
from expforge.registry.local import LocalRegistry
from expforge.registry.select import open_registry, register_with_policy

BUCKET = "expforge-models"
PROJECT = "expforge-local"
REGION = "us-central1"


def evaluation(accuracy: float) -> dict[str, Any]:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "labels": [0, 1], "confusion_matrix": [[3, 1], [0, 4]]}


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"model bytes " + uuid.uuid4().bytes)
    return path


@pytest.fixture(scope="module")
def gcp() -> Iterator[SimpleGcp]:
    """fake-gcs-server (bucket created) and the Vertex AI stand-in, for the whole module."""
    from expforge.standins.gcs import start_fake_gcs
    from expforge.standins.vertex import start_vertex_standin, trust_certificate

    with start_fake_gcs(buckets=[BUCKET], project=PROJECT) as gcs, start_vertex_standin() as vertex:
        trust_certificate(vertex.ca_cert)
        yield SimpleGcp(gcs, vertex)


class SimpleGcp:
    def __init__(self, gcs: Any, vertex: Any) -> None:
        self.gcs, self.vertex = gcs, vertex

    def blobs(self) -> dict[str, bytes]:
        client = self.gcs.client()
        return {blob.name: blob.download_as_bytes() for blob in client.list_blobs(BUCKET)}


@pytest.fixture
def vertex_env(gcp: SimpleGcp, monkeypatch: pytest.MonkeyPatch) -> SimpleGcp:
    """The variables a register-model task gets on Vertex, pointed at the stand-ins."""
    for key, value in {
        **gcp.gcs.env(),
        **gcp.vertex.env(),
        "EXPFORGE_REGISTRY": "vertex",
        "EXPFORGE_GCP_PROJECT": PROJECT,
        "EXPFORGE_GCP_REGION": REGION,
        "EXPFORGE_MODEL_BUCKET": f"gs://{BUCKET}/registry",
        "EXPFORGE_SERVING_IMAGE": "expforge/serve:test",
    }.items():
        monkeypatch.setenv(key, value)
    return gcp


@pytest.fixture(params=["local", "vertex"])
def registry(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each semantics test runs against both backends, chosen the way components choose them."""
    if request.param == "vertex":
        request.getfixturevalue("vertex_env")
    else:
        monkeypatch.setenv("EXPFORGE_REGISTRY_ROOT", str(tmp_path / "registry"))
    return open_registry(request.param)


@pytest.fixture
def name() -> str:
    """A fresh model name per test (the Vertex stand-in lives for the whole module)."""
    return f"digits-{uuid.uuid4().hex[:8]}"


def aliases_by_version(registry: Any, name: str) -> dict[str, list[str]]:
    return {v.version_id: v.aliases for v in registry.list_versions(name)}


# --- semantics, on both backends ---------------------------------------------------------------------------------


def test_champion_moves_to_the_better_version_and_challenger_is_the_newest(
    registry: Any, name: str, model_file: Path
) -> None:
    first = register_with_policy(registry, name, model_file, evaluation=evaluation(0.80))
    assert (first.version_id, first.aliases) == ("1", ["challenger", "champion", "default"])
    worse = register_with_policy(registry, name, model_file, evaluation=evaluation(0.70))
    assert (worse.version_id, worse.aliases) == ("2", ["challenger"])
    assert aliases_by_version(registry, name) == {"1": ["champion", "default"], "2": ["challenger"]}
    better = register_with_policy(registry, name, model_file, evaluation=evaluation(0.90), labels={"source": "fonts"})
    assert better.aliases == ["challenger", "champion", "default"]
    assert aliases_by_version(registry, name) == {"1": [], "2": [], "3": ["challenger", "champion", "default"]}
    tie = register_with_policy(registry, name, model_file, evaluation=evaluation(0.90))
    assert registry.get(name, "champion").version_id == tie.version_id == "4"  # a tie goes to the newer model

    champion = registry.get(name, "champion")
    assert champion.evaluation == evaluation(0.90) and champion.metric() == 0.90
    assert registry.get(name, "3").labels == {"source": "fonts"}
    assert [v.metric() for v in registry.list_versions(name)] == [0.80, 0.70, 0.90, 0.90]
    assert registry.get(name).version_id == "4"  # no ref: the default version


def test_aliases_live_on_one_version(registry: Any, name: str, model_file: Path) -> None:
    for accuracy in (0.5, 0.6, 0.7):
        registry.register(name, model_file, evaluation=evaluation(accuracy))
    assert aliases_by_version(registry, name) == {"1": ["default"], "2": [], "3": []}
    registry.set_alias(name, "2", "champion")
    moved = registry.set_alias(name, "3", "champion")
    assert moved.aliases == ["champion"]
    assert aliases_by_version(registry, name) == {"1": ["default"], "2": [], "3": ["champion"]}
    registry.set_alias(name, "3", "default")
    assert registry.get(name).version_id == "3"
    registry.remove_alias(name, "champion")
    registry.remove_alias(name, "champion")  # already gone: nothing to do
    assert aliases_by_version(registry, name) == {"1": [], "2": [], "3": ["default"]}

    with pytest.raises(NotRegisteredError, match="has no version with alias 'champion'"):
        registry.get(name, "champion")
    with pytest.raises(NotRegisteredError, match="has no version '9'|has no version 9"):
        registry.get(name, "9")
    with pytest.raises(ExpforgeError, match="alias 'default' cannot be removed"):
        registry.remove_alias(name, "default")
    with pytest.raises(ExpforgeError, match="alias 'Champion'"):
        registry.set_alias(name, "1", "Champion")
    with pytest.raises(ExpforgeError, match="alias '7'"):
        registry.set_alias(name, "1", "7")
    with pytest.raises(NotRegisteredError):
        registry.set_alias(name, "9", "champion")
    assert registry.list_versions("never-registered") == []
    assert name in registry.list_models()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "evaluation: missing; a model version is registered only together with its evaluation"),
        ({}, "evaluation: empty; expected the evaluation metrics"),
        ({"macro_f1": 0.8}, "evaluation: has no 'accuracy'"),
        ({"accuracy": 1.5}, r"evaluation: accuracy is 1.5; expected a number in \[0, 1\]"),
        ({"accuracy": "high"}, "evaluation: accuracy is 'high'"),
    ],
)
def test_missing_evaluation_registers_nothing(
    registry: Any, name: str, model_file: Path, bad: Any, message: str, request: pytest.FixtureRequest
) -> None:
    register_with_policy(registry, name, model_file, evaluation=evaluation(0.8))
    before = registry.list_versions(name)
    gcp = request.getfixturevalue("gcp") if registry.kind == "vertex" else None
    blobs = gcp.blobs() if gcp else None
    uploads = len(gcp.vertex.requests_for("UploadModel")) if gcp else None

    with pytest.raises(ExpforgeError, match=message) as raised:
        register_with_policy(registry, name, model_file, evaluation=bad)
    assert "\n" not in str(raised.value)
    with pytest.raises(ExpforgeError, match=message):
        registry.register(name, model_file, evaluation=bad, aliases=["champion"])

    assert registry.list_versions(name) == before
    assert registry.get(name, "champion").version_id == "1"
    if gcp:
        assert gcp.blobs() == blobs and len(gcp.vertex.requests_for("UploadModel")) == uploads
    else:
        assert sorted(p.name for p in (registry.root / "models" / name).iterdir()) == [".lock", "1"]


def test_bad_names_labels_and_artifacts_are_refused(registry: Any, model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ExpforgeError, match="model_name 'bad name'"):
        registry.register("bad name", model_file, evaluation=evaluation(0.5))
    with pytest.raises(ExpforgeError, match="label key 'Team'"):
        registry.register("m", model_file, evaluation=evaluation(0.5), labels={"Team": "x"})
    with pytest.raises(ExpforgeError, match=r"missing\.joblib: model artifact not found"):
        registry.register("m", tmp_path / "missing.joblib", evaluation=evaluation(0.5))
    assert registry.list_versions("m") == []


# --- the local registry --------------------------------------------------------------------------------------------


def test_local_copies_files_and_survives_reopening(tmp_path: Path, model_file: Path) -> None:
    directory = tmp_path / "saved-model"
    (directory / "sub").mkdir(parents=True)
    (directory / "weights.bin").write_bytes(b"\x00\x01")
    (directory / "sub" / "config.json").write_text("{}")
    local = LocalRegistry(tmp_path / "reg")
    one = local.register("m", model_file, evaluation=evaluation(0.5), metadata={"run": "r1"})
    two = local.register("m", directory, evaluation=evaluation(0.6), aliases=["champion", "champion"])
    model_file.write_bytes(b"changed later")  # the registry holds its own copy
    assert Path(one.uri).read_bytes().startswith(b"model bytes ")
    assert Path(one.uri) == tmp_path / "reg" / "models" / "m" / "1" / "model.joblib"
    assert (Path(two.uri) / "sub" / "config.json").read_text() == "{}" and two.aliases == ["champion"]
    again = LocalRegistry(tmp_path / "reg")
    assert again.get("m", "1").metadata == {"run": "r1"} and again.get("m", "champion").version_id == "2"
    assert not [p for p in (tmp_path / "reg" / "models" / "m").iterdir() if p.name.startswith(".staging")]


def _register_many(root: str, accuracies: list[float], artifact: str) -> list[str]:
    registry = LocalRegistry(root)
    return [register_with_policy(registry, "m", artifact, evaluation={"accuracy": a}).version_id for a in accuracies]


def test_local_concurrent_registrations_get_distinct_versions_and_one_champion(
    tmp_path: Path, model_file: Path
) -> None:
    batches = [[0.50, 0.91, 0.62], [0.88, 0.55, 0.97], [0.71, 0.64, 0.93], [0.60, 0.96, 0.52]]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(batches)) as pool:
        results = pool.starmap(_register_many, [(str(tmp_path / "reg"), b, str(model_file)) for b in batches])
    ids = sorted(int(v) for batch in results for v in batch)
    assert ids == list(range(1, 13))
    versions = LocalRegistry(tmp_path / "reg").list_versions("m")
    champions = [v for v in versions if "champion" in v.aliases]
    assert len(champions) == 1 and champions[0].metric() == 0.97
    assert sum("challenger" in v.aliases for v in versions) == 1


def test_load_evaluation_reads_the_evaluate_output(tmp_path: Path) -> None:
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "n": 400}))
    assert load_evaluation(tmp_path / "evaluation") == {"accuracy": 0.9, "n": 400}
    with pytest.raises(ExpforgeError, match=r"empty/metrics\.json: not found; registering a model needs"):
        load_evaluation(tmp_path / "empty")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ExpforgeError, match="broken.json: not valid JSON"):
        load_evaluation(tmp_path / "broken.json")


# --- Vertex specifics ----------------------------------------------------------------------------------------------


def test_vertex_versions_evaluations_and_files_over_the_wire(
    vertex_env: SimpleGcp, name: str, model_file: Path
) -> None:
    registry = open_registry()  # EXPFORGE_REGISTRY=vertex
    first = register_with_policy(registry, name, model_file, evaluation=evaluation(0.8), metadata={"run": "r1"})
    second = register_with_policy(registry, name, model_file, evaluation=evaluation(0.9), labels={"team": "digits"})

    uploads = vertex_env.vertex.requests_for("UploadModel")[-2:]
    assert not uploads[0].parent_model and uploads[1].parent_model == first.resource.split("@")[0]
    assert uploads[1].model.display_name == name
    assert uploads[1].model.container_spec.image_uri == "expforge/serve:test"
    assert dict(uploads[1].model.labels) == {"team": "digits"}
    assert json.loads(uploads[0].model.version_description) == {"run": "r1"}
    imported = vertex_env.vertex.requests_for("ImportModelEvaluation")[-1]
    assert imported.parent == second.resource
    assert imported.model_evaluation.metrics_schema_uri.endswith("classification_metrics_1.0.0.yaml")
    metrics = type(imported.model_evaluation).to_dict(imported.model_evaluation)["metrics"]
    assert metrics["accuracy"] == 0.9 and metrics["confusionMatrix"]["rows"] == [[3, 1], [0, 4]]
    assert vertex_env.vertex.unimplemented == []

    assert second.uri.startswith(f"gs://{BUCKET}/registry/models/{name}/")
    assert vertex_env.blobs()[f"{second.uri.removeprefix(f'gs://{BUCKET}/')}/model.joblib"] == model_file.read_bytes()
    assert registry.get(name, "champion").evaluation == evaluation(0.9)  # integers stay integers
    assert registry.get(name, "1").aliases == []


def test_vertex_upload_failure_registers_nothing(vertex_env: SimpleGcp, name: str, model_file: Path) -> None:
    registry = open_registry("vertex", bucket="gs://no-such-bucket")
    uploads = len(vertex_env.vertex.requests_for("UploadModel"))
    with pytest.raises(ExpforgeError, match="upload to gs://no-such-bucket/models/.* failed"):
        register_with_policy(registry, name, model_file, evaluation=evaluation(0.8))
    assert len(vertex_env.vertex.requests_for("UploadModel")) == uploads
    assert registry.list_versions(name) == []


class _AliasesDown:
    """A ``ModelRegistry`` helper whose MergeVersionAliases fails (everything else is the real SDK, on the wire)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.real, attribute)

    def add_version_aliases(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("alias service unavailable")


def test_vertex_failure_after_upload_deletes_the_version_and_its_files(
    vertex_env: SimpleGcp, name: str, model_file: Path
) -> None:
    from expforge.registry.vertex import VertexRegistry

    class FailingAliases(VertexRegistry):
        def _registry(self, model: Any) -> Any:
            return _AliasesDown(super()._registry(model))

    good = open_registry("vertex")
    failing = FailingAliases.from_environment()
    with pytest.raises(ExpforgeError, match=r"MergeVersionAliases for .* failed: alias service unavailable"):
        register_with_policy(failing, name, model_file, evaluation=evaluation(0.8))
    assert good.list_versions(name) == [] and not any(f"/{name}/" in b for b in vertex_env.blobs())

    register_with_policy(good, name, model_file, evaluation=evaluation(0.8))
    blobs = vertex_env.blobs()
    with pytest.raises(ExpforgeError, match="alias service unavailable"):
        register_with_policy(failing, name, model_file, evaluation=evaluation(0.95))
    assert [(v.version_id, v.aliases) for v in good.list_versions(name)] == [
        ("1", ["challenger", "champion", "default"])
    ]
    assert vertex_env.blobs() == blobs
    assert vertex_env.vertex.requests_for("DeleteModelVersion")[-1].name.endswith("@2")


def test_vertex_settings_missing_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("EXPFORGE_GCP_PROJECT", "EXPFORGE_GCP_REGION"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ExpforgeError, match="EXPFORGE_GCP_PROJECT: not set; the Vertex registry needs"):
        open_registry("vertex")
    with pytest.raises(ExpforgeError, match="registry 'mlflow': unknown backend; expected one of local, vertex"):
        open_registry("mlflow")


# --- the component and the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real model and the evaluate step's real output for it."""
    from expforge.evaluate.classification import evaluate_model
    from expforge.train.sklearn_trainer import train_sklearn

    directory = tmp_path_factory.mktemp("trained")
    train_sklearn([tiny_dataset], tiny_dataset, directory / "model.joblib", epochs=2, seed=0)
    evaluate_model(directory / "model.joblib", tiny_dataset, split="test", output=directory / "evaluation")
    return directory / "model.joblib", directory / "evaluation"


def _component_call(model: Path, evaluation_dir: Path, out: Path, **params: Any) -> Callable[[], Any]:
    from expforge.components.register_model import register_model

    registered = dsl.Artifact(name="registered", uri=str(out))
    return lambda: (
        register_model.python_func(
            model=dsl.Model(name="model", uri=str(model)),
            evaluation=dsl.Artifact(name="evaluation", uri=str(evaluation_dir)),
            registered=registered,
            **params,
        ),
        registered,
    )


def test_component_registers_with_the_evaluation(
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, evaluation_dir = trained
    monkeypatch.setenv("EXPFORGE_REGISTRY_ROOT", str(tmp_path / "registry"))
    outputs, registered = _component_call(model, evaluation_dir, tmp_path / "out1", model_name="mnist-digits")()
    assert (outputs.version_id, outputs.aliases) == ("1", ["challenger", "champion", "default"])
    written = json.loads((tmp_path / "out1" / "version.json").read_text())
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    assert written["evaluation"] == metrics and written["metadata"]["model_uri"] == str(model)
    assert registered.metadata["version_id"] == "1" and registered.metadata["registry"] == "local"
    assert Path(written["uri"]).read_bytes() == model.read_bytes()

    empty = tmp_path / "no-evaluation"
    empty.mkdir()
    with pytest.raises(SystemExit) as exited:
        _component_call(model, empty, tmp_path / "out2")()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("expforge: error: ") and err.endswith(
        "no-evaluation/metrics.json: not found; registering a model needs its evaluation "
        "(the evaluate step's metrics.json)"
    )
    assert len(LocalRegistry(tmp_path / "registry").list_versions("mnist-digits")) == 1
    assert not (tmp_path / "out2").exists()


def test_component_registers_on_vertex(
    trained: tuple[Path, Path], vertex_env: SimpleGcp, name: str, tmp_path: Path
) -> None:
    model, evaluation_dir = trained
    outputs, registered = _component_call(model, evaluation_dir, tmp_path / "o", model_name=name, registry="vertex")()
    assert outputs.version_id == "1" and "champion" in outputs.aliases
    assert registered.metadata["resource"].startswith(f"projects/{PROJECT}/locations/{REGION}/models/")
    assert registered.metadata["uri"].startswith(f"gs://{BUCKET}/registry/models/{name}/")


def test_cli_register_list_show_promote(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from expforge.cli import app

    model, evaluation_dir = trained
    runner = CliRunner()
    root = ["--registry", "local", "--root", str(tmp_path / "reg")]
    for _ in range(2):
        done = runner.invoke(
            app,
            [
                "registry",
                "register",
                "--model",
                str(model),
                "--evaluation",
                str(evaluation_dir),
                "--name",
                "digits",
                *root,
            ],
        )
        assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["registry", "list", "digits", *root])
    assert (
        listed.exit_code == 0
        and "digits v1" in listed.output
        and "aliases=challenger,champion,default" in listed.output
    )
    promoted = runner.invoke(app, ["registry", "promote", "digits", "1", *root])
    assert promoted.exit_code == 0 and promoted.output.strip() == "digits v1: aliases champion"
    shown = json.loads(runner.invoke(app, ["registry", "show", "digits", *root]).output)
    assert shown["version_id"] == "1" and shown["aliases"] == ["champion"]
    assert json.loads(runner.invoke(app, ["registry", "list", "--json", *root]).output) == ["digits"]

    missing = runner.invoke(app, ["registry", "show", "digits", "challenger-x", *root])
    assert missing.exit_code == 2
    assert missing.output.strip() == "expforge: error: model 'digits' has no version with alias 'challenger-x'"
    bad = runner.invoke(app, ["registry", "register", "--model", str(model), "--evaluation", str(tmp_path), *root])
    assert bad.exit_code == 2 and "metrics.json: not found" in bad.output
    assert len(LocalRegistry(tmp_path / "reg").list_versions("digits")) == 2
