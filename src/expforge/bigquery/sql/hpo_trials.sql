-- hpo_trials: one row per Hyperband / random-search trial run (step hyperband-trial): its configuration
-- flattened into columns (the keys of expforge/tune/default_space.yaml; the whole config stays in `config`),
-- bracket and rung (-1: random search), epochs trained and the validation accuracy.
SELECT
  run_id,
  experiment,
  pipeline,
  parent_run_id,
  state,
  run_date,
  started_at,
  duration_s,
  JSON_VALUE(params, '$.trial.trial_id') AS trial_id,
  SAFE_CAST(JSON_VALUE(params, '$.bracket') AS INT64) AS bracket,
  SAFE_CAST(JSON_VALUE(params, '$.rung') AS INT64) AS rung,
  SAFE_CAST(JSON_VALUE(params, '$.epochs') AS INT64) AS epochs,
  SAFE_CAST(JSON_VALUE(params, '$.trial.config.lr') AS FLOAT64) AS lr,
  SAFE_CAST(JSON_VALUE(params, '$.trial.config.weight_decay') AS FLOAT64) AS weight_decay,
  SAFE_CAST(JSON_VALUE(params, '$.trial.config.width') AS INT64) AS width,
  SAFE_CAST(JSON_VALUE(params, '$.trial.config.dropout') AS FLOAT64) AS dropout,
  SAFE_CAST(JSON_VALUE(params, '$.trial.config.batch_size') AS INT64) AS batch_size,
  JSON_VALUE(params, '$.trial.config.optimizer') AS optimizer,
  SAFE_CAST(JSON_VALUE(metrics, '$.val_accuracy') AS FLOAT64) AS val_accuracy,
  JSON_QUERY(params, '$.trial.config') AS config
FROM `{project}.{dataset}.runs_latest`
WHERE task = 'hyperband-trial'
