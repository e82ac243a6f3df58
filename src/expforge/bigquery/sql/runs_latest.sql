-- runs_latest: the newest snapshot of every run (table `runs` keeps one row per change).
-- One row per run_id; ties on updated_at go to the row that finished (ended_at set) so a run never looks
-- RUNNING again after its end. duration_s is NULL while a run is still going.
SELECT
  run_id,
  experiment,
  pipeline,
  step AS task,
  parent_run_id,
  state,
  started_at,
  ended_at,
  updated_at,
  DATE(started_at) AS run_date,
  TIMESTAMP_DIFF(ended_at, started_at, MILLISECOND) / 1000.0 AS duration_s,
  git_commit,
  git_branch,
  git_dirty,
  python,
  datasets,
  params,
  metrics,
  artifacts,
  tags,
  note
FROM `{project}.{dataset}.runs`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY updated_at DESC, ended_at IS NULL, state) = 1
