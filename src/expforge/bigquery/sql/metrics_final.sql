-- metrics_final: the last value of every metric of every run, long form (run x metric).
-- "Last" is the final value (step IS NULL) when the run logged one, else the value of the highest step;
-- a value logged twice for the same step keeps the newest (logged_at).
SELECT
  p.run_id,
  r.experiment,
  r.pipeline,
  r.task,
  r.parent_run_id,
  r.state,
  r.run_date,
  p.key AS metric,
  p.value,
  p.step AS last_step,
  p.logged_at
FROM `{project}.{dataset}.metric_points` AS p
JOIN `{project}.{dataset}.runs_latest` AS r USING (run_id)
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY p.run_id, p.key
  ORDER BY p.step IS NULL DESC, p.step DESC, p.logged_at DESC
) = 1
