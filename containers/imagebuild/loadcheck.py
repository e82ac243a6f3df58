"""When a step image's load check need not run again: its inputs are those of a check that already passed.

The load check (``dockercli.check_step_loads``) imports the step's component in the built image, the way KFP's
executor will, so a module the image lacks fails the build and not the first run. It costs a container and a
``kfp`` import (about 1.5 CPU-seconds each; 18 images after every source edit). Its outcome depends only on

* the dependency image (everything below the code layer: Python, ``kfp``, the step's wheels), and
* the files of the code layer the import reads: the expforge package folders it loaded modules from (every
  import of an expforge module goes through them, starting with ``expforge/`` itself), the names of their
  sub-packages (a new one could be imported), the data folders inside them, the project's ``.dist-info``
  (metadata; ``RECORD`` left out, it lists every file's hash) and ``/app/kfp_config.ini``.

After each passing check the build records, per dependency image ID and step, the folders the import loaded
from and a digest of those inputs (``build/load-checks.json``). A later code layer on the same dependency
image whose digest over the same folders is the same would be checked against the same files in the same
image, so the check is not run again: editing ``expforge/data/manifest.py`` re-checks only the steps whose
component imports ``expforge.data`` when it loads. Anything else — a new dependency image, a changed check,
a changed file in a loaded folder — runs the check.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from imagebuild.common import BUILD, SITE_PACKAGES, sha256_file, sha256_json, write_atomic

RECORD_PATH = BUILD / "load-checks.json"


def _folder_entries(site: Path, folder: Path, entries: dict[str, str]) -> None:
    """Files directly in ``folder``, names of its sub-packages, and everything in its non-package sub-folders."""
    for path in sorted(folder.iterdir()):
        name = str(path.relative_to(site))
        if path.is_dir():
            if (path / "__init__.py").is_file():
                entries[name + "/"] = "package"
            elif path.name != "__pycache__":
                entries[name + "/"] = "folder"
                for inner in sorted(path.rglob("*")):
                    if inner.is_file():
                        entries[str(inner.relative_to(site))] = sha256_file(inner)
        elif path.is_file():
            entries[name] = sha256_file(path)


def inputs_digest(code_root: Path, folders: list[str]) -> str:
    """Digest of what a load check reads from the staged code layer ``code_root`` (see the module docstring)."""
    site = code_root / SITE_PACKAGES.lstrip("/")
    entries: dict[str, str] = {}
    for folder in sorted(set(folders)):
        path = site / folder
        if path.is_dir():
            _folder_entries(site, path, entries)
        else:
            entries[folder + "/"] = "missing"
    for dist_info in sorted(site.glob("*.dist-info")):
        for path in sorted(dist_info.rglob("*")):
            if path.is_file() and path.name != "RECORD":
                entries[str(path.relative_to(site))] = sha256_file(path)
    ini = code_root / "app" / "kfp_config.ini"
    entries["/app/kfp_config.ini"] = sha256_file(ini) if ini.is_file() else "missing"
    return sha256_json(entries)


class LoadCheckRecord:
    """The passed checks of the current images, loaded from and saved to ``build/load-checks.json``.

    ``check`` (the load-check script) is part of every key: changing the check re-runs it everywhere.
    Thread-safe: code layers are built several at a time.
    """

    def __init__(self, check: str, path: Path = RECORD_PATH) -> None:
        self.path = path
        self.check = hashlib.sha256(check.encode()).hexdigest()[:16]
        self._lock = threading.Lock()
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        self._old: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self._new: dict[str, Any] = {}

    def _key(self, deps_id: str, step: str) -> str:
        return f"{deps_id} {step} {self.check}"

    def already_passed(self, deps_id: str, step: str, code_root: Path) -> bool:
        """Whether a check on this dependency image with these inputs passed before (then it is kept)."""
        key = self._key(deps_id, step)
        entry = self._old.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("folders"), list):
            return False
        if inputs_digest(code_root, entry["folders"]) != entry.get("digest"):
            return False
        with self._lock:
            self._new[key] = entry
        return True

    def passed(self, deps_id: str, step: str, code_root: Path, folders: list[str]) -> None:
        """Record a check that just passed on ``code_root``'s layer."""
        entry = {"folders": sorted(set(folders)), "digest": inputs_digest(code_root, folders)}
        with self._lock:
            self._new[self._key(deps_id, step)] = entry

    def save(self, keep: set[tuple[str, str]] | None = None) -> None:
        """Write the record: this build's checks, plus older entries for the ``keep`` (deps ID, step) pairs
        (all older entries when ``keep`` is None, e.g. a build of some images only)."""
        with self._lock:
            merged = {
                key: value
                for key, value in self._old.items()
                if (keep is None or tuple(key.split(" ")[:2]) in keep) and key not in self._new
            }
            merged.update(self._new)
            write_atomic(self.path, json.dumps(dict(sorted(merged.items())), indent=1) + "\n")
