-- pipeline_tasks: one row per task of a pipeline run (runs with a parent_run_id): its current state, the
-- duration of its last attempt, whether it was a cache hit (tag cache_hit = 'true') and how many attempts
-- it took (a retried task starts again under the same run_id: one distinct started_at per attempt).
WITH attempts AS (
  SELECT run_id, COUNT(DISTINCT started_at) AS attempts
  FROM `{project}.{dataset}.runs`
  WHERE parent_run_id IS NOT NULL
  GROUP BY run_id
)
SELECT
  r.parent_run_id AS pipeline_run_id,
  r.pipeline,
  r.experiment,
  r.task,
  r.run_id,
  r.state,
  r.run_date,
  r.started_at,
  r.ended_at,
  r.duration_s,
  COALESCE(JSON_VALUE(r.tags, '$.cache_hit') = 'true', FALSE) AS cache_hit,
  a.attempts
FROM `{project}.{dataset}.runs_latest` AS r
JOIN attempts AS a USING (run_id)
WHERE r.parent_run_id IS NOT NULL
