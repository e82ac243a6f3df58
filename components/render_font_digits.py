"""render-font-digits: synthetic 28×28 MNIST-format digits rendered from the image's system fonts."""

from kfp.dsl import Dataset, Output

from expforge.components._adapter import artifact_dir, describe, step_component


@step_component("render-font-digits")
def render_font_digits(
    dataset: Output[Dataset],
    count: int = 10000,
    seed: int = 0,
    val_fraction: float = 0.0,
) -> None:
    """Render ``count`` augmented digits from every usable font in the image (all cores)."""
    from expforge.data.fonts import generate_font_digits

    summary = generate_font_digits(count, artifact_dir(dataset), seed=seed, val_fraction=val_fraction)
    # ~200 skipped script fonts would swamp the artifact's metadata; dataset.json keeps the full list.
    skipped = summary.pop("skipped_fonts", [])
    count = len(skipped) if isinstance(skipped, list) else 0
    describe(dataset, summary, layout="expforge/labels.csv+images", skipped_font_files=count)
