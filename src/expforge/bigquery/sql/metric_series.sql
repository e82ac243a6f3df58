-- metric_series: one row per run x metric x step (epoch/iteration), for "metric by time" charts.
-- A point logged twice for the same step keeps the newest (logged_at). Final values (step IS NULL) are in
-- metrics_final instead.
SELECT
  p.run_id,
  r.experiment,
  r.pipeline,
  r.task,
  r.parent_run_id,
  p.key AS metric,
  p.step,
  p.value,
  p.logged_at,
  DATE(p.logged_at) AS logged_date
FROM `{project}.{dataset}.metric_points` AS p
JOIN `{project}.{dataset}.runs_latest` AS r USING (run_id)
WHERE p.step IS NOT NULL
QUALIFY ROW_NUMBER() OVER (PARTITION BY p.run_id, p.key, p.step ORDER BY p.logged_at DESC) = 1
