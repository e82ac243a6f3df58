"""Load the repository's stand-alone scripts (``containers/build_images.py``, ...) as modules for tests.

Why: those scripts use only the standard library and are run as files, not installed; tests import them by path.
One loader keeps the one subtle step in one place: the module is registered in ``sys.modules`` before it runs,
because dataclasses look their module up while the class body executes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str, path: Path) -> ModuleType:
    """Execute the file at ``path`` as module ``name`` (registered in ``sys.modules``) and return it."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_build_images() -> ModuleType:
    """``containers/build_images.py`` (it also puts ``containers/`` on ``sys.path`` for ``imagebuild``)."""
    return load_script("expforge_build_images", REPO / "containers" / "build_images.py")
