"""The ``expforge`` command line: every step of the library, the compiler and the local runner.

The app and its one bad-input policy live in :mod:`.app`; the commands live by area — the central ones in this
package (:mod:`.data`, :mod:`.evaluation`, :mod:`.pipelines`), the larger areas' beside their step library
(``expforge.train.torch_cli``, ``expforge.tracking.cli``, ...). Each area module defines
``register(command, app)`` and is imported here by a plain import statement: the list below is the whole
command line, a reader (or mypy, or import-linter) can follow every entry, and a misspelt module fails at once
instead of at run time. The order of the list is the order of ``expforge --help``.

No area module imports this package (the dependency points down only); each command imports its step lazily,
so ``expforge --help`` stays fast and a command needs only its own extra.
"""

from __future__ import annotations

from expforge.adapt import cli as adapt_cli
from expforge.alerts import cli as alerts_cli
from expforge.cli import data, evaluation, pipelines
from expforge.cli.app import app, command, main
from expforge.cloud import cli as cloud_cli
from expforge.drift import cli as drift_cli
from expforge.registry import cli as registry_cli
from expforge.text import cli as text_cli
from expforge.text import lm_cli
from expforge.tracking import cli as tracking_cli
from expforge.train import sklearn_cli, tensorboard_cli, torch_cli
from expforge.tune import cli as tune_cli
from expforge.ui import cli as ui_cli

__all__ = ["AREAS", "app", "command", "main"]

#: Every module that adds commands, in the order ``expforge --help`` lists them.
AREAS = (
    data,
    evaluation,
    pipelines,
    sklearn_cli,
    torch_cli,
    tensorboard_cli,
    adapt_cli,
    tune_cli,
    text_cli,
    lm_cli,
    drift_cli,
    registry_cli,
    cloud_cli,
    tracking_cli,
    ui_cli,
    alerts_cli,
)

for _area in AREAS:
    _area.register(command, app)
