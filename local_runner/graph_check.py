"""Whole-graph checks of a compiled spec — moved to :mod:`expforge.spec.graph_check` (the compiled-spec layer).
This module keeps the runner's imports working."""

from expforge.spec.graph_check import check_pipeline_graph, find_cycle, task_dependencies

__all__ = ["check_pipeline_graph", "find_cycle", "task_dependencies"]
