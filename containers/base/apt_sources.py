"""Read the machine's own Debian apt sources, for debootstrap and for the image's /etc/apt.

Why: machines without a container registry still have a Debian mirror configured for apt (a local mirror, a
snapshot, a proxy). The base image is bootstrapped from *that* mirror, read at run time, so no mirror host is
ever written into the repository.

    python3 apt_sources.py mirror SUITE     -> the URI serving SUITE's main component (for debootstrap)
    python3 apt_sources.py sources SUITE    -> a deb822 .sources file for SUITE, SUITE-updates, SUITE-security

Both read ``/etc/apt/sources.list.d/*.sources`` (deb822) and ``*.list`` / ``/etc/apt/sources.list``
(one-line format). Only ``deb`` entries of the ``main`` component count; URIs carrying credentials are skipped.
"""

import glob
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

APT_DIR = "/etc/apt"


@dataclass(frozen=True)
class Entry:
    """One ``deb URI SUITE main`` line of the machine's apt configuration."""

    uri: str
    suite: str
    signed_by: str


def _deb822_entries(text: str) -> list[Entry]:
    entries: list[Entry] = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        if "main" not in fields.get("components", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append(Entry(uri.rstrip("/"), suite, fields.get("signed-by", "")))
    return entries


def _one_line_entries(text: str) -> list[Entry]:
    entries: list[Entry] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts or parts[0] != "deb":
            continue
        parts = parts[1:]
        signed_by = ""
        if parts and parts[0].startswith("["):
            options = []
            while parts:
                options.append(parts.pop(0))
                if options[-1].endswith("]"):
                    break
            for option in " ".join(options).strip("[]").split():
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
        if len(parts) >= 3 and "main" in parts[2:]:
            entries.append(Entry(parts[0].rstrip("/"), parts[1], signed_by))
    return entries


def machine_entries() -> list[Entry]:
    """Every usable ``deb … main`` entry of the machine, in apt's reading order."""
    entries: list[Entry] = []
    for path in [f"{APT_DIR}/sources.list", *sorted(glob.glob(f"{APT_DIR}/sources.list.d/*.list"))]:
        if Path(path).is_file():
            entries += _one_line_entries(Path(path).read_text(encoding="utf-8"))
    for path in sorted(glob.glob(f"{APT_DIR}/sources.list.d/*.sources")):
        entries += _deb822_entries(Path(path).read_text(encoding="utf-8"))
    return [e for e in entries if urlsplit(e.uri).scheme in ("http", "https", "file") and "@" not in e.uri]


def main(argv: list[str]) -> int:
    """Print the mirror or the sources file for a suite; exit 1 with a message when the machine has none."""
    if len(argv) != 2 or argv[0] not in ("mirror", "sources"):
        print(__doc__, file=sys.stderr)
        return 2
    command, suite = argv
    entries = machine_entries()
    main_entries = [e for e in entries if e.suite == suite]
    if not main_entries:
        print(f"no 'deb … {suite} main' entry in {APT_DIR}/sources.list[.d]; set DEBIAN_MIRROR", file=sys.stderr)
        return 1
    if command == "mirror":
        print(main_entries[0].uri)
        return 0
    stanzas = []
    for wanted in (suite, f"{suite}-updates", f"{suite}-security"):
        for entry in entries:
            if entry.suite == wanted:
                signed = f"\nSigned-By: {entry.signed_by}" if entry.signed_by.startswith("/usr/share/keyrings/") else ""
                stanzas.append(f"Types: deb\nURIs: {entry.uri}\nSuites: {wanted}\nComponents: main{signed}\n")
                break
    print("\n".join(stanzas), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
