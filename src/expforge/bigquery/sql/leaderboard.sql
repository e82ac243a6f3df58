-- leaderboard: per metric, every finished run ranked by its final value (rank_desc: higher is better,
-- rank_asc: lower is better, e.g. losses). Filter on metric in the dashboard; NaN values rank last.
SELECT
  metric,
  run_id,
  experiment,
  pipeline,
  task,
  parent_run_id,
  run_date,
  value,
  RANK() OVER (PARTITION BY metric ORDER BY IS_NAN(value), value DESC) AS rank_desc,
  RANK() OVER (PARTITION BY metric ORDER BY IS_NAN(value), value ASC) AS rank_asc
FROM `{project}.{dataset}.metrics_final`
WHERE state = 'SUCCEEDED'
