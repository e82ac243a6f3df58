"""A cache of font probe results, so a second run does not render every installed font again.

Probing the ~460 files of a Debian font install (render eleven characters per face, compare, reduce) costs about
a second of CPU on every run, as much as rendering a few thousand digits. Like fontconfig's cache, an entry
belongs to one font file and is valid only while that file is unchanged (same resolved path, size, modification
time, inode and device) and while the code and libraries that produced it are the same: the cache file is named
by a digest of this package's probing and rendering source files and of the Pillow, FreeType and numpy
versions, so an edit to either module starts a fresh cache.

All entries live in one file, read once and rewritten (temporary file, then rename) only when a run probed a
file it did not hold, so a run in a throw-away container costs one small write. The file is a JSON line and raw
array bytes, no pickle: a planted or damaged cache can at worst be ignored, never run code. The cache is
best-effort: a cache that cannot be read is treated as empty, one that cannot be written (read-only home, full
disk) is skipped silently. ``$EXPFORGE_FONT_CACHE=off`` disables it, a path puts it there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
from PIL import features

if TYPE_CHECKING:
    from expforge.data.font_discovery import FontFace, SkippedFont

    ProbeResult = list[FontFace | SkippedFont]

#: ``off`` disables the cache; a path puts it there; unset uses the default below.
CACHE_ENV = "EXPFORGE_FONT_CACHE"
CACHE_DIR_ENV = "EXPFORGE_CACHE_DIR"
#: First bytes of the cache file: then a JSON line describing every entry, then their glyph and feature bytes.
_MAGIC = b"expforge-font-probes 1\n"
#: Entries kept at most (oldest dropped first), so that fonts probed once from temporary paths cannot pile up.
MAX_ENTRIES = 4096


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """Digest of what decides a probe result: the probing and rendering code and the library versions."""
    from expforge.data import font_discovery, font_render

    digest = hashlib.sha256(_MAGIC)
    for module in (font_discovery, font_render):
        digest.update(Path(module.__file__ or "").read_bytes())
    versions = (PIL.__version__, features.version("freetype2") or "", np.__version__)
    digest.update("\n".join(versions).encode())
    return digest.hexdigest()[:20]


def default_cache_dir() -> Path | None:
    """Where the cache lives: ``$EXPFORGE_FONT_CACHE``, else ``$EXPFORGE_CACHE_DIR/font-probes``, else
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


def file_key(path: str) -> str | None:
    """What identifies the font file ``path`` as it is now; ``None`` if it cannot be examined."""
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError:
        return None
    return json.dumps([real, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev])


def cache_file(cache_dir: Path) -> Path | None:
    """The cache file for this code and these libraries; ``None`` when the source files cannot be read."""
    try:
        return cache_dir / f"{_code_fingerprint()}.probes"
    except OSError:  # e.g. a zipped install
        return None


# --- one entry <-> JSON + bytes --------------------------------------------------------------------------------


def _encode(path: str, results: ProbeResult, chunks: list[bytes]) -> list[dict[str, object]]:
    from expforge.data.font_discovery import FontFace

    meta: list[dict[str, object]] = []
    for result in results:
        if isinstance(result, FontFace):
            feature = np.ascontiguousarray(result.features, dtype="<f4")
            glyphs = [np.ascontiguousarray(g, dtype=np.uint8) for g in result.glyphs]
            meta.append(
                {
                    "kind": "face",
                    "index": result.index,
                    "family": result.family,
                    "style": result.style,
                    "shapes": [list(g.shape) for g in glyphs],
                    "features": list(feature.shape),
                }
            )
            chunks.extend(g.tobytes() for g in glyphs)
            chunks.append(feature.tobytes())
        else:
            index = 0 if result.font_file == path else int(result.font_file.removeprefix(f"{path}#"))
            meta.append({"kind": "skipped", "index": index, "reason": result.reason})
    return meta


def _decode(path: str, meta: list[dict[str, object]], body: memoryview) -> ProbeResult:
    """One entry's results for the font file named ``path`` now (names in results follow the current path)."""
    from expforge.data.font_discovery import DIGITS, FontFace, SkippedFont

    results: ProbeResult = []
    offset = 0

    def take(shape: Sequence[int], dtype: str) -> np.ndarray:
        nonlocal offset
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if offset + size > len(body):
            raise ValueError("truncated entry")
        array = np.frombuffer(body[offset : offset + size], dtype=dtype).reshape(shape).copy()
        offset += size
        return array

    for item in meta:
        index = int(str(item["index"]))
        name = path if index == 0 else f"{path}#{index}"
        if item["kind"] == "skipped":
            results.append(SkippedFont(name, str(item["reason"])))
            continue
        shapes = item["shapes"]
        if not isinstance(shapes, list) or len(shapes) != len(DIGITS):
            raise ValueError("bad entry")
        glyphs = tuple(take([int(n) for n in shape], "u1") for shape in shapes)
        feature = take([int(n) for n in item["features"]], "<f4")  # type: ignore[attr-defined]
        results.append(FontFace(path, index, str(item["family"]), str(item["style"]), glyphs, feature))
    if offset != len(body):
        raise ValueError("entry length mismatch")
    return results


# --- the cache file --------------------------------------------------------------------------------------------


@dataclass
class ProbeCache:
    """The entries read from one cache file: ``key → (meta, bytes)``, in the order they were added."""

    path: Path | None
    entries: dict[str, tuple[list[dict[str, object]], bytes]]
    changed: bool = False

    def get(self, key: str, font_path: str) -> ProbeResult | None:
        """The results cached under ``key``, named for ``font_path``; ``None`` if absent or unreadable."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        try:
            return _decode(font_path, entry[0], memoryview(entry[1]))
        except (ValueError, KeyError, TypeError):
            del self.entries[key]
            return None

    def put(self, key: str, font_path: str, results: ProbeResult) -> None:
        chunks: list[bytes] = []
        meta = _encode(font_path, results, chunks)
        self.entries.pop(key, None)
        self.entries[key] = (meta, b"".join(chunks))
        self.changed = True

    def save(self) -> None:
        """Rewrite the cache file if anything was added (atomically; silently skipped where it cannot be)."""
        if self.path is None or not self.changed:
            return
        keys = list(self.entries)[-MAX_ENTRIES:]
        index = [[key, self.entries[key][0], len(self.entries[key][1])] for key in keys]
        content = b"".join([_MAGIC, json.dumps(index).encode("utf-8"), b"\n", *(self.entries[k][1] for k in keys)])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(prefix=".probes-", dir=self.path.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(content)
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            return
        self.changed = False


def open_cache(cache_dir: Path | None) -> ProbeCache:
    """The cache in ``cache_dir`` (empty when there is none, it cannot be read or ``cache_dir`` is ``None``)."""
    path = cache_file(cache_dir) if cache_dir is not None else None
    entries: dict[str, tuple[list[dict[str, object]], bytes]] = {}
    if path is None:
        return ProbeCache(None, entries)
    try:
        data = path.read_bytes()
        if data.startswith(_MAGIC):
            head_end = data.index(b"\n", len(_MAGIC))
            index = json.loads(data[len(_MAGIC) : head_end].decode("utf-8"))
            offset = head_end + 1
            for key, meta, length in index:
                entries[str(key)] = (meta, data[offset : offset + int(length)])
                offset += int(length)
            if offset != len(data):
                entries = {}
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        entries = {}
    return ProbeCache(path, entries)
