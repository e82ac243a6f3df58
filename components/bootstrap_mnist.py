"""bootstrap-mnist: real MNIST digits (IDX files, OpenML, or the bundled 5,000) as a split dataset."""

from kfp.dsl import Dataset, Output

from expforge.components._adapter import artifact_dir, describe, step_component


@step_component("bootstrap-mnist")
def bootstrap_mnist(
    dataset: Output[Dataset],
    limit: int = 5000,
    source: str = "auto",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> None:
    """Load ``limit`` real MNIST digits and write a stratified train/val/test dataset."""
    from expforge.data.mnist import bootstrap_mnist as load

    summary = load(
        limit,
        artifact_dir(dataset),
        source=source,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    describe(dataset, summary, layout="expforge/labels.csv+images")
