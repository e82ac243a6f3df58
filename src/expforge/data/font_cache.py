"""A per-font-file cache of probe results, so a second run does not render every installed font again.

Probing the ~460 files of a Debian font install (render eleven characters per face, compare, reduce) costs about
a second of CPU on every run, as much as rendering a few thousand digits. Like fontconfig's cache, an entry
belongs to one font file and is valid only while that file is unchanged (same resolved path, size, modification
time, inode and device) and while the code and libraries that produced it are the same: the directory name is a
digest of this package's probing and rendering source files and of the Pillow, FreeType and numpy versions, so
an edit to either module starts a fresh cache.

An entry is a JSON line and raw array bytes (no pickle): a planted or damaged entry can at worst be ignored, never
run code. The cache is best-effort: an entry that cannot be read is probed again, and one that cannot be
written (read-only home, full disk) is skipped silently. ``$EXPFORGE_FONT_CACHE=off`` disables it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
from PIL import features

if TYPE_CHECKING:
    from expforge.data.font_discovery import FontFace, SkippedFont

#: ``off`` disables the cache; a path puts it there; unset uses the default below.
CACHE_ENV = "EXPFORGE_FONT_CACHE"
CACHE_DIR_ENV = "EXPFORGE_CACHE_DIR"
_FORMAT = 1
#: First bytes of an entry: a JSON line describing the faces, then their glyph and feature bytes.
_MAGIC = b"expforge-font-probes 1\n"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """Digest of what decides a probe result: the probing and rendering code and the library versions."""
    from expforge.data import font_discovery, font_render

    digest = hashlib.sha256(f"format {_FORMAT}\n".encode())
    for module in (font_discovery, font_render):
        digest.update(Path(module.__file__ or "").read_bytes())
    versions = (PIL.__version__, features.version("freetype2") or "", np.__version__)
    digest.update("\n".join(versions).encode())
    return digest.hexdigest()[:20]


def default_cache_dir() -> Path | None:
    """Where entries live: ``$EXPFORGE_FONT_CACHE``, else ``$EXPFORGE_CACHE_DIR/font-probes``, else
    ``$XDG_CACHE_HOME/expforge/font-probes`` or ``~/.cache/expforge/font-probes``; ``None`` when turned off."""
    chosen = os.environ.get(CACHE_ENV, "")
    if chosen.strip().lower() in ("off", "0", "no", "false"):
        return None
    if chosen:
        return Path(chosen)
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]) / "font-probes"
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory: no cache
            return None
    return Path(base) / "expforge" / "font-probes"


def _entry(cache_dir: Path, path: str) -> Path | None:
    """The entry file for the font file ``path`` as it is now; ``None`` if the file cannot be examined."""
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
        fingerprint = _code_fingerprint()  # the source files may be unreadable (a zipped install): no cache then
    except OSError:
        return None
    key = json.dumps([real, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev])
    return cache_dir / fingerprint / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.probe"


def load(cache_dir: Path, path: str) -> list[FontFace | SkippedFont] | None:
    """The cached probe results of ``path``, or ``None`` when there is no valid entry."""
    from expforge.data.font_discovery import DIGITS, FontFace, SkippedFont

    entry = _entry(cache_dir, path)
    if entry is None:
        return None
    try:
        data = entry.read_bytes()
        if not data.startswith(_MAGIC):
            return None
        head_end = data.index(b"\n", len(_MAGIC))
        meta = json.loads(data[len(_MAGIC) : head_end].decode("utf-8"))
        body = memoryview(data)[head_end + 1 :]
        results: list[FontFace | SkippedFont] = []
        offset = 0
        for item in meta:
            index = int(item["index"])
            if item["kind"] == "skipped":
                results.append(SkippedFont(path if index == 0 else f"{path}#{index}", str(item["reason"])))
                continue
            glyphs = []
            for height, width in item["shapes"]:
                size = int(height) * int(width)
                glyphs.append(np.frombuffer(body[offset : offset + size], dtype=np.uint8).reshape(height, width))
                offset += size
            feature_shape = tuple(int(n) for n in item["features"])
            size = int(np.prod(feature_shape)) * 4
            features = np.frombuffer(body[offset : offset + size], dtype="<f4").reshape(feature_shape)
            offset += size
            if len(glyphs) != len(DIGITS):
                return None
            family, style = str(item["family"]), str(item["style"])
            results.append(FontFace(path, index, family, style, tuple(g.copy() for g in glyphs), features.copy()))
        if offset != len(body):
            return None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return results


def store(cache_dir: Path, path: str, results: list[FontFace | SkippedFont]) -> None:
    """Write the entry for ``path`` atomically (temporary file, then rename); any failure leaves no entry."""
    from expforge.data.font_discovery import FontFace

    entry = _entry(cache_dir, path)
    if entry is None:
        return
    meta: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for result in results:
        if isinstance(result, FontFace):
            features = np.ascontiguousarray(result.features, dtype="<f4")
            meta.append(
                {
                    "kind": "face",
                    "index": result.index,
                    "family": result.family,
                    "style": result.style,
                    "shapes": [list(g.shape) for g in result.glyphs],
                    "features": list(features.shape),
                }
            )
            chunks.extend(np.ascontiguousarray(g, dtype=np.uint8).tobytes() for g in result.glyphs)
            chunks.append(features.tobytes())
        else:
            index = 0 if result.font_file == path else int(result.font_file.removeprefix(f"{path}#"))
            meta.append({"kind": "skipped", "index": index, "reason": result.reason})
    content = b"".join([_MAGIC, json.dumps(meta).encode("utf-8"), b"\n", *chunks])
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(prefix=".entry-", dir=entry.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.replace(temporary, entry)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return
