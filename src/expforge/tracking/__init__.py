"""Experiment tracking behind one small protocol, selected by configuration (``EXPFORGE_TRACKING``).

Components use :func:`component_run`; tools use :func:`open_tracker` and the :class:`Tracker` protocol.
Backends: ``local`` (SQLite, :mod:`expforge.tracking.local`), ``gcp`` (Vertex AI Experiments + Firestore +
BigQuery, :mod:`expforge.tracking.gcp`), ``off``.
"""

from expforge.tracking.base import MetricCondition, RunFilter, RunRecord, RunStart, Tracker
from expforge.tracking.facade import ActiveRun, component_run, component_start, tracked_run
from expforge.tracking.select import BACKENDS, TrackingConfig, open_tracker

__all__ = [
    "BACKENDS",
    "ActiveRun",
    "MetricCondition",
    "RunFilter",
    "RunRecord",
    "RunStart",
    "Tracker",
    "TrackingConfig",
    "component_run",
    "component_start",
    "open_tracker",
    "tracked_run",
]
