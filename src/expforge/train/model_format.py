"""What a model file is, decided from its bytes alone, before anything in it is deserialised.

Loading a pickle (``joblib.load``, ``pickle.load``, ``torch.load`` without ``weights_only``) runs whatever code
the file names, so the format is settled first, with the standard library only: a scikit-learn model is a
``skops`` archive (a zip holding ``schema.json``), a CNN checkpoint a ``torch.save`` zip (``<name>/data.pkl``,
read with ``weights_only=True``). A pickle or joblib file — what expforge wrote before it used skops — is
refused with a one-line hint naming the deliberate, opt-in conversion; anything else is refused as unknown.
The registry uses the same check, so neither a pickle nor a FIFO ever becomes a champion.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from expforge.errors import ExpforgeError
from expforge.regular_file import Refusals, require_regular_file

SKOPS = "skops"
TORCH = "torch"
ZIP_MAGIC = b"PK\x03\x04"
SKOPS_SCHEMA = "schema.json"
#: First bytes of a pickle (protocol 2–5) and of joblib's compressed variants (zlib, gzip, bz2, xz, lzma).
_PICKLE_HEADS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_COMPRESSED_HEADS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"ZF")
_HEAD_BYTES = 8


def convert_hint(path: Path | str) -> str:
    """The opt-in command that turns a trusted old joblib model into a skops one."""
    path = Path(path)
    target = path.with_suffix(".skops") if path.suffix != ".skops" else path.with_name(f"{path.stem}.converted.skops")
    return f"expforge convert-model {path} --output {target} --trust-pickle"


def check_regular_file(path: Path | str, *, what: str = "model file") -> Path:
    """``path`` if it names a regular file (a link to one is followed); a FIFO, device or directory is refused
    without being opened, since opening a FIFO blocks forever."""
    path = Path(path)
    refusals = Refusals(
        missing=f"{what} not found",
        unreadable=f"cannot read {what}",
        directory=f"is a directory; expected a {what}",
        special=f"not a regular file; expected a {what}",
    )
    require_regular_file(path, refusals)
    return path


def sniff_model_format(path: Path | str) -> str:
    """``"skops"`` or ``"torch"``; a pickle, joblib or unknown file is a one-line :class:`ExpforgeError`."""
    path = check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise ExpforgeError(f"{path}: cannot read model file ({exc.strerror})") from None
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ExpforgeError(
                f"{path}: not a loadable expforge checkpoint or skops model (a damaged zip archive: {exc})"
            ) from None
        if SKOPS_SCHEMA in names:
            return SKOPS
        if any(name.endswith("/data.pkl") for name in names):
            return TORCH
        raise ExpforgeError(f"{path}: a zip archive that is neither a skops model nor a PyTorch checkpoint")
    if head.startswith(_PICKLE_HEADS) or head.startswith(_COMPRESSED_HEADS):
        raise ExpforgeError(
            f"{path}: a pickle/joblib file, refused unread (unpickling runs any code it holds); if you trust "
            f"where it came from, convert it once with: {convert_hint(path)}"
        )
    raise ExpforgeError(f"{path}: not an expforge model (expected a skops model or a PyTorch checkpoint)")


def looks_like_pickle(path: Path | str) -> bool:
    """Whether a regular file starts like a pickle or a compressed joblib file (for the registry's check)."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    return head.startswith(_PICKLE_HEADS) or head.startswith(_COMPRESSED_HEADS)
