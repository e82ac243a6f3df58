"""Experiment Forge: typed ML experiment steps, containerized as KFP components.

The step library (``expforge.data``, ``expforge.train``, ...) is plain Python and imports neither KFP nor
Google Cloud at module import time, so every step can be unit-tested and run from the CLI directly.
"""

__version__ = "0.1.0"
