"""``expforge looker-url``: a Looker Studio Linking API URL that creates a report over the dashboard views.

Why a URL (no API call): the Linking API needs no credentials or client library — opening the URL in a
browser signed in to Google creates the report (a copy of ``--template`` when given) with one BigQuery data
source per view of :mod:`expforge.bigquery.ddl`. With ``--date-range`` each data source is a custom query
filtered by the report's date range (``@DS_START_DATE``/``@DS_END_DATE``, ``YYYYMMDD`` strings) on the view's
date column, so a chart over the last 7 days reads less.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from expforge.bigquery.ddl import VIEWS
from expforge.bigquery.names import check_dataset, check_project
from expforge.errors import ExpforgeError

CREATE_URL = "https://lookerstudio.google.com/reporting/create"
_REPORT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The date column each view is filtered on for --date-range (the partition day of its base table).
DATE_COLUMNS = {
    "runs_latest": "run_date",
    "metrics_final": "run_date",
    "metric_series": "logged_date",
    "leaderboard": "run_date",
    "hpo_trials": "run_date",
    "pipeline_tasks": "run_date",
}


@dataclass(frozen=True)
class DataSource:
    """One Looker Studio data source: its alias in the report and its Linking API parameters."""

    alias: str
    params: dict[str, str]


def data_sources(project: str, dataset: str, *, date_range: bool = False) -> list[DataSource]:
    """One BigQuery data source per view (a table, or a date-filtered custom query)."""
    found = []
    for view in VIEWS:
        params = {"connector": "bigQuery", "datasourceName": f"expforge {view}", "billingProjectId": project}
        if date_range:
            column = DATE_COLUMNS[view]
            params |= {
                "type": "CUSTOM_QUERY",
                "projectId": project,
                "sql": (
                    f"SELECT * FROM `{project}.{dataset}.{view}` WHERE {column} BETWEEN "
                    f"PARSE_DATE('%Y%m%d', @DS_START_DATE) AND PARSE_DATE('%Y%m%d', @DS_END_DATE)"
                ),
                "isDateRangeEnabled": "true",
            }
        else:
            params |= {"type": "TABLE", "projectId": project, "datasetId": dataset, "tableId": view}
        found.append(DataSource(view.replace("_", ""), params))
    return found


def looker_url(
    project: str | None,
    dataset: str | None,
    *,
    template: str | None = None,
    report_name: str | None = None,
    date_range: bool = False,
) -> str:
    """The Linking API URL (names checked first; ``template`` is a Looker Studio report id)."""
    project, dataset = check_project(project), check_dataset(dataset)
    query: list[tuple[str, str]] = []
    if template is not None:
        if not _REPORT_ID.fullmatch(template):
            raise ExpforgeError(f"--template: {template!r} is not a Looker Studio report id (from its URL)")
        query.append(("c.reportId", template))
    query.append(("r.reportName", report_name or f"Experiment Forge — {project}.{dataset}"))
    for source in data_sources(project, dataset, date_range=date_range):
        query += [(f"ds.{source.alias}.{key}", value) for key, value in source.params.items()]
    return f"{CREATE_URL}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"
