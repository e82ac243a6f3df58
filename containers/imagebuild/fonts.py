"""The font image's fonts: the files the host's Debian font packages installed, as one deterministic tar.

Debian packages cannot come from pip, and ``apt-get`` inside ``docker build`` needs network; so the files come
from the build host (``make fonts`` installs the packages) and the image recipe ``ADD``s the tar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from imagebuild.common import FONT_PACKAGES_FILE, FONTS_CACHE, HASH_LEN, BuildError, log, rel, run, sha256_json


def font_packages() -> list[str]:
    """The Debian font packages of the render-font-digits image (font-packages.txt, or $FONT_PACKAGES)."""
    if os.environ.get("FONT_PACKAGES", "").strip():
        return sorted(os.environ["FONT_PACKAGES"].split())
    lines = FONT_PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def fonts_tar(packages: Sequence[str], *, empty: bool = False) -> Path:
    """A deterministic tar of the files the host's font packages installed (paths as dpkg put them).

    Why from the host: Debian packages cannot come from pip, and ``apt-get`` inside ``docker build`` needs
    network. Docs and lintian files are left out; symlinks stay symlinks; owner root, mtime fixed, sorted, so
    the tar (and the image's content hash) only changes when a package version does. Cached by versions.
    """
    FONTS_CACHE.mkdir(parents=True, exist_ok=True)
    if empty:
        path = FONTS_CACHE / "empty.tar"
        if not path.is_file():
            with tarfile.open(path, "w", format=tarfile.GNU_FORMAT):
                pass
        return path
    if shutil.which("dpkg-query") is None:
        raise BuildError("this host has no dpkg to take font packages from; build with --fonts-from apt")
    status = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    versions = dict(line.split()[:2] for line in status.splitlines() if line.endswith(" installed"))
    missing = [p for p in packages if p not in versions]
    if missing:
        raise BuildError(
            f"font packages missing on this host: {' '.join(missing)} — run `make fonts` as root, "
            "or build with --fonts-from apt (needs network in the build)"
        )
    path = FONTS_CACHE / f"fonts-{sha256_json(versions)[:HASH_LEN]}.tar"
    if path.is_file():
        return path
    members: set[Path] = set()
    for package in packages:
        listing = run(["dpkg-query", "-L", package]).splitlines()
        for entry in listing:
            item = Path(entry)
            if not entry.startswith("/") or any(p in item.parts for p in ("doc", "lintian", "man", "metainfo")):
                continue
            if item.is_symlink() or item.is_file():
                members.add(item)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        directories = sorted({parent for m in members for parent in m.parents if parent != Path("/")})
        for item in [*directories, *sorted(members)]:
            info = tar.gettarinfo(str(item), arcname=str(item).lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if info.isdir() else (info.mode & 0o777) | 0o444
            if info.isfile():
                with item.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    tmp.replace(path)
    log(f"fonts: {len(members)} files of {len(packages)} packages -> {rel(path)}")
    return path
