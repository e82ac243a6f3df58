"""The font-digit renderer: MNIST format, determinism, balance, font handling and failures, on real fonts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from expforge.data.augment import NO_AUGMENTATION, Augmentation
from expforge.data.font_discovery import default_font_dirs, discover_fonts
from expforge.data.fonts import generate_font_digits, plan_samples
from expforge.data.manifest import load_arrays, read_manifest
from expforge.errors import ExpforgeError

#: Faces used by most tests: a handful keeps each run well under a second.
WANTED = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "LiberationMono-Italic.ttf", "FreeSans.ttf", "Lato-Light.ttf")


def _system_fonts() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in default_font_dirs():
        for path in sorted(directory.rglob("*")):
            found.setdefault(path.name, path)
    return found


SYSTEM_FONTS = _system_fonts()
TEST_FONTS = [SYSTEM_FONTS[name] for name in WANTED if name in SYSTEM_FONTS]
pytestmark = pytest.mark.skipif(len(TEST_FONTS) < 2, reason="needs at least two of the usual Debian fonts installed")


def _dataset_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    index = np.arange(image.shape[0])
    total = weights.sum()
    return float(weights.sum(axis=1) @ index / total), float(weights.sum(axis=0) @ index / total)


def _ink_box(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    output = tmp_path_factory.mktemp("plain") / "fonts"
    summary = generate_font_digits(100, output, fonts=TEST_FONTS, seed=3, workers=1, augmentation=NO_AUGMENTATION)
    return output, summary


@pytest.fixture(scope="module")
def augmented(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    output = tmp_path_factory.mktemp("augmented") / "fonts"
    summary = generate_font_digits(300, output, fonts=TEST_FONTS, seed=7, workers=2, val_fraction=0.2)
    return output, summary


@pytest.fixture(scope="module")
def digitless_font(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real TrueType font cut down to a few letters, so it has no glyphs for 0–9."""
    subset = pytest.importorskip("fontTools.subset")
    ttlib = pytest.importorskip("fontTools.ttLib")
    source = TEST_FONTS[0]
    font = ttlib.TTFont(str(source))
    options = subset.Options()
    options.notdef_outline = True  # keep the .notdef box, as real fonts have it
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="ABCabc")
    subsetter.subset(font)
    target = tmp_path_factory.mktemp("digitless") / "Lettersonly.ttf"
    font.save(str(target))
    return target


# --- MNIST format ---------------------------------------------------------------------------------------------


def test_unaugmented_digits_follow_the_mnist_normalisation(plain):
    """Every image: 28×28 uint8, black background, ink box fitted to 20 px on its longer side (19 when the
    faintest anti-aliased edge rounds to 0), never more than 20×20, peak 255, centre of mass within half a
    pixel of (row 14, col 14), as in real MNIST."""
    output, _ = plain
    images, labels, _ = load_arrays(output, ("train",))
    assert images.shape == (100, 28, 28) and images.dtype == np.uint8
    for image in images:
        height, width = _ink_box(image)
        assert max(height, width) in (19, 20) and height <= 20 and width <= 20
        assert image.max() == 255
        assert (image == 0).mean() > 0.5
        row, col = _centre_of_mass(image)
        assert abs(row - 14.0) <= 0.5 and abs(col - 14.0) <= 0.5


def test_augmented_digits_stay_in_mnist_format(augmented):
    """Augmentation acts before the normalisation: the 20×20 bound always holds and nearly every image is
    centred (an image is only off-centre when centring would push ink out of the 28×28 field)."""
    output, _ = augmented
    images, _, _ = load_arrays(output, ("train", "val"))
    assert images.shape == (300, 28, 28)
    centred = 0
    for image in images:
        height, width = _ink_box(image)
        assert height <= 20 and width <= 20 and max(height, width) >= 17
        row, col = _centre_of_mass(image)
        centred += abs(row - 14.0) <= 0.5 and abs(col - 14.0) <= 0.5
    assert centred >= 0.97 * len(images)
    plain_pixels = images.reshape(len(images), -1)
    assert len({p.tobytes() for p in plain_pixels}) == len(images)


def test_augmentation_changes_the_images(plain, tmp_path):
    output, _ = plain
    again = generate_font_digits(100, tmp_path / "aug", fonts=TEST_FONTS, seed=3, workers=1)
    plain_images, _, _ = load_arrays(output)
    augmented_images, _, _ = load_arrays(tmp_path / "aug")
    assert again["augmentation"] == Augmentation().as_dict()
    assert not np.array_equal(plain_images, augmented_images)


# --- manifest and summary -------------------------------------------------------------------------------------


def test_labels_are_balanced_over_digits_and_faces(augmented):
    output, summary = augmented
    rows = read_manifest(output)
    per_digit = np.bincount([r.label for r in rows], minlength=10)
    assert per_digit.tolist() == [30] * 10
    faces = {(r.extra["font"], r.extra["style"], r.extra["font_file"]) for r in rows}
    assert len(faces) == summary["font_faces"]
    per_face = [sum(1 for r in rows if (r.extra["font"], r.extra["style"], r.extra["font_file"]) == f) for f in faces]
    assert max(per_face) - min(per_face) <= 1
    assert {r.extra["font"] for r in rows} == set(summary["fonts_used"])
    assert all(Path(r.extra["font_file"]).is_file() for r in rows)


def test_val_fraction_is_stratified(augmented):
    output, summary = augmented
    rows = read_manifest(output)
    for digit in range(10):
        splits = [r.split for r in rows if r.label == digit]
        assert splits.count("val") == 6 and splits.count("train") == 24
    assert summary["splits"] == {"train": 240, "val": 60}


def test_summary_and_dataset_json(augmented):
    output, summary = augmented
    written = json.loads((output / "dataset.json").read_text())
    for key in ("count", "seed", "fonts_used", "font_families", "skipped_fonts", "augmentation"):
        assert written[key] == summary[key]
    assert summary["font_families"] == len(summary["fonts_used"]) >= 2
    assert summary["count"] == summary["rows"] == 300
    assert summary["images_per_second"] > 0 and summary["elapsed_seconds"] > 0
    assert "elapsed_seconds" not in written


def test_plan_balances_any_count():
    """Digit totals, face totals and each digit's face totals differ by at most one, for any count."""
    for count, faces in ((1000, 7), (95, 13), (10, 40), (3, 2), (21, 6), (20001, 196)):
        digits, face_index = plan_samples(count, faces, seed=0)
        per_digit = np.bincount(digits, minlength=10)
        assert per_digit.max() - per_digit.min() <= 1
        per_face = np.bincount(face_index, minlength=faces)
        assert per_face.max() - per_face.min() <= 1
        for digit in range(10):
            within = np.bincount(face_index[digits == digit], minlength=faces)
            assert within.max() - within.min() <= 1


# --- determinism ----------------------------------------------------------------------------------------------


def test_same_inputs_give_identical_bytes_whatever_the_workers(augmented, tmp_path):
    output, _ = augmented
    again = tmp_path / "again"
    generate_font_digits(300, again, fonts=TEST_FONTS, seed=7, workers=1, val_fraction=0.2)
    assert _dataset_bytes(again) == _dataset_bytes(output)


def test_another_seed_gives_other_images(augmented, tmp_path):
    output, _ = augmented
    other = tmp_path / "other"
    generate_font_digits(300, other, fonts=TEST_FONTS, seed=8, workers=2, val_fraction=0.2)
    first, _, _ = load_arrays(output, ("train", "val"))
    second, _, _ = load_arrays(other, ("train", "val"))
    assert not np.array_equal(first, second)


# --- fonts ----------------------------------------------------------------------------------------------------


def test_font_without_digits_is_skipped_and_named_once(digitless_font, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="expforge.data.fonts")
    summary = generate_font_digits(20, tmp_path / "out", fonts=[digitless_font.parent, TEST_FONTS[0]], workers=1)
    skipped = summary["skipped_fonts"]
    assert [s["font_file"] for s in skipped] == [str(digitless_font)]
    assert "no glyph for digit 0" in skipped[0]["reason"]
    assert caplog.text.count(digitless_font.name) == 1
    assert all(r.extra["font_file"] != str(digitless_font) for r in read_manifest(tmp_path / "out"))


def test_symbol_font_mapping_digits_to_pictures_is_skipped():
    dingbats = SYSTEM_FONTS.get("D050000L.otf")
    if dingbats is None:
        pytest.skip("URW Dingbats (fonts-urw-base35) is not installed")
    discovery = discover_fonts([dingbats.parent])
    reasons = {s.font_file: s.reason for s in discovery.skipped}
    assert "do not look like 0–9" in reasons[str(dingbats)]
    assert all(face.path != str(dingbats) for face in discovery.faces)


HANDWRITING_FONTS = ("dkg.ttf", "BecauseWeLearn-Regular.otf", "femkeklaver.ttf", "Rufscript010.ttf")


def test_handwriting_fonts_pass_the_consensus_beside_printed_faces():
    """Handwritten digits (open 4, straight-stemmed 9) differ from the printed consensus, yet are digits: they
    must be kept, while the Dingbats that map 0–9 to pictures are still dropped among the same faces."""
    handwriting = [SYSTEM_FONTS[name] for name in HANDWRITING_FONTS if name in SYSTEM_FONTS]
    dingbats = SYSTEM_FONTS.get("D050000L.otf")
    if len(handwriting) < 2 or dingbats is None:
        pytest.skip("needs fonts-urw-base35 and the handwriting font packages (make fonts)")
    printed = [
        path
        for path in SYSTEM_FONTS.values()
        if path.parent.name in ("urw-base35", "dejavu", "liberation2") and path.suffix in (".ttf", ".otf")
    ]
    discovery = discover_fonts([*printed, *handwriting])
    kept = {face.path for face in discovery.faces}
    assert {str(p) for p in handwriting} <= kept, [s.reason for s in discovery.skipped]
    assert str(dingbats) not in kept


def test_duplicate_faces_are_used_once(tmp_path):
    copy = tmp_path / "copy" / TEST_FONTS[0].name
    copy.parent.mkdir()
    copy.write_bytes(TEST_FONTS[0].read_bytes())
    discovery = discover_fonts([TEST_FONTS[0], copy.parent])
    assert len(discovery.faces) == 1
    assert {discovery.faces[0].path, *(d.font_file for d in discovery.duplicates)} == {str(copy), str(TEST_FONTS[0])}
    assert "same family and style" in discovery.duplicates[0].reason


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -5])
def test_count_must_be_positive(count, tmp_path):
    with pytest.raises(ExpforgeError, match="--count"):
        generate_font_digits(count, tmp_path / "out", fonts=TEST_FONTS)
    assert not (tmp_path / "out").exists()


def test_empty_font_directory_is_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExpforgeError, match=f"--fonts: {empty}: directory contains no"):
        generate_font_digits(10, tmp_path / "out", fonts=[empty])


def test_missing_or_wrong_font_paths_are_named(tmp_path):
    with pytest.raises(ExpforgeError, match="no such file or directory"):
        generate_font_digits(10, tmp_path / "out", fonts=[tmp_path / "nope"])
    text = tmp_path / "notes.txt"
    text.write_text("not a font")
    with pytest.raises(ExpforgeError, match="not a font file"):
        generate_font_digits(10, tmp_path / "out", fonts=[text])


def test_no_usable_font_fails_without_leaving_anything(digitless_font, tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(ExpforgeError, match=f"{digitless_font.parent}: no usable fonts"):
        generate_font_digits(10, parent / "out", fonts=[digitless_font.parent], workers=2)
    assert list(parent.iterdir()) == []


def test_existing_dataset_survives_a_failed_run(tmp_path, digitless_font):
    output = tmp_path / "keep"
    generate_font_digits(10, output, fonts=TEST_FONTS[:1], workers=1)
    before = _dataset_bytes(output)
    with pytest.raises(ExpforgeError):
        generate_font_digits(10, output, fonts=[digitless_font.parent], workers=1)
    assert _dataset_bytes(output) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_unwritable_output_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExpforgeError) as error:
        generate_font_digits(10, blocker / "out", fonts=TEST_FONTS)
    assert "\n" not in str(error.value) and str(blocker) in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"workers": 0}, "--workers"),
        ({"seed": -1}, "--seed"),
        ({"split": "dev"}, "--split"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"augmentation": Augmentation(rotation_degrees=-1.0)}, "augmentation.rotation_degrees"),
        ({"augmentation": Augmentation(scale=(1.2, 0.8))}, "augmentation.scale"),
    ],
)
def test_bad_options_name_the_flag(kwargs, flag, tmp_path):
    with pytest.raises(ExpforgeError, match=flag):
        generate_font_digits(10, tmp_path / "out", fonts=TEST_FONTS, **kwargs)
    assert not (tmp_path / "out").exists()
