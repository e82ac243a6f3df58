"""train-lm: the small GPT language model on a prepared corpus (optionally pretrained on another first)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from expforge.components._adapter import artifact_dir, describe, log_scalars, step_component


@step_component("train-lm")
def train_lm(
    corpus: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
    tensorboard: Output[Artifact],
    pretrain: Input[Dataset] = None,
    layers: int = 2,
    heads: int = 2,
    width: int = 64,
    context: int = 64,
    batch_size: int = 32,
    steps: int = 200,
    pretrain_steps: int = 0,
    lr: float = 3e-3,
    eval_interval: int = 50,
    device: str = "auto",
    seed: int = 0,
) -> None:
    """Train on ``corpus`` (after ``pretrain_steps`` on ``pretrain``, which must share its vocabulary).

    ``model`` is the checkpoint (it records the corpus signature that evaluate-lm and sample-lm check);
    ``history`` is a CSV of train/val loss and bits per character per evaluation; ``metrics`` the final values;
    ``tensorboard`` the same evaluation rows (losses, bits per character, learning rate, tokens per second) as
    TensorBoard event files.
    """
    import dataclasses
    import json

    from expforge.text.lm_trainer import LmHistoryRow, write_history_csv
    from expforge.text.lm_trainer import train_lm as train
    from expforge.train.tensorboard_log import ScalarLog

    board = ScalarLog(tensorboard.path)

    def log_progress(row: LmHistoryRow) -> None:
        board.record(row)
        print(json.dumps({"event": "eval", **dataclasses.asdict(row)}), flush=True)  # one line per eval: task log

    pretrain_dir = artifact_dir(pretrain) if pretrain is not None and pretrain_steps > 0 else None
    with board:
        result = train(
            artifact_dir(corpus),
            model.path,
            context=context,
            layers=layers,
            heads=heads,
            width=width,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            eval_interval=eval_interval,
            pretrain_corpus=pretrain_dir,
            pretrain_steps=pretrain_steps,
            device=device,
            seed=seed,
            on_eval=log_progress,
        )
    tensorboard.metadata["format"] = "tensorboard"
    log_scalars(metrics, result.final)
    describe(model, result.params, framework="pytorch", format="expforge.checkpoint", kind="gpt-lm", **result.device)
    write_history_csv(result.history, history.path)
    history.metadata["format"] = "csv"
