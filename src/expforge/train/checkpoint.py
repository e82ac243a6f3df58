"""Checkpoints that resume exactly and load safely.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values (dicts, lists, strings,
numbers), so it loads with ``torch.load(weights_only=True)``: opening a checkpoint never runs pickled code.
It carries everything a resumed run needs to continue as if it had never stopped: model, optimizer and
LR-scheduler state, the RNG states, the epoch reached and the metric history so far. ``kind`` names the
trainer (``digit-cnn``, ``gpt-lm``) and ``architecture`` its shape; loading into another architecture is a
clear error naming the fields that differ, not a wall of ``state_dict`` key mismatches.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from expforge.atomic import staged_file
from expforge.errors import ExpforgeError

CHECKPOINT_FORMAT = "expforge.checkpoint"
CHECKPOINT_VERSION = 1


def _numpy_state_to_plain(state: dict[str, Any]) -> dict[str, Any]:
    """NumPy's legacy MT19937 state as plain lists (``weights_only`` loading refuses NumPy arrays)."""
    inner = state["state"]
    return {
        "bit_generator": state["bit_generator"],
        "key": [int(v) for v in inner["key"]],
        "pos": int(inner["pos"]),
        "has_gauss": int(state["has_gauss"]),
        "gauss": float(state["gauss"]),
    }


def _numpy_state_from_plain(plain: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    return {
        "bit_generator": plain["bit_generator"],
        "state": {"key": np.asarray(plain["key"], dtype=np.uint32), "pos": plain["pos"]},
        "has_gauss": plain["has_gauss"],
        "gauss": plain["gauss"],
    }


def capture_rng_state(generator: Any | None = None) -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) RNG states, plus a trainer's own ``torch.Generator`` if given."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": _numpy_state_to_plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: Any | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(path: Path | str, *, kind: str, architecture: dict[str, Any], **contents: Any) -> Path:
    """Write a checkpoint atomically: ``path`` is either the whole new file or left as it was.

    ``contents`` are the trainer's fields (``model``, ``optimizer``, ``scheduler``, ``rng``, ``epoch``,
    ``history``, ``params``, ...): tensors and plain values only.
    """
    import torch

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "architecture": dict(architecture),
        **contents,
    }
    with staged_file(path) as staging:
        torch.save(payload, staging)
    return Path(path)


def load_checkpoint(
    path: Path | str, *, kind: str, architecture: dict[str, Any] | None = None, map_location: str = "cpu"
) -> dict[str, Any]:
    """Load with ``weights_only=True``; check the format, the trainer kind and (if given) the architecture."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise ExpforgeError(f"{path}: checkpoint does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExpforgeError(f"{path}: not a loadable expforge checkpoint ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ExpforgeError(f"{path}: not an expforge checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ExpforgeError(
            f"{path}: checkpoint format version {payload.get('version')}; this expforge reads {CHECKPOINT_VERSION}"
        )
    if payload.get("kind") != kind:
        raise ExpforgeError(f"{path}: checkpoint of a {payload.get('kind')!r} model; expected a {kind!r} model")
    if architecture is not None:
        saved = payload.get("architecture", {})
        differing = sorted(k for k in set(saved) | set(architecture) if saved.get(k) != architecture.get(k))
        if differing:
            detail = ", ".join(
                f"{k}: checkpoint {saved.get(k)!r} vs requested {architecture.get(k)!r}" for k in differing
            )
            raise ExpforgeError(f"{path}: checkpoint is from another architecture ({detail})")
    return payload
