"""Trust at the step library's edges: a model file never runs code when loaded, an output never clobbers what the
step did not create, and hostile or careless input is one clear line.

Every attack here is real: pickles whose ``__reduce__`` writes a marker file (the marker's absence proves nothing
ran, and a control load in a child process proves the payload does run when unpickled), real symlinks, FIFOs
and a real full file system (a small tmpfs, mounted when the test runs as root).
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from expforge.cli import app
from expforge.data.manifest import read_manifest, write_dataset
from expforge.data.mnist import bootstrap_mnist
from expforge.drift.check import check_drift
from expforge.errors import ExpforgeError
from expforge.evaluate.classification import evaluate_model
from expforge.registry.local import LocalRegistry
from expforge.train.classifier import load_classifier
from expforge.train.sklearn_trainer import MODEL_FORMAT, MODEL_FORMAT_VERSION, load_model, predict, train_sklearn

EVALUATION = {"accuracy": 0.9, "macro_f1": 0.89}


class Payload:
    """Unpickling this runs ``open(marker, 'w').write('ran')``: the shape of the attack in the issue."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def write_evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"format": MODEL_FORMAT, "estimator": Payload(marker)}, protocol=4))
    return path


def assert_payload_is_live(tmp_path: Path) -> None:
    """Control: the same kind of file, unpickled in a child process, does write its marker (so the test can fail)."""
    probe = tmp_path / "control-marker"
    data = write_evil_pickle(tmp_path / "control.pkl", probe).read_bytes()
    (tmp_path / "control.pkl").unlink()
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, check=True)
    assert probe.read_text() == "ran"
    probe.unlink()


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """300 real bundled MNIST digits and a logreg model trained on them for one epoch."""
    root = tmp_path_factory.mktemp("trust")
    dataset = root / "mnist"
    bootstrap_mnist(300, dataset, source="bundled", seed=0)
    model = train_sklearn([dataset], dataset, root / "model.skops", epochs=1).model_path
    return dataset, model


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    assert_payload_is_live(tmp_path)
    marker = tmp_path / "marker"
    path = write_evil_pickle(tmp_path / "model.joblib", marker)
    return path, marker


def one_line(result: object) -> str:
    output = result.output.strip()  # type: ignore[attr-defined]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    assert len(output.splitlines()) == 1, output
    assert output.startswith("expforge: error: ")
    return output


# --- 1. loading a model never runs code ---------------------------------------------------------------------------


def test_evaluate_refuses_a_pickle_before_unpickling_it(real, evil, tmp_path: Path) -> None:
    dataset, _ = real
    path, marker = evil
    with pytest.raises(ExpforgeError, match=r"a pickle/joblib file, refused unread.*convert-model .* --trust-pickle"):
        evaluate_model(path, dataset, output=tmp_path / "eval")
    line = one_line(
        CliRunner().invoke(
            app, ["evaluate", "--model", str(path), "--dataset", str(dataset), "--output", str(tmp_path / "eval")]
        )
    )
    assert "refused unread" in line
    assert not marker.exists()
    assert not (tmp_path / "eval").exists()


def test_drift_check_refuses_a_pickle_before_unpickling_it(real, evil, tmp_path: Path) -> None:
    dataset, _ = real
    path, marker = evil
    with pytest.raises(ExpforgeError, match="refused unread"):
        check_drift(dataset, dataset, model=path, sample_size=50)
    args = [
        "drift-check",
        "--reference",
        str(dataset),
        "--current",
        str(dataset),
        "--model",
        str(path),
        "--output",
        str(tmp_path / "drift"),
        "--sample-size",
        "50",
    ]
    assert "refused unread" in one_line(CliRunner().invoke(app, args))
    assert not marker.exists()
    assert not (tmp_path / "drift").exists()


def test_registry_refuses_a_pickle_and_registers_nothing(evil, tmp_path: Path) -> None:
    path, marker = evil
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(ExpforgeError, match="a pickle/joblib file, refused"):
        registry.register("m", path, evaluation=EVALUATION)
    directory = tmp_path / "artifact"
    directory.mkdir()
    write_evil_pickle(directory / "weights.bin", marker)
    with pytest.raises(ExpforgeError, match=r"weights\.bin: a pickle/joblib file, refused"):
        registry.register("m", directory, evaluation=EVALUATION)
    assert registry.list_models() == []
    assert not marker.exists()


def test_torch_checkpoint_with_a_payload_is_refused_by_weights_only(real, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    dataset, _ = real
    marker = tmp_path / "marker"
    path = tmp_path / "cnn.pt"
    torch.save({"format": "expforge.checkpoint", "model": Payload(marker)}, path)
    with pytest.raises(ExpforgeError, match="not a loadable expforge checkpoint"):
        load_classifier(path)
    with pytest.raises(ExpforgeError, match="not a loadable expforge checkpoint"):
        evaluate_model(path, dataset, output=tmp_path / "eval")
    assert not marker.exists()


def test_skops_model_with_a_type_outside_the_list_is_refused_unbuilt(real, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    dataset, _ = real
    path = tmp_path / "other.skops"
    bundle = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "estimator": LogisticRegression()}
    skops.io.dump(bundle, path)
    assert skops.io.get_untrusted_types(file=path) == []  # skops itself would trust it: our list is stricter
    with pytest.raises(
        ExpforgeError, match=r"untrusted type\(s\) sklearn\.linear_model\._logistic\.LogisticRegression"
    ):
        load_model(path)
    with pytest.raises(ExpforgeError, match="untrusted type"):
        evaluate_model(path, dataset, output=tmp_path / "eval")


def test_fifo_or_directory_as_model_is_refused_without_opening_it(real, tmp_path: Path) -> None:
    dataset, _ = real
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ExpforgeError, match=r"model\.fifo: not a regular file"):
        evaluate_model(fifo, dataset, output=tmp_path / "eval")  # would block forever if it were opened
    with pytest.raises(ExpforgeError, match="is a directory; expected a model file"):
        load_classifier(tmp_path)


def test_old_joblib_model_converts_only_when_trusted_explicitly(real, tmp_path: Path) -> None:
    import joblib

    dataset, model = real
    bundle = load_model(model)
    old = tmp_path / "old.joblib"
    joblib.dump(bundle, old)  # what expforge wrote before it used skops
    new = tmp_path / "new.skops"
    line = one_line(CliRunner().invoke(app, ["convert-model", str(old), "--output", str(new)]))
    assert "pass --trust-pickle only for a file whose origin you trust" in line
    assert not new.exists()
    result = CliRunner().invoke(app, ["convert-model", str(old), "--output", str(new), "--trust-pickle"])
    assert result.exit_code == 0, result.output
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    images[:, 10:18, 12:16] = 255
    assert np.array_equal(predict(load_model(new), images), predict(bundle, images))
    assert load_model(new)["params"] == bundle["params"]
    again = CliRunner().invoke(app, ["convert-model", str(old), "--output", str(new), "--trust-pickle"])
    assert "file already exists; pass --overwrite" in one_line(again)


def test_registry_copies_no_symlink_or_device_and_serves_no_repointed_champion(real, tmp_path: Path) -> None:
    _, model = real
    registry = LocalRegistry(tmp_path / "registry")
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    link = tmp_path / "link.skops"
    link.symlink_to(model)
    with pytest.raises(ExpforgeError, match=r"link\.skops: a symbolic link"):
        registry.register("m", link, evaluation=EVALUATION)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "model.skops").write_bytes(model.read_bytes())
    (tree / "leak").symlink_to(secret)
    with pytest.raises(ExpforgeError, match=r"leak: a symbolic link"):
        registry.register("m", tree, evaluation=EVALUATION)
    (tree / "leak").unlink()
    os.mkfifo(tree / "pipe")
    with pytest.raises(ExpforgeError, match=r"pipe: not a regular file"):
        registry.register("m", tree, evaluation=EVALUATION)
    (tree / "pipe").unlink()
    with pytest.raises(ExpforgeError, match="not a regular file"):
        registry.register("m", Path("/dev/null"), evaluation=EVALUATION)
    assert registry.list_models() == []

    version = registry.register("m", model, evaluation=EVALUATION, aliases=["champion"])
    assert Path(version.uri).read_bytes() == model.read_bytes()
    with sqlite3.connect(tmp_path / "registry" / "registry.sqlite") as db:  # a local user edits the catalogue
        db.execute("UPDATE versions SET uri = ? WHERE name = 'm'", (str(secret),))
    with pytest.raises(ExpforgeError, match=r"points at .*secret\.txt, outside its registry directory"):
        registry.get("m", "champion")


# --- 3. outputs that cannot be clobbered --------------------------------------------------------------------------


def test_evaluate_refuses_a_non_empty_output_and_overwrites_only_when_asked(real, tmp_path: Path) -> None:
    dataset, model = real
    output = tmp_path / "eval"
    output.mkdir()
    (output / "notes.txt").write_text("someone's notes")
    args = ["evaluate", "--model", str(model), "--dataset", str(dataset), "--output", str(output)]
    assert "output directory already exists and is not empty; pass --overwrite" in one_line(
        CliRunner().invoke(app, args)
    )
    assert (output / "notes.txt").read_text() == "someone's notes"
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in output.iterdir()) == [
        "classification_report.txt",
        "confusion_matrix.png",
        "metrics.json",
        "report.md",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no staging or backup left


def test_a_regular_file_where_the_output_directory_goes_is_kept(real, tmp_path: Path) -> None:
    dataset, model = real
    output = tmp_path / "results"
    output.write_text("precious")
    with pytest.raises(ExpforgeError, match="is a regular file where an output directory goes"):
        evaluate_model(model, dataset, output=output)
    assert output.read_text() == "precious"


def test_drift_output_equal_to_or_above_its_reference_never_destroys_it(real, tmp_path: Path) -> None:
    dataset, _ = real
    before = read_manifest(dataset)
    for output, extra in [(dataset, []), (dataset, ["--overwrite"]), (dataset.parent, ["--overwrite"])]:
        args = ["drift-check", "--reference", str(dataset), "--current", str(dataset), "--output", str(output)]
        line = one_line(CliRunner().invoke(app, [*args, *extra]))
        assert f"is or contains the input {dataset}" in line
    link = tmp_path / "link-to-dataset"
    link.symlink_to(dataset)  # the same directory under another name
    with pytest.raises(ExpforgeError, match="is or contains the input"):
        check_drift(dataset, dataset, output=link / ".", sample_size=50, overwrite=True)
    with pytest.raises(ExpforgeError, match=r"lies inside the input .*pass --overwrite"):
        check_drift(dataset, dataset, output=dataset / "drift", sample_size=50)
    assert read_manifest(dataset) == before
    assert not (dataset / "drift").exists()


def test_train_sklearn_refuses_an_existing_model_file_and_a_dataset_as_output(real, tmp_path: Path) -> None:
    dataset, _ = real
    target = tmp_path / "model.skops"
    target.write_bytes(b"previous model")
    args = ["train-sklearn", "--train", str(dataset), "--val", str(dataset), "--epochs", "1"]
    assert "file already exists; pass --overwrite" in one_line(
        CliRunner().invoke(app, [*args, "--model-out", str(target)])
    )
    assert target.read_bytes() == b"previous model"
    line = one_line(CliRunner().invoke(app, [*args, "--model-out", str(dataset / "labels.csv"), "--overwrite"]))
    assert f"lies inside the input {dataset} and exists; replacing it would change that input" in line
    result = CliRunner().invoke(app, [*args, "--model-out", str(target), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_model(target)["format"] == MODEL_FORMAT


def test_bootstrap_mnist_twice_refuses_then_overwrites(tmp_path: Path) -> None:
    output = tmp_path / "mnist"
    args = ["bootstrap-mnist", "--limit", "50", "--source", "bundled", "--output", str(output)]
    assert CliRunner().invoke(app, args).exit_code == 0
    (output / "mine.txt").write_text("keep me")
    assert "already exists and is not empty" in one_line(CliRunner().invoke(app, args))
    assert (output / "mine.txt").exists()
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert not (output / "mine.txt").exists()


def test_an_empty_existing_output_directory_is_taken_over(tmp_path: Path) -> None:
    """What a KFP orchestrator prepares for an output: an empty directory. It must keep working."""
    output = tmp_path / "prepared"
    output.mkdir()
    items = [(np.zeros((28, 28), dtype=np.uint8), 1, "train", {})]
    write_dataset(output, items)
    assert [row.label for row in read_manifest(output)] == [1]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


def test_disk_full_is_one_line_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        rng = np.random.default_rng(0)
        items = [(rng.integers(0, 256, (28, 28), dtype=np.uint8), i % 10, "train", {}) for i in range(400)]
        with pytest.raises(ExpforgeError, match=r"data: writing failed \(No space left on device\); nothing was"):
            write_dataset(disk / "data", items)
        assert list(disk.iterdir()) == []
        with pytest.raises(ExpforgeError, match="No space left on device"):
            skops_target = disk / "big.skops"
            from expforge.atomic import staged_file

            with staged_file(skops_target) as staging:
                staging.write_bytes(b"x" * 200_000)
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- 9, 10, 12. bounds, one-line errors, datasets read on resolved paths -----------------------------------------


def _dataset_with_rows(root: Path, rows: list[str], files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    (root / "images").mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "labels.csv").write_text("path,label,split\n" + "".join(f"{row}\n" for row in rows))
    return root


def _png(mode: str, size: tuple[int, int] = (28, 28)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _load_error(dataset: Path) -> str:
    from expforge.data.manifest import load_arrays

    with pytest.raises(ExpforgeError) as caught:
        load_arrays(dataset, ["train"])
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_dataset_rows_are_checked_on_resolved_paths(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png("L"))
    linked = _dataset_with_rows(tmp_path / "linked", ["images/a.png,1,train"], {})
    (linked / "images" / "a.png").symlink_to(outside)
    assert f"resolves to {outside}, outside the dataset directory" in _load_error(linked)

    twice = _dataset_with_rows(
        tmp_path / "twice", ["images/a.png,1,train", "./images/a.png,2,train"], {"images/a.png": _png("L")}
    )
    assert "path './images/a.png' is listed twice (as 'images/a.png')" in _load_error(twice)
    escaping = _dataset_with_rows(tmp_path / "escaping", ["images/../../outside.png,1,train"], {})
    assert "must be relative to the dataset directory" in _load_error(escaping)


def test_labels_must_be_ascii_digits_and_images_grayscale(tmp_path: Path) -> None:
    arabic = _dataset_with_rows(tmp_path / "arabic", ["images/a.png,٣,train"], {"images/a.png": _png("L")})
    assert "label '٣' is not an integer (ASCII digits 0-9)" in _load_error(arabic)
    rgba = _dataset_with_rows(tmp_path / "rgba", ["images/a.png,3,train"], {"images/a.png": _png("RGBA")})
    assert "image mode RGBA; expected 8-bit grayscale (L), convert it explicitly" in _load_error(rgba)


def test_png_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    from PIL import Image

    bomb = _png("L", (20_000, 20_000))  # 400 megapixels, past PIL's bomb limit, ~400 KB compressed
    assert Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < 20_000 * 20_000
    dataset = _dataset_with_rows(tmp_path / "bomb", ["images/a.png,3,train"], {"images/a.png": bomb})
    assert "a.png: refused as a decompression bomb" in _load_error(dataset)
    large = _dataset_with_rows(tmp_path / "large", ["images/a.png,3,train"], {"images/a.png": _png("L", (5000, 5000))})
    assert "image is 5000×5000; expected 28×28" in _load_error(large)  # read from the header, never decoded


def test_fifo_listed_as_an_image_is_refused_without_opening_it(tmp_path: Path) -> None:
    dataset = _dataset_with_rows(tmp_path / "fifo", ["images/a.png,3,train"], {})
    os.mkfifo(dataset / "images" / "a.png")
    assert "not a regular file (a FIFO, socket or device)" in _load_error(dataset)


def test_csv_field_over_the_csv_limit_is_one_line(tmp_path: Path) -> None:
    dataset = _dataset_with_rows(tmp_path / "wide", [f"images/a.png,3,train,{'x' * 200_000}"], {})
    text = (dataset / "labels.csv").read_text().replace("path,label,split", "path,label,split,note")
    (dataset / "labels.csv").write_text(text)
    assert "line 2: not valid CSV (field larger than field limit" in _load_error(dataset)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate-font-digits", "--count", "10", "--workers", "100000", "--output", "o"], "--workers: 100000 is"),
        (["sample-configs", "--count", str(10**20)], "--count: 100000000000000000000 is more than 100,000"),
        (["hpo-schedule", "--max-epochs", str(10**20)], "--max-epochs: 100000000000000000000 is more than"),
        (["train-sklearn", "--train", "x", "--val", "x", "--epochs", str(10**20)], "is more than 1000 epochs"),
        (["train-sklearn", "--train", "x", "--val", "x", "--seed", str(10**30)], "--seed: 1000000000000000000000"),
        (["train-torch", "--train", "x", "--val", "x", "--width", str(10**17)], "--width: 100000000000000000 is out"),
        (["train-torch", "--train", "x", "--val", "x", "--seed", str(10**30)], "--seed: 1000000000000000000000"),
        (
            ["train-torch", "--train", "x", "--val", "x", "--config", '{"a":' * 100_000 + "1" + "}" * 100_000],
            "--config: JSON nested too deeply",
        ),
        (["generate-markov-text", "--length", str(10**20), "--output", "o"], "--length: 100000000000000000000 is"),
        (["bootstrap-mnist", "--seed", str(10**30), "--output", "o"], "--seed: 1000000000000000000000000000000 is"),
    ],
)
def test_unbounded_flags_are_one_line(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert message in one_line(CliRunner().invoke(app, args))
    assert list(tmp_path.iterdir()) == []


def test_gs_source_without_credentials_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.storage")
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server answers here
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    args = ["prepare-corpus", "--source", "gs://some-bucket/text.txt", "--output", str(tmp_path / "corpus")]
    assert "no Google Cloud credentials" in one_line(CliRunner().invoke(app, args))
    assert not (tmp_path / "corpus").exists()


_INTEGERS = st.integers(min_value=-(10**30), max_value=10**30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(
        [
            ["sample-configs", "--count={}"],
            ["sample-configs", "--count=2", "--seed={}"],
            ["hpo-schedule", "--max-epochs={}"],
            ["hpo-schedule", "--max-epochs=27", "--eta={}"],
            ["hpo-schedule", "--max-epochs=27", "--min-epochs={}"],
            ["train-sklearn", "--train=missing", "--val=missing", "--epochs={}"],
            ["train-sklearn", "--train=missing", "--val=missing", "--seed={}"],
            ["train-torch", "--train=missing", "--val=missing", "--epochs={}"],
            ["train-torch", "--train=missing", "--val=missing", "--width={}"],
            ["train-torch", "--train=missing", "--val=missing", "--batch-size={}"],
            ["generate-font-digits", "--fonts=missing-fonts", "--output=missing-out", "--workers={}"],
            ["generate-font-digits", "--fonts=missing-fonts", "--output=missing-out", "--count={}"],
            ["generate-markov-text", "--source=missing.txt", "--length={}"],
            ["bootstrap-mnist", "--source=bundled", "--output=missing-out/x/..", "--limit={}"],
        ]
    ),
    value=_INTEGERS | st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 2**64]),
)
def test_fuzzed_numeric_flags_end_in_success_or_one_line(
    command: list[str], value: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any integer on a numeric flag: the command succeeds or prints one line and exits 2 — never a traceback,
    never minutes of work (the fixed flags point at missing inputs, so a valid value fails fast on them)."""
    args = [part.format(value) for part in command]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    if result.exit_code == 0:
        return
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    one_line(result)


def test_the_hint_for_an_old_model_is_a_command_that_works(real, tmp_path: Path) -> None:
    import joblib

    _, model = real
    old = tmp_path / "model.skops"  # an old pickle under the new suffix: the hint must not name the same file
    joblib.dump(load_model(model), old)
    with pytest.raises(ExpforgeError) as caught:
        load_model(old)
    command = str(caught.value).split("convert it once with: ", 1)[1].split()
    assert command[:2] == ["expforge", "convert-model"] and "--trust-pickle" in command
    result = CliRunner().invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    converted = Path(command[command.index("--output") + 1])
    assert converted != old and load_model(converted)["format"] == MODEL_FORMAT


def test_a_symlinked_output_is_replaced_as_a_link_and_devices_never(tmp_path: Path) -> None:
    items = [(np.zeros((28, 28), dtype=np.uint8), 4, "train", {})]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    link = tmp_path / "out"
    link.symlink_to(elsewhere)
    with pytest.raises(ExpforgeError, match="is a symbolic link; pass --overwrite"):
        write_dataset(link, items)
    write_dataset(link, items, overwrite=True)
    assert not link.is_symlink() and [row.label for row in read_manifest(link)] == [4]
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]  # what the link pointed to is untouched
    with pytest.raises(ExpforgeError, match="/dev/null: is a device file"):
        write_dataset(Path("/dev/null"), items, overwrite=True)
    assert Path("/dev/null").is_char_device()
    from expforge.atomic import staged_file

    with pytest.raises(ExpforgeError, match="is a directory; expected a file path"), staged_file(elsewhere):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]  # no staging left
