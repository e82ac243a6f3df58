"""The DDL of the dashboard dataset: the dataset, the two tracking tables and the six views, in order.

Why DDL (not the table API): the statements are what ``--dry-run`` prints, what ``setup`` runs and what a
reviewer can paste into the BigQuery console — one text, checked by a test against BigQuery's documented
grammar. Every statement is idempotent (``IF NOT EXISTS`` for storage, ``OR REPLACE`` for views), so setup can
be run again after an upgrade.

Layout: ``runs`` is partitioned by day on ``updated_at`` and ``metric_points`` on ``logged_at`` (the columns
every row has and dashboards filter by date on), clustered on what charts filter by: experiment, pipeline,
run id, metric name. Columns come from the same JSON schemas the tracker validates rows against
(``expforge/tracking/schemas``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from expforge.tracking.bqrows import TABLES, table_schema

VIEWS = ("runs_latest", "metrics_final", "metric_series", "leaderboard", "hpo_trials", "pipeline_tasks")


@dataclass(frozen=True)
class TableLayout:
    """How a tracking table is laid out: the day-partitioning column and the clustering columns (at most 4)."""

    partition_by: str
    cluster_by: tuple[str, ...]


LAYOUTS: dict[str, TableLayout] = {
    "runs": TableLayout("updated_at", ("experiment", "pipeline", "run_id")),
    "metric_points": TableLayout("logged_at", ("experiment", "run_id", "key")),
}
_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
_DESCRIPTIONS = {
    "runs": "Run snapshots written by the expforge tracker; the newest updated_at per run_id is current.",
    "metric_points": "Metric values written by the expforge tracker; step NULL is a final value.",
}


@dataclass(frozen=True)
class Statement:
    """One DDL statement: ``kind`` is schema, table or view; ``name`` the object it creates."""

    kind: str
    name: str
    sql: str


def quote(text: str) -> str:
    """A BigQuery string literal (double-quoted, backslash escapes)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def column_type(entry: dict[str, str]) -> str:
    """``STRING NOT NULL``, ``ARRAY<STRING>``, ... for one JSON-schema field."""
    base = _TYPES.get(entry["type"], entry["type"])
    mode = entry.get("mode", "NULLABLE")
    if mode == "REPEATED":
        return f"ARRAY<{base}>"
    return f"{base} NOT NULL" if mode == "REQUIRED" else base


def schema_statement(project: str, dataset: str, location: str | None) -> Statement:
    """``CREATE SCHEMA IF NOT EXISTS`` (with the location when one is given)."""
    options = [f"description = {quote('Experiment Forge tracking: tables and Looker Studio views.')}"]
    if location:
        options.insert(0, f"location = {quote(location)}")
    sql = f"CREATE SCHEMA IF NOT EXISTS `{project}.{dataset}`\nOPTIONS ({', '.join(options)})"
    return Statement("schema", dataset, sql)


def table_statement(project: str, dataset: str, table: str) -> Statement:
    """``CREATE TABLE IF NOT EXISTS`` of a tracking table: its columns, day partitioning and clustering."""
    layout = LAYOUTS[table]
    columns = []
    for entry in table_schema(table):
        column = f"  {entry['name']} {column_type(entry)}"
        if entry.get("description"):
            column += f" OPTIONS (description = {quote(entry['description'])})"
        columns.append(column)
    sql = (
        f"CREATE TABLE IF NOT EXISTS `{project}.{dataset}.{table}` (\n"
        + ",\n".join(columns)
        + f"\n)\nPARTITION BY DATE({layout.partition_by})\nCLUSTER BY {', '.join(layout.cluster_by)}"
        + f"\nOPTIONS (description = {quote(_DESCRIPTIONS[table])})"
    )
    return Statement("table", table, sql)


def view_source(view: str) -> str:
    """The text of ``sql/<view>.sql`` as kept in the repository (placeholders ``{project}``/``{dataset}``)."""
    return resources.files("expforge.bigquery").joinpath("sql", f"{view}.sql").read_text(encoding="utf-8")


def view_body(view: str, project: str, dataset: str) -> tuple[str, str]:
    """(description, query) of a view: the header comment's first line and the query with names filled in."""
    lines = view_source(view).splitlines()
    comments = [line for line in lines if line.startswith("--")]
    body = "\n".join(line for line in lines if not line.startswith("--")).strip()
    description = comments[0].removeprefix("--").strip() if comments else view
    query = body.replace("{project}", project).replace("{dataset}", dataset)
    leftover = re.search(r"\{[a-z_]+\}", query)
    if leftover:
        raise ValueError(f"sql/{view}.sql: unknown placeholder {leftover.group(0)}")
    return description, query


def view_statement(project: str, dataset: str, view: str) -> Statement:
    """``CREATE OR REPLACE VIEW`` of one dashboard view."""
    description, query = view_body(view, project, dataset)
    head = f"CREATE OR REPLACE VIEW `{project}.{dataset}.{view}`\nOPTIONS (description = {quote(description)})"
    sql = f"{head}\nAS\n{query}"
    return Statement("view", view, sql)


def statements(project: str, dataset: str, location: str | None = None) -> list[Statement]:
    """Every statement of the setup, in dependency order (dataset, tables, then views on views)."""
    found = [schema_statement(project, dataset, location)]
    found += [table_statement(project, dataset, table) for table in TABLES]
    found += [view_statement(project, dataset, view) for view in VIEWS]
    return found


def script(project: str, dataset: str, location: str | None = None) -> str:
    """The whole setup as one script (what ``--dry-run`` prints): statements separated by ``;``."""
    return "\n\n".join(f"{s.sql};" for s in statements(project, dataset, location)) + "\n"
