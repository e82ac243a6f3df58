"""The pieces of self-training on their own: the strong view, the information-maximisation term, teacher labels,
and the settings a run refuses. Real tensors and a real (tiny, untrained) CNN; nothing is mocked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expforge.adapt.core import adapt_digit_cnn
from expforge.adapt.methods import (
    SelfTrainSettings,
    information_maximisation,
    pseudo_labels,
    strong_view,
    teacher_labels,
)
from expforge.errors import ExpforgeError
from expforge.train.digit_cnn import CNNSpec, build_model, to_input


def _digits(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    for i in range(count):  # a bar of random position and length: enough ink for the views to move
        top = int(torch.randint(4, 12, (1,), generator=generator))
        images[i, top : top + 12, 12:16] = 255
    return images


def test_the_strong_view_is_seeded_in_range_and_changes_the_digit() -> None:
    pixels = to_input(_digits(16, 0))
    first = strong_view(pixels, torch.Generator().manual_seed(3))
    again = strong_view(pixels, torch.Generator().manual_seed(3))
    other = strong_view(pixels, torch.Generator().manual_seed(4))
    assert first.shape == pixels.shape and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    changed = (first - pixels).abs().flatten(1).sum(dim=1)
    assert bool((changed > 0).all()), "every digit is warped"


def test_information_maximisation_prefers_confident_and_diverse_predictions() -> None:
    confident_diverse = torch.eye(10).repeat(2, 1) * 20.0
    collapsed = torch.zeros(20, 10)
    collapsed[:, 3] = 20.0
    uncertain = torch.zeros(20, 10)
    best = float(information_maximisation(confident_diverse))
    assert best < float(information_maximisation(collapsed)), "a collapse onto one class is penalised"
    assert best < float(information_maximisation(uncertain)), "unconfident predictions are penalised"
    assert best == pytest.approx(-torch.log(torch.tensor(10.0)).item(), abs=1e-3)


def test_teacher_labels_without_views_are_the_plain_pseudo_labels() -> None:
    torch.manual_seed(0)
    model = build_model(CNNSpec(width=4, depth=1, hidden=8)).eval()
    images = _digits(12, 1)
    plain = pseudo_labels(model, images)
    averaged = teacher_labels(model, images, torch.Generator().manual_seed(0), views=0)
    assert torch.equal(plain[0], averaged[0]) and torch.allclose(plain[1], averaged[1])
    with_views = teacher_labels(model, images, torch.Generator().manual_seed(0), views=2)
    assert with_views[1].shape == (12,) and bool(((with_views[1] > 0) & (with_views[1] <= 1)).all())


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        (SelfTrainSettings(ema=1.0), "--ema"),
        (SelfTrainSettings(diversity=-0.5), "--diversity"),
        (SelfTrainSettings(threshold=1.0), "--threshold"),
        (SelfTrainSettings(rounds=0), "--rounds"),
    ],
)
def test_unusable_settings_are_one_clear_error(tmp_path: Path, settings: SelfTrainSettings, flag: str) -> None:
    # The settings are checked before any file is read, so the paths need not exist.
    with pytest.raises(ExpforgeError, match=flag):
        adapt_digit_cnn(tmp_path / "m.pt", tmp_path / "u", tmp_path / "v", tmp_path / "o.pt", settings=settings)
