"""BigQuery for dashboards: the tracking tables (day-partitioned, clustered) and the views Looker Studio reads.

``expforge bigquery setup`` creates them (:mod:`expforge.bigquery.setup`) from DDL built here
(:mod:`expforge.bigquery.ddl`); the view bodies are the ``sql/*.sql`` files of this package.
"""
