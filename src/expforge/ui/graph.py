"""The pipeline graph of a run: tasks from ``run.json`` as nodes, their dependencies from the compiled YAML.

Why the YAML and not the record: ``run.json`` says what each task did but not what it waited for; the compiled
spec's DAGs do (``dependentTasks`` and the producers of task-output inputs). A control-flow group
(``ParallelFor``, ``dsl.If``) is a sub-DAG: tasks inside it that wait on nothing inside wait on what the group
waits on. The iterations of one loop task (``train.0``, ``train.1``, ...) are drawn as one node holding a chip
per iteration, so a Hyperband rung of 27 trials stays one box. When the YAML is gone, edges are inferred from
artifact URIs (an input URI that is another task's output).

Layout: columns by longest path from a source (left to right), nodes stacked in each column in key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NODE_WIDTH = 210
NODE_HEIGHT = 58
COLUMN_GAP = 70
ROW_GAP = 18
CHIP = 14
CHIPS_PER_ROW = 12
MARGIN = 12


@dataclass
class Node:
    """One box: a task, or every iteration of one loop task (``keys`` in iteration order)."""

    node_id: str
    label: str
    component: str
    keys: list[str]
    tasks: list[dict[str, Any]]
    column: int = 0
    x: int = 0
    y: int = 0
    height: int = NODE_HEIGHT

    @property
    def grouped(self) -> bool:
        """Whether this node stands for loop iterations (drawn with a chip per iteration)."""
        return len(self.keys) > 1 or bool(self.tasks and self.tasks[0].get("iteration"))

    @property
    def state(self) -> str:
        """The node's colour: the worst state among its tasks (failed beats running beats pending ...)."""
        order = ["FAILED", "UPSTREAM_FAILED", "CANCELLED", "RUNNING", "PENDING", "SUCCEEDED", "SKIPPED"]
        states = {t.get("state", "PENDING") for t in self.tasks}
        return next((s for s in order if s in states), "PENDING")

    def summary(self) -> str:
        """Second line of the box: duration, cache hit, attempts (or counts for a group)."""
        if self.grouped:
            done = sum(1 for t in self.tasks if t.get("state") == "SUCCEEDED")
            cached = sum(1 for t in self.tasks if t.get("cached"))
            text = f"{done}/{len(self.tasks)} succeeded"
            return text + (f" · {cached} cached" if cached else "")
        task = self.tasks[0]
        parts = []
        if task.get("cached"):
            parts.append("cached")
        elif task.get("duration_s") is not None:
            parts.append(f"{float(task['duration_s']):.1f} s")
        if int(task.get("attempts") or 0) > 1:
            parts.append(f"{task['attempts']} attempts")
        return " · ".join(parts) or task.get("state", "PENDING").lower()


@dataclass
class Graph:
    """Nodes with positions, edges between node ids, and the canvas size."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def node(self, node_id: str) -> Node:
        """The node ``node_id``."""
        return next(n for n in self.nodes if n.node_id == node_id)

    def edge_paths(self) -> list[str]:
        """SVG path data for every edge: a horizontal S-curve from the right edge to the left edge."""
        by_id = {n.node_id: n for n in self.nodes}
        paths = []
        for source, target in self.edges:
            a, b = by_id[source], by_id[target]
            x1, y1 = a.x + NODE_WIDTH, a.y + min(a.height, NODE_HEIGHT) // 2
            x2, y2 = b.x, b.y + min(b.height, NODE_HEIGHT) // 2
            bend = max(20, (x2 - x1) // 2)
            paths.append(f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}")
        return paths


def _task_deps(task: Mapping[str, Any]) -> set[str]:
    deps = set(task.get("dependentTasks") or [])
    inputs = task.get("inputs") or {}
    for spec in (inputs.get("parameters") or {}).values():
        for kind in ("taskOutputParameter", "taskFinalStatus"):
            if isinstance(spec, Mapping) and kind in spec:
                deps.add(spec[kind].get("producerTask", ""))
    for spec in (inputs.get("artifacts") or {}).values():
        if isinstance(spec, Mapping) and "taskOutputArtifact" in spec:
            deps.add(spec["taskOutputArtifact"].get("producerTask", ""))
    deps.discard("")
    return deps


def spec_edges(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Task-name edges of every DAG in a compiled pipeline spec, with control-flow groups expanded."""
    components = spec.get("components") or {}

    def dag_of(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
        component = components.get((task.get("componentRef") or {}).get("name", "")) or {}
        return (component.get("dag") or {}).get("tasks")

    def leaves(tasks: Mapping[str, Any], name: str) -> set[str]:
        inner = dag_of(tasks[name])
        if inner is None:
            return {name}
        return set().union(*(leaves(inner, n) for n in inner)) if inner else set()

    edges: set[tuple[str, str]] = set()

    def walk(tasks: Mapping[str, Any], inherited: set[str]) -> None:
        for name, task in tasks.items():
            deps = _task_deps(task) & set(tasks)
            sources = set().union(*(leaves(tasks, d) for d in deps)) if deps else set(inherited)
            inner = dag_of(task)
            if inner is not None:
                walk(inner, sources)
            else:
                edges.update((source, name) for source in sources)

    walk((spec.get("root") or {}).get("dag", {}).get("tasks") or {}, set())
    return edges


_SPECS: dict[tuple[str, int, int], Mapping[str, Any] | None] = {}


def load_spec(path: str | None) -> Mapping[str, Any] | None:
    """The first YAML document of the compiled pipeline, or ``None`` when it is gone or unreadable.

    Parsed with libyaml when present and kept per (path, mtime, size): a 100-task spec takes the pure-Python
    parser most of a second, and the Run page is asked for it on every poll-triggered reload.
    """
    if not path:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _SPECS:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            with Path(path).open(encoding="utf-8") as handle:
                document = next(yaml.load_all(handle, Loader=loader), None)  # noqa: S506 - a safe loader
        except (OSError, yaml.YAMLError):
            document = None
        if len(_SPECS) > 64:
            _SPECS.clear()
        _SPECS[key] = document if isinstance(document, Mapping) else None
    return _SPECS[key]


def _prefix(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def _uri_edges(tasks: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, str]]:
    producers = {uri: key for key, t in tasks.items() for uris in (t.get("artifacts") or {}).values() for uri in uris}
    edges: set[tuple[str, str]] = set()
    for key, task in tasks.items():
        for uris in ((task.get("inputs") or {}).get("artifacts") or {}).values():
            edges.update((producers[u], key) for u in uris if u in producers and producers[u] != key)
    return edges


def _iterations_compatible(a: Iterable[int], b: Iterable[int]) -> bool:
    a, b = list(a), list(b)
    if not a or not b:
        return True
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def build_graph(record: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> Graph:
    """Nodes, edges and layout for the tasks of ``record`` (the content of ``run.json``)."""
    tasks: Mapping[str, Mapping[str, Any]] = record.get("tasks") or {}
    groups: dict[str, Node] = {}
    node_of: dict[str, str] = {}
    for key in sorted(tasks, key=_key_order):
        task = dict(tasks[key])
        task["key"] = key
        name = task.get("task_name") or key.rsplit("/", 1)[-1].split(".")[0]
        node_id = _prefix(key) + name
        node = groups.get(node_id)
        if node is None:
            node = groups[node_id] = Node(node_id, node_id, task.get("component", ""), [], [])
        node.keys.append(key)
        node.tasks.append(task)
        node_of[key] = node_id

    key_edges: set[tuple[str, str]] = set()
    if spec is not None:
        names = spec_edges(spec)
        by_name: dict[str, list[str]] = {}
        for key, node_id in node_of.items():
            by_name.setdefault(node_id.rsplit("/", 1)[-1], []).append(key)
        for source, target in names:
            for a in by_name.get(source, []):
                for b in by_name.get(target, []):
                    same_scope = _prefix(a) == _prefix(b)
                    if same_scope and _iterations_compatible(
                        tasks[a].get("iteration", []), tasks[b].get("iteration", [])
                    ):
                        key_edges.add((a, b))
    else:
        key_edges = _uri_edges(tasks)
    edges = sorted({(node_of[a], node_of[b]) for a, b in key_edges if node_of[a] != node_of[b]})
    graph = Graph(list(groups.values()), edges)
    _layout(graph)
    return graph


def _key_order(key: str) -> tuple[Any, ...]:
    """``train.10`` after ``train.9``: numeric iteration suffixes sort as numbers."""
    head, *rest = key.split(".")
    return (head, [int(p) if p.isdigit() else p for p in rest])


def _layout(graph: Graph) -> None:
    incoming: dict[str, list[str]] = {n.node_id: [] for n in graph.nodes}
    for source, target in graph.edges:
        incoming[target].append(source)
    column: dict[str, int] = {}

    def depth(node_id: str, seen: frozenset[str] = frozenset()) -> int:
        if node_id not in column:
            parents = [p for p in incoming[node_id] if p not in seen]
            column[node_id] = 1 + max((depth(p, seen | {node_id}) for p in parents), default=-1)
        return column[node_id]

    for node in graph.nodes:
        node.column = depth(node.node_id)
        if node.grouped:
            rows = -(-len(node.keys) // CHIPS_PER_ROW)
            node.height = NODE_HEIGHT + rows * (CHIP + 4) + 4
    # Column by column, each node goes where its parents are on average (fewer crossing edges than key order).
    heights: dict[int, int] = {}
    rank: dict[str, float] = {}
    for col in sorted({n.column for n in graph.nodes}):
        members = [n for n in graph.nodes if n.column == col]
        for n in members:
            parents = [rank[p] for p in incoming[n.node_id] if p in rank]
            n.y = int(sum(parents) / len(parents)) if parents else 0
        for order, node in enumerate(sorted(members, key=lambda n: (n.y, n.node_id))):
            node.x = MARGIN + node.column * (NODE_WIDTH + COLUMN_GAP)
            node.y = MARGIN + heights.get(node.column, 0)
            heights[node.column] = heights.get(node.column, 0) + node.height + ROW_GAP
            rank[node.node_id] = node.y + order * 0.001
    columns = 1 + max((n.column for n in graph.nodes), default=-1)
    graph.width = 2 * MARGIN + max(0, columns * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP)
    graph.height = 2 * MARGIN + max(heights.values(), default=0)


def chip_positions(node: Node) -> list[tuple[str, int, int, str]]:
    """``(key, x, y, state)`` of each iteration chip inside a grouped node."""
    out = []
    for i, (key, task) in enumerate(zip(node.keys, node.tasks, strict=True)):
        row, col = divmod(i, CHIPS_PER_ROW)
        out.append(
            (key, node.x + 8 + col * (CHIP + 3), node.y + NODE_HEIGHT + row * (CHIP + 4), task.get("state", "PENDING"))
        )
    return out
