"""The local model registry: a directory with an SQLite catalogue and a copy of every version's files.

Layout of the root (``EXPFORGE_REGISTRY_ROOT``; the local runner points it at ``<runs root>/registry``)::

    registry.sqlite                 versions (name, version, evaluation, …) and aliases (name, alias → version)
    models/<name>/<version>/...     the registered files, copied

Why SQLite: concurrent pipeline tasks may register at once, and ``BEGIN IMMEDIATE`` serialises writers across
processes, so version numbers never collide and an alias move is one transaction. Files are copied into a
hidden staging directory first and renamed to ``<version>`` inside that transaction: a failure at any point
leaves neither a catalogue row without files nor a version directory without a row, and never takes an alias
from the version that held it.

What gets in: regular files only, opened without following links (no symbolic link, device file or FIFO is
copied or read), and no pickle. What comes out: a version whose catalogue ``uri`` was edited to point outside
its own directory is refused, so a champion cannot be repointed at a file elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from expforge.errors import ExpforgeError
from expforge.registry.base import (
    DEFAULT_ALIAS,
    ModelRegistry,
    ModelVersion,
    NotRegisteredError,
    Registration,
    check_alias,
    check_model_name,
)

ROOT_ENV = "EXPFORGE_REGISTRY_ROOT"
DEFAULT_ROOT = Path("runs") / "registry"
DB_NAME = "registry.sqlite"
MODELS_DIR = "models"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    uri TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    metadata TEXT NOT NULL,
    labels TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions (name, version)
);
"""


def default_root() -> Path:
    """``$EXPFORGE_REGISTRY_ROOT``, else ``runs/registry``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


class LocalRegistry(ModelRegistry):
    """A :class:`~expforge.registry.base.ModelRegistry` in a local directory (see the module docstring)."""

    kind = "local"

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    # --- storage -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExpforgeError(f"{self.root}: cannot create the registry directory ({exc.strerror})") from None
        connection = sqlite3.connect(self.root / DB_NAME, timeout=60, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            connection.executescript(_SCHEMA)
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _version(self, db: sqlite3.Connection, name: str, version: int) -> ModelVersion:
        row = db.execute("SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is None:
            raise NotRegisteredError(f"model {name!r} has no version {version}")
        aliases = [
            r["alias"] for r in db.execute("SELECT alias FROM aliases WHERE name = ? AND version = ?", (name, version))
        ]
        return ModelVersion(
            name=name,
            version_id=str(version),
            aliases=sorted(aliases),
            uri=self._checked_uri(name, version, row["uri"]),
            evaluation=json.loads(row["evaluation"]),
            metadata=json.loads(row["metadata"]),
            labels=json.loads(row["labels"]),
            created=row["created"],
            resource=str(self.root / MODELS_DIR / name / str(version)),
        )

    def _checked_uri(self, name: str, version: int, uri: str) -> str:
        """``uri`` if it lies inside its own version directory; a catalogue row edited to point anywhere else (the
        champion repointed at a file outside the registry) is refused, never handed to a loader."""
        version_dir = Path(os.path.realpath(self.root / MODELS_DIR / name / str(version)))
        real = Path(os.path.realpath(uri))
        if real == version_dir or not real.is_relative_to(version_dir):
            raise ExpforgeError(
                f"{self.root / DB_NAME}: model {name!r} version {version} points at {uri}, outside its registry "
                f"directory {version_dir}; refusing it (the catalogue was edited)"
            )
        return uri

    @staticmethod
    def _give_alias(db: sqlite3.Connection, name: str, alias: str, version: int) -> None:
        db.execute(
            "INSERT INTO aliases (name, alias, version) VALUES (?, ?, ?) "
            "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
            (name, alias, version),
        )

    # --- the protocol ----------------------------------------------------------------------------------------

    def _register(self, request: Registration) -> ModelVersion:
        """Copy the artifact in and record it as the model's next version (see the module docstring)."""
        name, source, wanted = request.name, request.source, list(request.aliases)
        check_source_tree(source)
        checked_evaluation, checked_metadata, checked_labels = request.evaluation, request.metadata, request.labels

        model_dir = self.root / MODELS_DIR / name
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExpforgeError(f"{model_dir}: cannot create ({exc.strerror})") from None
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        target: Path | None = None
        try:
            copy_artifact(source, staging / source.name)
            with self._connect(write=True) as db:
                row = db.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()
                previous = row[0] or 0
                version = previous + 1
                if (model_dir / str(version)).exists():  # left by a crash before COMMIT: not in the catalogue
                    shutil.rmtree(model_dir / str(version))
                uri = str((model_dir / str(version) / source.name).absolute())
                db.execute(
                    "INSERT INTO versions (name, version, uri, evaluation, metadata, labels, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        version,
                        uri,
                        json.dumps(checked_evaluation, sort_keys=True),
                        json.dumps(checked_metadata, sort_keys=True),
                        json.dumps(checked_labels, sort_keys=True),
                        datetime.now(UTC).isoformat(timespec="seconds"),
                    ),
                )
                if previous == 0 and DEFAULT_ALIAS not in wanted:
                    wanted.append(DEFAULT_ALIAS)  # a model's first version is its default, as in Vertex
                for alias in wanted:
                    self._give_alias(db, name, alias, version)
                registered = self._version(db, name, version)
                os.rename(staging, model_dir / str(version))  # the last step before COMMIT
                target = model_dir / str(version)
        except BaseException:
            if target is not None:  # renamed, then COMMIT failed: the catalogue has no row for it
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return registered

    def get(self, model_name: str, ref: str = DEFAULT_ALIAS) -> ModelVersion:
        name = check_model_name(model_name)
        ref = str(ref)
        with self._connect(write=False) as db:
            if ref.isdigit():
                return self._version(db, name, int(ref))
            row = db.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, ref)).fetchone()
            if row is None:
                raise NotRegisteredError(f"model {name!r} has no version with alias {ref!r}")
            return self._version(db, name, row["version"])

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        name = check_model_name(model_name)
        with self._connect(write=False) as db:
            numbers = [
                r[0] for r in db.execute("SELECT version FROM versions WHERE name = ? ORDER BY version", (name,))
            ]
            return [self._version(db, name, n) for n in numbers]

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        """Hold an exclusive lock on ``model_name`` (across processes) for a read-decide-register sequence, so
        two concurrent registrations cannot both compare themselves with the same old champion."""
        import fcntl

        name = check_model_name(model_name)
        lock_dir = self.root / MODELS_DIR / name
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def list_models(self) -> list[str]:
        """Names of all models with at least one version."""
        with self._connect(write=False) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT name FROM versions ORDER BY name")]

    def set_alias(self, model_name: str, version_id: str, alias: str) -> ModelVersion:
        name = check_model_name(model_name)
        check_alias(alias)
        version = _version_number(version_id)
        with self._connect(write=True) as db:
            self._version(db, name, version)  # raises when there is no such version
            self._give_alias(db, name, alias, version)
            return self._version(db, name, version)

    def remove_alias(self, model_name: str, alias: str) -> None:
        name = check_model_name(model_name)
        check_alias(alias)
        if alias == DEFAULT_ALIAS:
            raise ExpforgeError("alias 'default' cannot be removed; give it to another version instead")
        with self._connect(write=True) as db:
            db.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))


def check_source_tree(source: Path) -> None:
    """Refuse, before anything is copied, a source that is or holds a symbolic link, a device file, a FIFO or a
    socket (a copy would follow or block on them), or a pickle/joblib file (unpickling it runs code; the
    registry holds only skops models, checkpoints and plain files)."""
    from expforge.train.model_format import convert_hint, looks_like_pickle

    pending = [source]
    while pending:
        path = pending.pop()
        try:
            mode = os.lstat(path).st_mode
        except OSError as exc:
            raise ExpforgeError(f"{path}: cannot inspect the model artifact ({exc.strerror})") from None
        if stat.S_ISLNK(mode):
            raise ExpforgeError(f"{path}: a symbolic link; the registry copies regular files only (pass the real path)")
        if stat.S_ISDIR(mode):
            pending.extend(sorted(path.iterdir()))
        elif not stat.S_ISREG(mode):
            raise ExpforgeError(f"{path}: not a regular file (a device, FIFO or socket); refusing to register it")
        elif looks_like_pickle(path):
            raise ExpforgeError(
                f"{path}: a pickle/joblib file, refused (unpickling runs any code it holds); convert a trusted one "
                f"first with: {convert_hint(path)}"
            )


def copy_artifact(source: Path, target: Path) -> None:
    """Copy a checked file or directory tree, opening every file with ``O_NOFOLLOW`` and checking it is still a
    regular file once open, so a link swapped in after :func:`check_source_tree` is refused, not followed."""
    if os.path.isdir(source) and not os.path.islink(source):
        target.mkdir()
        for entry in sorted(source.iterdir()):
            copy_artifact(entry, target / entry.name)
        return
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ExpforgeError(
            f"{source}: cannot open the model artifact without following links ({exc.strerror})"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ExpforgeError(f"{source}: not a regular file; refusing to register it")
        with open(target, "xb") as out:
            shutil.copyfileobj(handle, out)


def _version_number(version_id: str | int) -> int:
    text = str(version_id)
    if not text.isdigit() or int(text) < 1:
        raise ExpforgeError(f"version {version_id!r}: expected a version number (1, 2, …)")
    return int(text)
