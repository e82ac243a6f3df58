"""Train the digit CNN with PyTorch: seeded, resumable to the bit, and fast on a GPU.

Three properties shape this module.

* **Exact resume.** Hyperband trains a configuration to rung r1, checkpoints, and later resumes it to r2. That is
  only honest if 0→r1→r2 equals 0→r2. So everything an epoch does is a function of the *global epoch index* and
  a fixed *plan*, never of how far this particular call will go: the LR at a step depends on
  ``(epoch + batch/batches) / horizon`` where the horizon is ``schedule_epochs`` (set it to the largest budget),
  the data order and augmentation come from one seeded ``torch.Generator`` whose state the checkpoint keeps,
  and dropout's global RNG is captured too. On CPU (deterministic kernels) the weights are bit-identical.
* **GPU speed.** No DataLoader and no per-image Python: the whole dataset lives on the GPU as a ``uint8`` tensor
  (60,000 digits are 47 MB), each epoch draws one permutation and one block of augmentation parameters, and a
  batch is a gather, one affine warp, forward and backward under autocast. Losses and hit counts accumulate on
  the device; the host syncs once per epoch.
* **Curriculum semantics of the scikit-learn trainer.** ``curriculum="mixed"`` pools every training dataset each
  epoch (phase ``mixed``); ``"sequential"`` runs ``epochs`` epochs on the first dataset, then ``epochs`` on the
  next (phase ``<stage index>:<dataset name>``). With ``schedule_epochs`` S set, the plan is S epochs per stage and
  a call trains the first ``epochs × stages`` epochs of that plan, so resuming stays a prefix of one plan.

Train loss and accuracy are means over the epoch's training batches (augmented, dropout on), which costs nothing;
validation loss is the plain cross-entropy (no label smoothing) on the validation split.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from expforge.atomic import staged_file
from expforge.data.manifest import load_arrays
from expforge.data.split import stratified_sample
from expforge.errors import ExpforgeError
from expforge.train.curriculum import curriculum_phases, train_fractions_for
from expforge.train.digit_cnn import IMAGE_SIZE, KIND, NUM_CLASSES, PIXEL_SCALE, CNNSpec
from expforge.train.sklearn_trainer import EpochMetrics

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("cosine", "constant", "onecycle")
CURRICULA = ("mixed", "sequential")
ONECYCLE_WARMUP = 0.1  # fraction of the horizon spent warming up from lr/25 to lr
EVAL_BATCH = 2048
# Keep the dataset on the GPU while it takes at most this share of the free memory (else: pinned host memory).
RESIDENT_SHARE = 0.25


# --- configuration ----------------------------------------------------------------------------------------------


def _or_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


_INT_FIELDS = ("width", "depth", "hidden", "batch_size", "seed")
_FLOAT_FIELDS = ("dropout", "lr", "weight_decay", "momentum", "label_smoothing")
_BOOL_FIELDS = ("augment", "amp", "nesterov")
_STR_FIELDS = ("optimizer", "lr_schedule")


@dataclass
class TorchTrainConfig:
    """Everything about *how* to train, independent of data and budget (``epochs`` is an argument).

    ``schedule_epochs`` is the LR-schedule horizon (per stage in a sequential curriculum); ``None`` means
    ``epochs``. Set it to the largest budget when a run will be resumed to more epochs later (Hyperband rungs).
    Invalid values raise at construction.
    """

    width: int = 32
    depth: int = 2
    dropout: float = 0.25
    hidden: int = 128
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    batch_size: int = 128
    lr_schedule: str = "cosine"
    schedule_epochs: int | None = None
    augment: bool = True
    label_smoothing: float = 0.0
    amp: bool = True
    seed: int = 0
    nesterov: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, labels: Mapping[str, str] | None = None) -> TorchTrainConfig:
        """Raise a one-line error naming the first invalid field (``labels`` maps fields to CLI flag names)."""

        def name(key: str) -> str:
            return (labels or {}).get(key, f"config.{key}")

        if self.optimizer not in OPTIMIZERS:
            raise ExpforgeError(
                f"{name('optimizer')}: unknown optimizer {self.optimizer!r}; expected {_or_list(OPTIMIZERS)}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ExpforgeError(
                f"{name('lr_schedule')}: unknown schedule {self.lr_schedule!r}; expected {_or_list(LR_SCHEDULES)}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ExpforgeError(f"{name('lr')}: {self.lr} is not a positive learning rate")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ExpforgeError(f"{name('weight_decay')}: {self.weight_decay} is not a weight decay ≥ 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ExpforgeError(f"{name('momentum')}: {self.momentum} is not in [0, 1)")
        if self.batch_size < 1:
            raise ExpforgeError(f"{name('batch_size')}: {self.batch_size} is not a positive batch size")
        if self.schedule_epochs is not None and self.schedule_epochs < 1:
            raise ExpforgeError(f"{name('schedule_epochs')}: {self.schedule_epochs} is not a positive number of epochs")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ExpforgeError(f"{name('label_smoothing')}: {self.label_smoothing} is not in [0, 1)")
        if self.seed < 0:
            raise ExpforgeError(f"{name('seed')}: {self.seed} is negative; expected an integer ≥ 0")
        self.spec().validate(name)
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> TorchTrainConfig:
        """Build from a JSON/YAML/TOML mapping: unknown keys and wrongly typed or invalid values are one-line
        errors. Numbers written as strings (YAML reads ``1e-3`` as text) are accepted for float fields."""
        if not isinstance(values, Mapping):
            raise ExpforgeError(f"config: expected a mapping of settings, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]

        def name(key: str) -> str:
            return (labels or {}).get(key, f"config.{key}")

        for key in values:
            if key not in known:
                raise ExpforgeError(f"config: unknown key {key!r}; expected some of {', '.join(known)}")
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            if key in _INT_FIELDS or (key == "schedule_epochs" and value is not None):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not an integer")
            elif key in _FLOAT_FIELDS:
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        raise ExpforgeError(f"{name(key)}: {value!r} is not a number") from None
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not a number")
                value = float(value)
            elif key in _BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise ExpforgeError(f"{name(key)}: {value!r} is not true or false")
            elif key in _STR_FIELDS and not isinstance(value, str):
                raise ExpforgeError(f"{name(key)}: {value!r} is not a string")
            coerced[key] = value
        config = cls.__new__(cls)
        for field in dataclasses.fields(cls):
            default = field.default
            setattr(config, field.name, coerced.get(field.name, default))
        return config.validate(labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, the inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    def spec(self) -> CNNSpec:
        """The network these settings describe."""
        return CNNSpec(width=self.width, depth=self.depth, hidden=self.hidden, dropout=self.dropout)

    def horizon(self, epochs: int) -> int:
        """LR-schedule horizon in epochs (per stage): ``schedule_epochs``, else ``epochs``."""
        return self.schedule_epochs if self.schedule_epochs is not None else epochs


def learning_rate(config: TorchTrainConfig, progress: float) -> float:
    """LR at ``progress`` ∈ [0, 1] of the schedule horizon: a pure function, which is what makes resume exact."""
    base = config.lr
    if config.lr_schedule == "constant":
        return base
    p = min(max(progress, 0.0), 1.0)
    if config.lr_schedule == "onecycle":
        if p < ONECYCLE_WARMUP:
            return base * (0.04 + 0.96 * p / ONECYCLE_WARMUP)
        p = (p - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP)
    return base * 0.5 * (1.0 + math.cos(math.pi * p))


# --- results ----------------------------------------------------------------------------------------------------


@dataclass
class TorchEpochMetrics(EpochMetrics):
    """An epoch of the scikit-learn trainer's record, plus the training pass's wall time, throughput and last LR."""

    seconds: float
    images_per_second: float
    lr: float


@dataclass
class TorchTrainResult:
    """Where the checkpoint was saved, the full epoch history (resumed epochs included), the last epoch's
    metrics, the run's parameters and the hardware it ran on."""

    model_path: Path
    history: list[TorchEpochMetrics]
    final: dict[str, float]
    params: dict[str, Any]
    device: dict[str, Any]


def write_history_csv(history: Sequence[EpochMetrics], path: Path | str) -> Path:
    """One row per epoch (columns: the dataclass fields), written atomically."""
    path = Path(path)
    rows = [dataclasses.asdict(epoch) for epoch in history]
    fields = list(rows[0]) if rows else [f.name for f in dataclasses.fields(TorchEpochMetrics)]
    with staged_file(path) as staging, open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- data -------------------------------------------------------------------------------------------------------


@dataclass
class _Stage:
    """The training rows of one dataset after its fraction; ``fingerprint`` identifies them for resume checks."""

    path: Path
    fraction: float
    images: np.ndarray
    labels: np.ndarray
    fingerprint: str


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _cached_split(path: str, split: str, stamp: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = load_arrays(path, [split], num_classes=NUM_CLASSES)
    return images, labels


def load_split(path: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's images and labels, decoded once per process while the dataset's manifest is unchanged.

    In-process drivers (Hyperband's driver, the benchmark) train hundreds of trials on the same datasets;
    decoding thousands of PNGs per trial would dominate their run time. Callers get their own copies.
    """
    manifest = Path(path) / "labels.csv"
    try:
        stat = manifest.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = (0, 0)  # load_arrays raises the one-line error
    images, labels = _cached_split(str(Path(path).absolute()), split, stamp)
    return images.copy(), labels.copy()


def _load_stage(path: Path, fraction: float, rng: np.random.Generator) -> _Stage:
    """Same selection as the scikit-learn trainer: a seeded, stratified fraction of the train split."""
    images, labels = load_split(path, "train")
    if fraction < 1.0:
        keep = stratified_sample(labels, max(1, round(len(labels) * fraction)), rng)
        images, labels = images[keep], labels[keep]
    return _Stage(path, fraction, images, labels, _fingerprint(images, labels))


def _upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → device; from pinned memory so the copy is asynchronous on CUDA."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


class _Resident:
    """A dataset held as one ``uint8`` tensor: on the GPU when it fits comfortably, else in pinned host memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device) -> None:
        import torch

        host_images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        host_labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
        self.device = device
        self.size = len(host_labels)
        self.on_device = device.type != "cuda"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            self.on_device = host_images.nbytes + host_labels.nbytes <= free * RESIDENT_SHARE
        if self.on_device:
            self.images, self.labels = _upload(host_images, device), _upload(host_labels, device)
        else:
            self.images, self.labels = host_images.pin_memory(), host_labels.pin_memory()

    def take(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(N×28×28 uint8, N labels) on the training device."""
        images, labels = self.images[index], self.labels[index]
        if not self.on_device:
            images = images.pin_memory().to(self.device, non_blocking=True)
            labels = labels.pin_memory().to(self.device, non_blocking=True)
        return images, labels


# --- the training machinery -------------------------------------------------------------------------------------


def _make_optimizer(model: torch.nn.Module, config: TorchTrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Weight decay on weights only (biases and batch-norm parameters are not shrunk towards zero)."""
    import torch

    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused kernels (CUDA and CPU): one pass over all parameters instead of a dozen small kernels per tensor.
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0, fused=True
    )


@dataclass
class _Trainer:
    """Model, optimizer and the seeded generator of data order and augmentation, stepping through one plan."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler or None
    generator: torch.Generator
    config: TorchTrainConfig
    device: torch.device
    horizon_total: int

    def train_epoch(self, data: _Resident, epoch: int) -> tuple[float, float, float, float]:
        """One pass over ``data`` in a fresh seeded order; returns (loss, accuracy, seconds, last LR)."""
        import torch
        import torch.nn.functional as F

        from expforge.train.augment_torch import affine_matrices, draw_params, warp
        from expforge.train.device import autocast
        from expforge.train.digit_cnn import to_input

        config, device, model = self.config, self.device, self.model
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(data.size, generator=self.generator)
        uniforms = draw_params(data.size, self.generator) if config.augment else None
        order = _upload(order, device) if data.on_device else order
        # The epoch's matrices in one go: a handful of kernels per epoch instead of per batch.
        thetas = affine_matrices(_upload(uniforms, device)) if uniforms is not None else None
        batches = math.ceil(data.size / config.batch_size)
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device, dtype=torch.int64)
        lr = config.lr
        model.train()
        for batch in range(batches):
            lo, hi = batch * config.batch_size, min((batch + 1) * config.batch_size, data.size)
            lr = learning_rate(config, (epoch + batch / batches) / self.horizon_total)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            pixels, labels = data.take(order[lo:hi])
            inputs = to_input(pixels)
            if thetas is not None:
                inputs = warp(inputs, thetas[lo:hi])
            with autocast(device, config.amp):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            loss_sum += loss.detach() * (hi - lo)
            hits += (logits.detach().argmax(dim=1) == labels).sum()
        mean_loss = float(loss_sum.item()) / data.size  # the epoch's one host sync
        accuracy = int(hits.item()) / data.size
        return mean_loss, accuracy, time.perf_counter() - start, lr

    def evaluate(self, data: _Resident) -> tuple[float, float]:
        """(cross-entropy, accuracy) on ``data`` in eval mode (batch norm uses its running statistics)."""
        import torch
        import torch.nn.functional as F

        from expforge.train.device import autocast
        from expforge.train.digit_cnn import to_input

        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device, dtype=torch.int64)
        with torch.inference_mode():
            for lo in range(0, data.size, EVAL_BATCH):
                pixels, labels = data.take(slice(lo, min(lo + EVAL_BATCH, data.size)))
                with autocast(self.device, self.config.amp):
                    logits = self.model(to_input(pixels))
                logits = logits.float()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum")
                hits += (logits.argmax(dim=1) == labels).sum()
        self.model.train()
        return float(loss_sum.item()) / data.size, int(hits.item()) / data.size


def _new_trainer(config: TorchTrainConfig, device: torch.device, horizon_total: int) -> _Trainer:
    """Seed, build and move the model; the generator is seeded separately so data order does not depend on
    how many random numbers initialisation consumed."""
    import torch

    from expforge.train.device import memory_format, needs_grad_scaler, seed_everything
    from expforge.train.digit_cnn import build_model

    seed_everything(config.seed, device)
    model = build_model(config.spec()).to(device, memory_format=memory_format(device))
    optimizer = _make_optimizer(model, config, device)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, config.amp) else None
    generator = torch.Generator().manual_seed(config.seed)
    return _Trainer(model, optimizer, scaler, generator, config, device, horizon_total)


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's memory layout.

    A checkpoint written on a GPU (or before channels-last) holds contiguous moments; the fused CPU kernels
    assume that state and parameter share strides and silently compute garbage otherwise (torch 2.13)."""
    import torch

    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param).copy_(value)


def _to_cpu(value: Any) -> Any:
    """Tensors of a (nested) state dict moved to the CPU, so a GPU checkpoint loads anywhere."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _device_info(device: torch.device, config: TorchTrainConfig, data_on_device: bool) -> dict[str, Any]:
    import torch

    from expforge.train.device import describe_device, needs_grad_scaler

    info = describe_device(device)
    amp = config.amp and device.type == "cuda"
    info["amp"] = amp
    info["amp_dtype"] = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if amp else None
    info["grad_scaler"] = needs_grad_scaler(device, config.amp)
    info["data_on_device"] = data_on_device
    return info


# --- the public entry points ------------------------------------------------------------------------------------


def _check_options(
    train: Sequence[Path | str],
    output: Path,
    config: TorchTrainConfig,
    epochs: int,
    curriculum: str,
    train_fractions: Sequence[float] | None,
) -> list[float]:
    """Validate every argument before any data is read; return the fraction per training dataset."""
    if not isinstance(config, TorchTrainConfig):
        raise ExpforgeError(f"config: expected a TorchTrainConfig, got {type(config).__name__}")
    config.validate()
    if not train:
        raise ExpforgeError("--train: at least one training dataset is required")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ExpforgeError(f"--epochs: {epochs} is not a positive number of epochs")
    if curriculum not in CURRICULA:
        raise ExpforgeError(f"--curriculum: unknown curriculum {curriculum!r}; expected {_or_list(CURRICULA)}")
    if config.horizon(epochs) < epochs:
        raise ExpforgeError(
            f"config.schedule_epochs: {config.schedule_epochs} is below --epochs {epochs}; "
            "the LR schedule must cover every epoch"
        )
    fractions = train_fractions_for(train, train_fractions)
    if output.is_dir():
        raise ExpforgeError(f"--output: {output} is a directory; expected a file path")
    return fractions


def _check_resumable(
    payload: dict[str, Any], source: Path, config_dict: dict[str, Any], curriculum: str, stages: list[_Stage]
) -> None:
    """A resume continues one run: same settings, same curriculum, same training rows (paths may differ)."""
    saved = payload.get("config") or {}
    differing = sorted(k for k in set(saved) | set(config_dict) if saved.get(k) != config_dict.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs requested {config_dict.get(k)!r}" for k in differing)
        hint = "; set schedule_epochs to the full budget to train in rungs" if "schedule_epochs" in differing else ""
        raise ExpforgeError(f"{source}: cannot resume with another config ({detail}){hint}")
    params = payload.get("params") or {}
    if params.get("curriculum") != curriculum:
        raise ExpforgeError(
            f"{source}: checkpoint was trained with curriculum {params.get('curriculum')!r}, not {curriculum!r}"
        )
    fingerprints = [s.fingerprint for s in stages]
    if params.get("train_fingerprints") != fingerprints:
        raise ExpforgeError(
            f"{source}: the training data (after --train-fraction) differs from the checkpoint's; "
            "a resume must see the same rows"
        )


def train_torch(
    train: Sequence[Path | str],
    val: Path | str,
    output: Path | str,
    *,
    config: TorchTrainConfig,
    epochs: int,
    train_fractions: Sequence[float] | None = None,
    curriculum: str = "mixed",
    resume_from: Path | str | None = None,
    device: str = "auto",
    on_epoch: Callable[[TorchEpochMetrics], None] | None = None,
) -> TorchTrainResult:
    """Train the digit CNN on ``train`` (curriculum order), validating on ``val``'s val split every epoch.

    ``output`` receives one checkpoint file (kind ``digit-cnn``): the model artifact and a resume point alike.
    ``resume_from`` continues a checkpoint's run to ``epochs`` (same config, curriculum and data), exactly as if
    it had never stopped. ``on_epoch`` is called after every epoch trained by this call.
    """
    from expforge.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
    from expforge.train.device import select_device

    output = Path(output)
    fractions = _check_options(train, output, config, epochs, curriculum, train_fractions)
    dev = select_device(device)
    stages = [
        _load_stage(Path(path), fraction, np.random.default_rng([config.seed, index]))
        for index, (path, fraction) in enumerate(zip(train, fractions, strict=True))
    ]
    val_images, val_labels = load_split(val, "val")

    phases = curriculum_phases([(s.path, s.images, s.labels) for s in stages], curriculum)
    per_stage = config.horizon(epochs)
    horizon_total = per_stage * len(phases)
    run_total = epochs * len(phases)
    config_dict = {**config.to_dict(), "schedule_epochs": per_stage}

    trainer = _new_trainer(config, dev, horizon_total)
    start_epoch = 0
    history: list[TorchEpochMetrics] = []
    if resume_from is not None:
        source = Path(resume_from)
        payload = load_checkpoint(source, kind=KIND, architecture=config.spec().architecture())
        _check_resumable(payload, source, config_dict, curriculum, stages)
        start_epoch = int(payload["epoch"])
        if start_epoch > run_total:
            raise ExpforgeError(
                f"--epochs: {epochs} ({run_total} epoch(s) in all) is below the {start_epoch} the checkpoint "
                f"{source} has already trained"
            )
        try:
            trainer.model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise ExpforgeError(f"{source}: model weights do not fit the architecture ({exc!s:.200})") from None
        current = [
            {k: g[k] for k in ("fused", "foreach", "capturable") if k in g} for g in trainer.optimizer.param_groups
        ]
        trainer.optimizer.load_state_dict(payload["optimizer"])
        for group, kept in zip(trainer.optimizer.param_groups, current, strict=True):
            group.update(kept)  # fused kernels are a property of this device, not of the checkpoint
        _match_layouts(trainer.optimizer)
        if trainer.scaler is not None and payload.get("grad_scaler"):
            trainer.scaler.load_state_dict(payload["grad_scaler"])
        restore_rng_state(payload["rng"], trainer.generator)
        history = [TorchEpochMetrics(**row) for row in payload["history"]]

    resident = [_Resident(images, labels, dev) for _, images, labels in phases]
    val_data = _Resident(val_images, val_labels, dev)
    started = time.perf_counter()
    for epoch in range(start_epoch, run_total):
        index = min(epoch // per_stage, len(phases) - 1)
        data = resident[index]
        train_loss, train_accuracy, seconds, lr = trainer.train_epoch(data, epoch)
        val_loss, val_accuracy = trainer.evaluate(val_data)
        metrics = TorchEpochMetrics(
            epoch=epoch + 1,
            phase=phases[index][0],
            train_loss=train_loss,
            val_loss=val_loss,
            train_accuracy=train_accuracy,
            val_accuracy=val_accuracy,
            seconds=seconds,
            images_per_second=data.size / seconds if seconds > 0 else float("inf"),
            lr=lr,
        )
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    elapsed = time.perf_counter() - started

    params: dict[str, Any] = {
        **config_dict,
        "epochs": epochs,
        "epochs_total": run_total,
        "schedule_epochs_total": horizon_total,
        "curriculum": curriculum,
        "train": [str(s.path) for s in stages],
        "train_fractions": fractions,
        "train_rows": [len(s.labels) for s in stages],
        "train_fingerprints": [s.fingerprint for s in stages],
        "train_split": "train",
        "val": str(val),
        "val_split": "val",
        "val_rows": len(val_labels),
        "resumed_from": None if resume_from is None else str(resume_from),
        "resumed_at_epoch": start_epoch if resume_from is not None else None,
    }
    save_checkpoint(
        output,
        kind=KIND,
        architecture=config.spec().architecture(),
        model=_to_cpu(trainer.model.state_dict()),
        optimizer=_to_cpu(trainer.optimizer.state_dict()),
        scheduler={"lr_schedule": config.lr_schedule, "base_lr": config.lr, "horizon_epochs": horizon_total},
        grad_scaler=trainer.scaler.state_dict() if trainer.scaler is not None else None,
        rng=capture_rng_state(trainer.generator),
        epoch=run_total,
        history=[dataclasses.asdict(h) for h in history],
        params=params,
        config=config_dict,
        preprocessing={"input_shape": [IMAGE_SIZE, IMAGE_SIZE], "scale": PIXEL_SCALE},
        classes=list(range(NUM_CLASSES)),
    )
    trained = history[start_epoch:]
    last = history[-1]
    final = {
        "train_loss": last.train_loss,
        "val_loss": last.val_loss,
        "train_accuracy": last.train_accuracy,
        "val_accuracy": last.val_accuracy,
        "epochs_trained": float(len(trained)),
        "seconds": elapsed,
        "images_per_second": float(np.mean([h.images_per_second for h in trained])) if trained else 0.0,
    }
    return TorchTrainResult(output, history, final, params, _device_info(dev, config, resident[0].on_device))


def measure_throughput(images: int, config: TorchTrainConfig, device: str = "auto") -> float:
    """Training images per second for one epoch over ``images`` random digits (after a short warm-up), with
    everything a real epoch does: gather, augmentation, AMP forward/backward and the optimizer step."""
    import torch

    from expforge.train.device import select_device

    if images < 1:
        raise ExpforgeError(f"images: {images} is not a positive number of images")
    config.validate()
    dev = select_device(device)
    trainer = _new_trainer(config, dev, horizon_total=2)
    generator = torch.Generator().manual_seed(config.seed)
    pixels = torch.randint(0, 256, (images, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (images,), generator=generator)
    warmup_rows = min(images, 20 * config.batch_size)
    trainer.train_epoch(_Resident(pixels[:warmup_rows].numpy(), labels[:warmup_rows].numpy(), dev), 0)
    data = _Resident(pixels.numpy(), labels.numpy(), dev)
    _, _, seconds, _ = trainer.train_epoch(data, 1)
    return images / seconds
