"""Lay out the installed package as one directory tree, for the tools that read source files by module name.

The distribution maps ``components/``, ``pipelines/`` and ``local_runner/`` onto ``expforge.components``,
``expforge.pipelines`` and ``expforge.local_runner`` (setuptools ``package-dir``), and the editable install
resolves that with an import hook. mypy and import-linter read files, not hooks: they need a directory where the
file of ``expforge.components.select_top`` is ``expforge/components/select_top.py``. This script builds that
directory out of symbolic links (nothing is copied, so an edit is seen at once) and prints its root.

Usage: ``python .ci/layers_tree.py [ROOT] [OUT]`` (default: the repository, ``build/layers``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

MAPPED = {"components": "components", "pipelines": "pipelines", "local_runner": "local_runner"}


def build(root: Path, out: Path) -> Path:
    """``out/expforge`` with every entry of ``src/expforge`` and the mapped folders, as symbolic links."""
    package = out / "expforge"
    if out.exists():
        shutil.rmtree(out)
    package.mkdir(parents=True)
    for entry in sorted((root / "src" / "expforge").iterdir()):
        if entry.name != "__pycache__":
            os.symlink(entry.resolve(), package / entry.name)
    for name, folder in MAPPED.items():
        os.symlink((root / folder).resolve(), package / name)
    return out


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else here
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "build" / "layers"
    print(build(root.resolve(), out.resolve()))
