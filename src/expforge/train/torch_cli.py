"""``expforge train-torch``: the digit CNN from the command line.

Settings come from ``--config`` (JSON text, or a ``.json``/``.yaml``/``.toml`` file: the same mapping a
Hyperband search space produces) and individual flags, which win over the file. Progress goes to stderr, one
line per epoch; stdout is one JSON summary, so scripts can read it.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from expforge.errors import ExpforgeError

CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
# Flag names of the settings that have one, for error messages about values given on the command line.
FLAG_NAMES = {
    "width": "--width",
    "depth": "--depth",
    "dropout": "--dropout",
    "hidden": "--hidden",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "momentum": "--momentum",
    "batch_size": "--batch-size",
    "lr_schedule": "--lr-schedule",
    "schedule_epochs": "--schedule-epochs",
    "augment": "--augment",
    "label_smoothing": "--label-smoothing",
    "amp": "--amp",
    "seed": "--seed",
}

#: Upper bounds of the numeric settings, checked here before the trainer allocates anything: past them a run
#: only exhausts memory or time (a width of 10^17 asks for exabytes; torch seeds are 64-bit).
SETTING_BOUNDS: dict[str, tuple[int, int]] = {
    "width": (1, 1024),
    "hidden": (1, 65_536),
    "batch_size": (1, 1_000_000),
    "schedule_epochs": (1, 10_000),
    "seed": (0, 2**63 - 1),
}
MAX_EPOCHS = 10_000


def check_bounds(settings: dict[str, Any], epochs: int) -> None:
    """One line naming the setting (its flag when it has one) whose integer value is out of range."""
    if isinstance(epochs, int) and epochs > MAX_EPOCHS:
        raise ExpforgeError(f"--epochs: {epochs} is more than {MAX_EPOCHS}; expected 1–{MAX_EPOCHS}")
    for key, (low, high) in SETTING_BOUNDS.items():
        value = settings.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            raise ExpforgeError(f"{FLAG_NAMES.get(key, key)}: {value} is out of range; expected {low}–{high}")


def read_config(source: str) -> dict[str, Any]:
    """``--config`` value → mapping: inline JSON (starts with ``{``) or a JSON/YAML/TOML file by suffix."""
    text = source.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExpforgeError(f"--config: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise ExpforgeError("--config: JSON nested too deeply; expected a flat mapping of settings") from None
        origin = "--config"
    else:
        path = Path(source)
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise ExpforgeError(f"--config: {source!r} is neither JSON text nor a {', '.join(CONFIG_SUFFIXES)} file")
        if not path.is_file():
            raise ExpforgeError(f"--config: {path} not found")
        origin = f"--config {path}"
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExpforgeError(f"{origin}: unreadable ({exc})") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(raw)
            elif path.suffix.lower() == ".toml":
                data = tomllib.loads(raw)
            else:
                import yaml

                data = yaml.safe_load(raw)
        except json.JSONDecodeError as exc:
            raise ExpforgeError(f"{origin}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ExpforgeError(f"{origin}: invalid TOML ({exc})") from None
        except RecursionError:
            raise ExpforgeError(f"{origin}: nested too deeply; expected a flat mapping of settings") from None
        except Exception as exc:  # yaml.YAMLError and its many subclasses
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExpforgeError(f"{origin}: invalid YAML ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExpforgeError(f"{origin}: expected a mapping of settings, got {type(data).__name__}")
    return data


def register(command: Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]], app: typer.Typer) -> None:
    """Add ``train-torch`` to the ``expforge`` app."""
    del app  # a single command: registered through ``command``

    @command("train-torch")
    def train_torch_command(
        train: list[Path] = typer.Option(..., "--train", help="Training dataset(s), in curriculum order."),
        train_fraction: list[float] = typer.Option([], "--train-fraction", help="Per --train: fraction of its rows."),
        val: Path = typer.Option(..., "--val", help="Dataset whose val split validates each epoch."),
        output: Path = typer.Option(Path("runs/model.pt"), "--output", help="Checkpoint file to write (the model)."),
        epochs: int = typer.Option(5, "--epochs", help="Epochs (per dataset with --curriculum sequential)."),
        curriculum: str = typer.Option("mixed", "--curriculum", help="mixed (pool all) | sequential (in order)."),
        config: str | None = typer.Option(None, "--config", help="Settings: JSON text or a .json/.yaml/.toml file."),
        width: int | None = typer.Option(None, "--width", help="Channels of the first conv block (doubling)."),
        depth: int | None = typer.Option(None, "--depth", help="Conv blocks (1–4)."),
        dropout: float | None = typer.Option(None, "--dropout"),
        hidden: int | None = typer.Option(None, "--hidden", help="Size of the penultimate layer."),
        optimizer: str | None = typer.Option(None, "--optimizer", help="adamw|sgd"),
        lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
        weight_decay: float | None = typer.Option(None, "--weight-decay"),
        momentum: float | None = typer.Option(None, "--momentum", help="SGD momentum (Nesterov)."),
        batch_size: int | None = typer.Option(None, "--batch-size"),
        lr_schedule: str | None = typer.Option(None, "--lr-schedule", help="cosine|constant|onecycle"),
        schedule_epochs: int | None = typer.Option(
            None, "--schedule-epochs", help="LR-schedule horizon (default: --epochs); the full budget for rungs."
        ),
        augment: bool | None = typer.Option(None, "--augment/--no-augment", help="Random affine augmentation."),
        label_smoothing: float | None = typer.Option(None, "--label-smoothing"),
        amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision on GPU."),
        seed: int | None = typer.Option(None, "--seed"),
        device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
        resume_from: Path | None = typer.Option(None, "--resume-from", help="Checkpoint to continue (same config)."),
        history: Path | None = typer.Option(None, "--history", help="Write the per-epoch metrics CSV here."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output/--history file."),
    ) -> None:
        """Train the digit CNN (PyTorch; CUDA when present) with per-epoch train/val metrics and a checkpoint."""
        from expforge.atomic import check_output
        from expforge.train.torch_trainer import TorchTrainConfig, train_torch, write_history_csv

        flags = {
            "width": width,
            "depth": depth,
            "dropout": dropout,
            "hidden": hidden,
            "optimizer": optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "batch_size": batch_size,
            "lr_schedule": lr_schedule,
            "schedule_epochs": schedule_epochs,
            "augment": augment,
            "label_smoothing": label_smoothing,
            "amp": amp,
            "seed": seed,
        }
        given = {key: value for key, value in flags.items() if value is not None}
        settings = {**(read_config(config) if config is not None else {}), **given}
        labels = {key: FLAG_NAMES[key] for key in given}
        check_bounds(settings, epochs)
        train_config = TorchTrainConfig.from_dict(settings, labels=labels)
        # The checkpoint is rewritten as the run goes (it is also the resume point), so the output is checked
        # here, once: resuming into the checkpoint being continued is the one existing file taken over.
        inputs = [*train, val]
        resuming_in_place = resume_from is not None and Path(resume_from).resolve() == Path(output).resolve()
        check_output(output, directory=False, inputs=inputs, overwrite=overwrite or resuming_in_place, flag="--output")
        if history is not None:
            check_output(history, directory=False, inputs=[*inputs, output], overwrite=overwrite, flag="--history")

        def progress(epoch: Any) -> None:
            typer.echo(
                f"epoch {epoch.epoch:>3} [{epoch.phase}] train_loss={epoch.train_loss:.4f} "
                f"val_loss={epoch.val_loss:.4f} train_acc={epoch.train_accuracy:.4f} "
                f"val_acc={epoch.val_accuracy:.4f} {epoch.images_per_second:,.0f} img/s",
                err=True,
            )

        result = train_torch(
            train,
            val,
            output,
            config=train_config,
            epochs=epochs,
            train_fractions=train_fraction or None,
            curriculum=curriculum,
            resume_from=resume_from,
            device=device,
            on_epoch=progress,
        )
        if history is not None:
            write_history_csv(result.history, history)
        summary = {
            "model": str(result.model_path),
            "history": None if history is None else str(history),
            "epochs": len(result.history),
            "final": result.final,
            "device": result.device,
            "config": train_config.to_dict(),
        }
        typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))
