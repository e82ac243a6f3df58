"""``expforge looker-url``: the Linking API URL, and its date-range custom queries run on bqemulator."""

from __future__ import annotations

import urllib.parse

import pytest
from typer.testing import CliRunner

from expforge.bigquery.ddl import VIEWS
from expforge.cli import app
from expforge.cloud.looker import CREATE_URL, data_sources

PROJECT = "expforge-local"


def _params(url: str) -> dict[str, str]:
    base, _, query = url.partition("?")
    assert base == CREATE_URL
    pairs = urllib.parse.parse_qsl(query, strict_parsing=True)
    assert len(pairs) == len(dict(pairs))  # every parameter once
    return dict(pairs)


def test_one_bigquery_table_data_source_per_view() -> None:
    result = CliRunner().invoke(
        app, ["looker-url", "--project", "my-project", "--dataset", "dash", "--template", "1a2b3c4d-5e6f-7a8b"]
    )
    assert result.exit_code == 0, result.output
    params = _params(result.stdout.strip())
    assert params["c.reportId"] == "1a2b3c4d-5e6f-7a8b"
    aliases = sorted({key.split(".")[1] for key in params if key.startswith("ds.")})
    assert aliases == sorted(view.replace("_", "") for view in VIEWS)
    for view in VIEWS:
        alias = view.replace("_", "")
        assert {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"ds.{alias}.")} == {
            "connector": "bigQuery",
            "type": "TABLE",
            "projectId": "my-project",
            "billingProjectId": "my-project",
            "datasetId": "dash",
            "tableId": view,
            "datasourceName": f"expforge {view}",
        }


def test_date_range_data_sources_are_custom_queries_with_the_date_parameters() -> None:
    result = CliRunner().invoke(app, ["looker-url", "--project", "my-project", "--dataset", "dash", "--date-range"])
    params = _params(result.stdout.strip())
    assert "c.reportId" not in params
    sql = params["ds.metricseries.sql"]
    assert params["ds.metricseries.type"] == "CUSTOM_QUERY" and params["ds.metricseries.isDateRangeEnabled"] == "true"
    assert sql == (
        "SELECT * FROM `my-project.dash.metric_series` WHERE logged_date BETWEEN "
        "PARSE_DATE('%Y%m%d', @DS_START_DATE) AND PARSE_DATE('%Y%m%d', @DS_END_DATE)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "my-project", "--dataset", "bad-name"], "--dataset: 'bad-name' is not a BigQuery dataset"),
        (["--dataset", "d"], "--project: required"),
        (["--project", "my-project", "--dataset", "d", "--template", "no/slash"], "--template: 'no/slash' is not"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["looker-url", *args])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_custom_queries_run_on_bigquery_with_looker_parameters() -> None:
    pytest.importorskip("bqemulator")
    from google.cloud import bigquery

    from expforge.standins.bigquery import start_bigquery_emulator

    with start_bigquery_emulator(project=PROJECT, datasets=["looker"]) as emulator:
        client = emulator.client()
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("DS_START_DATE", "STRING", "20260101"),
                bigquery.ScalarQueryParameter("DS_END_DATE", "STRING", "20261231"),
            ]
        )
        for source in data_sources(PROJECT, "looker", date_range=True):
            rows = list(client.query(source.params["sql"], job_config=config, retry=None).result(retry=None))
            assert rows == []  # valid SQL over the (empty) views
        client.close()
