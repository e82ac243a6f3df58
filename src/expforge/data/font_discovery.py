"""Find the fonts that can draw the digits 0–9, once each.

A font file "has" a digit only if it draws a real glyph for it. FreeType maps a missing character to glyph 0
(``.notdef``, usually an empty box), so every digit is compared with what the face draws for a character no font
maps (U+10FFFF); a face is also rejected when a digit leaves no ink or when two digits look the same. Symbol fonts
can still map the digit code points to pictures (URW's Dingbats draws scissors and stars for "0"–"9"), so with
enough fonts at hand each face's digits must also look like the consensus digit shapes of all the others.

Many fonts ship the same digit outlines under another name (most Noto script fonts copy Noto Sans' digits;
some faces are the same family+style from two packages). Those are dropped as duplicates so that they neither
inflate the number of families nor tilt the balance of the dataset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageChops

from expforge.data import font_cache
from expforge.data.font_render import open_font, reduce_glyph, render_char, shape_feature
from expforge.errors import ExpforgeError

DIGITS = "0123456789"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
#: A code point that is never mapped (a Unicode noncharacter), so it always renders ``.notdef``.
UNMAPPED_CHAR = "\U0010ffff"
#: RMS difference (grey levels 0–1, over the ten digits fitted into 20×20 boxes) below which two faces count as
#: the same digit design. Measured on Debian's fonts: copies that differ only by hinting or metrics (Noto Sans
#: and the Noto script fonts that reuse its digits) stay below 0.02; the closest genuinely different faces
#: (Lato Italic vs Lato Medium Italic) are at 0.036.
DUPLICATE_DISTANCE = 0.03
#: The consensus check needs this many faces to have a meaningful majority.
CONSENSUS_MIN_FACES = 8
#: How many of a face's ten digits must resemble the consensus shape of the same digit. Measured on Debian's
#: fonts: printed faces score 9–10, handwriting fonts (fonts-bwht, fonts-dkg-handwriting, Kristi, …) 6–10,
#: URW Dingbats 4.
CONSENSUS_MIN_MATCHES = 6
#: A digit "resembles" its consensus shape when that shape is among its this many most similar consensus shapes.
#: Handwritten designs (an open 4, a 9 with a straight stem) are often nearer a second digit's printed
#: consensus than their own, yet rarely outside the top three; a picture (a Dingbat) is nowhere near its digit.
CONSENSUS_TOP = 3
#: Blur (in pixels of the 20×20 box) applied before comparing shapes, so that stroke weight and the thin strokes
#: of pen-like fonts matter little.
CONSENSUS_BLUR = 2.0


@dataclass(frozen=True)
class FontFace:
    """One usable face: where it is, what it is called and its ten digit glyphs at working resolution."""

    path: str
    index: int
    family: str
    style: str
    glyphs: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    features: np.ndarray = field(repr=False, compare=False)

    @property
    def font_file(self) -> str:
        """The file, with ``#index`` for faces after the first of a collection (.ttc)."""
        return self.path if self.index == 0 else f"{self.path}#{self.index}"

    @property
    def label(self) -> str:
        return f"{self.family} {self.style} ({self.font_file})"


@dataclass(frozen=True)
class SkippedFont:
    """A font file or face that was not used, and why (recorded in ``dataset.json``)."""

    font_file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"font_file": self.font_file, "reason": self.reason}


@dataclass(frozen=True)
class FontDiscovery:
    """The faces to render from, plus everything that was looked at and not used."""

    faces: list[FontFace]
    skipped: list[SkippedFont]
    duplicates: list[SkippedFont]
    searched: list[str]


# --- files -----------------------------------------------------------------------------------------------------


def default_font_dirs() -> list[Path]:
    """Where fontconfig looks on Linux: the system and local share directories and the user's font folders."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    candidates = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        data_home / "fonts",
        Path.home() / ".fonts",
    ]
    return [path for path in candidates if path.is_dir()]


def _font_files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def collect_font_files(sources: Sequence[Path | str] | None) -> tuple[list[Path], list[str]]:
    """Font files named by ``sources`` (directories are searched recursively) and the list of what was searched.

    ``None`` means the default directories. A missing path, a file that is not a font or a directory without any
    font file is an error naming it; a file reached twice (listed twice, or through a link) is used once.
    """
    if sources is None:
        directories = default_font_dirs()
        searched = [str(d) for d in directories]
        files = [f for d in directories for f in _font_files_in(d)]
        if not files:
            where = ", ".join(searched) if searched else "/usr/share/fonts, /usr/local/share/fonts, ~/.fonts"
            raise ExpforgeError(f"no .ttf/.otf/.ttc font files found in {where}; pass --fonts DIR_OR_FILE")
    else:
        if not sources:
            raise ExpforgeError("--fonts: no font directories or files given")
        searched = []
        files = []
        for source in sources:
            path = Path(source)
            searched.append(str(path))
            if path.is_dir():
                found = _font_files_in(path)
                if not found:
                    raise ExpforgeError(f"--fonts: {path}: directory contains no .ttf/.otf/.ttc font files")
                files.extend(found)
            elif path.is_file():
                if path.suffix.lower() not in FONT_SUFFIXES:
                    raise ExpforgeError(f"--fonts: {path}: not a font file; expected .ttf, .otf or .ttc")
                files.append(path)
            else:
                raise ExpforgeError(f"--fonts: {path}: no such file or directory")
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), searched


def face_count(path: Path | str) -> int:
    """Number of faces in a font file: a TrueType collection says so in its header, other files hold one."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except OSError:
        return 1
    if len(header) == 12 and header[:4] == b"ttcf":
        return max(1, min(struct.unpack(">I", header[8:12])[0], 256))
    return 1


# --- probing ---------------------------------------------------------------------------------------------------


def _same_image(a: Image.Image, b: Image.Image) -> bool:
    """Pixel-identical (compared in C; converting to bytes costs more than rendering on small glyphs)."""
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def probe_face(path: str, index: int = 0) -> FontFace | SkippedFont:
    """Render the ten digits of one face and decide whether they are real, distinct glyphs."""
    name = path if index == 0 else f"{path}#{index}"
    try:
        font = open_font(path, index)
        family, style = font.getname()
    except (OSError, ValueError) as exc:
        return SkippedFont(name, f"cannot be opened by FreeType ({exc})")
    family = (family or Path(path).stem).strip()
    style = (style or "Regular").strip()
    try:
        notdef = render_char(font, UNMAPPED_CHAR)
        glyphs: list[Image.Image] = []
        for digit in DIGITS:
            glyph = render_char(font, digit)
            if glyph is None:
                return SkippedFont(name, f"digit {digit} draws no ink")
            if notdef is not None and _same_image(glyph, notdef):
                return SkippedFont(name, f"no glyph for digit {digit} (it renders the .notdef box)")
            twin = next((DIGITS[i] for i, other in enumerate(glyphs) if _same_image(glyph, other)), None)
            if twin is not None:
                return SkippedFont(name, f"digits {twin} and {digit} render the same glyph")
            glyphs.append(glyph)
    except (OSError, ValueError) as exc:
        return SkippedFont(name, f"cannot render digits ({exc})")
    reduced = tuple(reduce_glyph(g) for g in glyphs)
    features = np.stack([shape_feature(g) for g in glyphs])
    return FontFace(path, index, family, style, reduced, features)


def probe_file(path: str) -> list[FontFace | SkippedFont]:
    """Probe every face of one file (module-level so that a process pool can run it)."""
    return [probe_face(path, index) for index in range(face_count(path))]


# --- choosing --------------------------------------------------------------------------------------------------


def _consensus_matches(features: np.ndarray) -> np.ndarray:
    """For each face, how many of its digits have the consensus shape of the same digit among their
    ``CONSENSUS_TOP`` best-correlated consensus shapes.

    Shapes are blurred and compared by correlation, so stroke weight matters little (hairline and black faces
    of one design match each other); the consensus is the per-pixel median over all faces.
    """
    size = features.shape[-1]
    grid = np.arange(size, dtype=np.float64)
    blur = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / CONSENSUS_BLUR) ** 2)
    blur /= blur.sum(axis=1, keepdims=True)
    shapes = (blur @ features.astype(np.float64) @ blur.T).reshape(len(features), len(DIGITS), -1)
    templates = np.median(shapes, axis=0)

    def standardise(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(axis=-1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    similarity = np.einsum("ndk,ek->nde", standardise(shapes), standardise(templates))
    own = similarity[:, np.arange(len(DIGITS)), np.arange(len(DIGITS))]
    better_shapes = (similarity > own[:, :, None]).sum(axis=2)
    return (better_shapes < CONSENSUS_TOP).sum(axis=1)


def _drop_non_digits(faces: list[FontFace]) -> tuple[list[FontFace], list[SkippedFont]]:
    """Reject faces whose digits do not resemble the consensus digit shapes (symbol fonts mapping 0–9)."""
    if len(faces) < CONSENSUS_MIN_FACES:
        return faces, []
    matches = _consensus_matches(np.stack([f.features for f in faces]))
    kept = [f for f, m in zip(faces, matches, strict=True) if m >= CONSENSUS_MIN_MATCHES]
    skipped = [
        SkippedFont(f.font_file, f"its digits do not look like 0–9 (only {m} of 10 resemble the usual shapes)")
        for f, m in zip(faces, matches, strict=True)
        if m < CONSENSUS_MIN_MATCHES
    ]
    return kept, skipped


def _drop_duplicates(faces: list[FontFace]) -> tuple[list[FontFace], list[SkippedFont]]:
    """Keep the first face of each family+style and of each digit design (faces are in preference order)."""
    if not faces:
        return [], []
    flat = np.stack([f.features for f in faces]).reshape(len(faces), -1).astype(np.float64)
    squares = (flat**2).sum(axis=1)
    rms = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2.0 * flat @ flat.T, 0.0) / flat.shape[1])
    kept: list[int] = []
    duplicates: list[SkippedFont] = []
    seen_names: dict[tuple[str, str], FontFace] = {}
    for i, face in enumerate(faces):
        key = (face.family.casefold(), face.style.casefold())
        if key in seen_names:
            duplicates.append(SkippedFont(face.font_file, f"same family and style as {seen_names[key].font_file}"))
            continue
        if kept:
            nearest = kept[int(rms[i, kept].argmin())]
            if rms[i, nearest] < DUPLICATE_DISTANCE:
                duplicates.append(SkippedFont(face.font_file, f"same digit shapes as {faces[nearest].label}"))
                continue
        seen_names[key] = face
        kept.append(i)
    return [faces[i] for i in kept], duplicates


def discover_fonts(
    sources: Sequence[Path | str] | None,
    *,
    map_fn: Callable[[Callable[[str], list[FontFace | SkippedFont]], Iterable[str]], Iterable[object]] = map,
    cache: bool = True,
) -> FontDiscovery:
    """Find, probe and deduplicate the faces under ``sources``; ``map_fn`` may be a process pool's ordered map.

    Files whose probe results are in the cache (``font_cache``) are not probed again, unless ``cache`` is false
    or the cache is turned off; either way the result is the same.

    Faces are preferred in the order family, style, file, so that a generic family ("Noto Sans") is kept over
    the script-specific ones that copy its digits ("Noto Sans Bengali"), whatever order the files were found in.
    """
    files, searched = collect_font_files(sources)
    names = [str(f) for f in files]
    store = font_cache.open_cache(font_cache.default_cache_dir() if cache else None)
    keys = [font_cache.file_key(name) for name in names]
    probed: dict[int, list[FontFace | SkippedFont]] = {}
    for number, (name, key) in enumerate(zip(names, keys, strict=True)):
        hit = store.get(key, name) if key is not None else None
        if hit is not None:
            probed[number] = hit
    missing = [number for number in range(len(names)) if number not in probed]
    for number, items in zip(missing, map_fn(probe_file, [names[n] for n in missing]), strict=True):
        probed[number] = cast(list[FontFace | SkippedFont], items)
        key = keys[number]
        if key is not None:
            store.put(key, names[number], probed[number])
    store.save()
    results = [item for number in range(len(names)) for item in probed[number]]
    faces = [r for r in results if isinstance(r, FontFace)]
    skipped = [r for r in results if isinstance(r, SkippedFont)]
    faces.sort(key=lambda f: (f.family.casefold(), f.style.casefold(), f.path, f.index))
    faces, not_digits = _drop_non_digits(faces)
    faces, duplicates = _drop_duplicates(faces)
    return FontDiscovery(faces, skipped + not_digits, duplicates, searched)
