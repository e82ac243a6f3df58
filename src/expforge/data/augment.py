"""Seeded augmentation parameters for rendered digits, and the bank of Simard-style elastic displacement fields.

Everything here is plain numpy and vectorised over a batch, so a chunk of samples costs a handful of array
operations rather than a handful per sample. Distances are in pixels of the final 28×28 image, so the parameters
read the same whatever working resolution the renderer uses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from expforge.errors import ExpforgeError

#: Domains mixed into ``SeedSequence([seed, domain, ...])`` so that each use of the seed draws its own stream.
SEED_PLAN = 0
SEED_SPLIT = 1
SEED_ELASTIC_BANK = 2
SEED_CHUNK = 3

ELASTIC_BANK_SIZE = 256


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the per-sample augmentations; each sample draws its values uniformly from them.

    ``scale`` is drawn separately for x and y. The MNIST normalisation that follows (fit into a 20×20 box)
    undoes any isotropic scale, exactly as it did for the original MNIST scans, so what survives is the
    variation of the aspect ratio: wide and narrow digits.
    """

    rotation_degrees: float = 12.0
    """Largest rotation either way, in degrees."""
    shear: float = 0.3
    """Largest horizontal shear factor either way (x += shear · y): slanted, italic-like digits."""
    scale: tuple[float, float] = (0.85, 1.15)
    """Range of the per-axis scale factors."""
    stroke: tuple[float, float] = (-0.5, 1.0)
    """Range of the stroke offset per side, in 28×28 pixels: negative thins, positive thickens."""
    elastic_rms: float = 1.2
    """Largest RMS length of the elastic displacement vectors, in 28×28 pixels (Simard et al.'s α=34, σ=4 ≈ 2.0)."""
    elastic_sigma: float = 4.0
    """Smoothing of the random displacement field (Gaussian σ, in 28×28 pixels), as in Simard et al. 2003."""
    noise: float = 0.08
    """Largest standard deviation of the Gaussian noise added to ink pixels, as a fraction of 255."""

    def validate(self) -> Augmentation:
        """Return ``self`` if every range is usable; otherwise raise a one-line error naming the field."""
        checks = {
            "rotation_degrees": 0.0 <= self.rotation_degrees <= 180.0,
            "shear": 0.0 <= self.shear <= 2.0,
            "scale": 0.0 < self.scale[0] <= self.scale[1] <= 10.0,
            "stroke": -3.0 <= self.stroke[0] <= self.stroke[1] <= 3.0,
            "elastic_rms": 0.0 <= self.elastic_rms <= 5.0,
            "elastic_sigma": 0.5 <= self.elastic_sigma <= 20.0,
            "noise": 0.0 <= self.noise <= 1.0,
        }
        expected = {
            "rotation_degrees": "0–180",
            "shear": "0–2",
            "scale": "a range 0 < low ≤ high ≤ 10",
            "stroke": "a range -3 ≤ low ≤ high ≤ 3",
            "elastic_rms": "0–5",
            "elastic_sigma": "0.5–20",
            "noise": "0–1",
        }
        for name, ok in checks.items():
            if not ok:
                raise ExpforgeError(f"augmentation.{name} = {getattr(self, name)!r}; expected {expected[name]}")
        return self

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, recorded in ``dataset.json`` so that a dataset says how it was made."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


#: Every range collapsed to the identity: glyphs go through the MNIST normalisation only.
NO_AUGMENTATION = Augmentation(
    rotation_degrees=0.0, shear=0.0, scale=(1.0, 1.0), stroke=(0.0, 0.0), elastic_rms=0.0, noise=0.0
)


@dataclass(frozen=True)
class SampleParams:
    """Per-sample augmentation values for a batch of ``n`` samples (arrays of length ``n``)."""

    inverse: np.ndarray
    """(n, 2, 2) inverse of the linear map rotation · shear · scale (output → source direction)."""
    forward: np.ndarray
    """(n, 2, 2) the linear map itself, used to find the transformed glyph's extent."""
    stroke: np.ndarray
    """(n,) stroke offset per side in 28×28 pixels."""
    elastic_index: np.ndarray
    """(n,) which field of the bank each sample uses."""
    elastic_amplitude: np.ndarray
    """(n,) signed RMS displacement in 28×28 pixels (the sign flips the field, doubling the bank's variety)."""
    noise_std: np.ndarray
    """(n,) noise standard deviation in grey levels."""

    def select(self, part: slice) -> SampleParams:
        """The parameters of the samples in ``part``."""
        return SampleParams(*(getattr(self, f.name)[part] for f in fields(self)))


def draw_params(rng: np.random.Generator, n: int, augmentation: Augmentation) -> SampleParams:
    """Draw ``n`` samples' parameters in a fixed order, so a chunk's seed fixes every value."""
    theta = np.radians(rng.uniform(-augmentation.rotation_degrees, augmentation.rotation_degrees, n))
    shear = rng.uniform(-augmentation.shear, augmentation.shear, n)
    scale = rng.uniform(augmentation.scale[0], augmentation.scale[1], (n, 2))
    stroke = rng.uniform(augmentation.stroke[0], augmentation.stroke[1], n)
    elastic_index = rng.integers(0, ELASTIC_BANK_SIZE, n)
    elastic_amplitude = rng.uniform(0.0, augmentation.elastic_rms, n) * rng.choice(np.array([-1.0, 1.0]), n)
    noise_std = rng.uniform(0.0, augmentation.noise, n) * 255.0
    cos, sin = np.cos(theta), np.sin(theta)
    sx, sy = scale[:, 0], scale[:, 1]
    # forward = R(θ) · [[1, shear], [0, 1]] · diag(sx, sy)
    forward = np.empty((n, 2, 2))
    forward[:, 0, 0] = cos * sx
    forward[:, 0, 1] = (cos * shear - sin) * sy
    forward[:, 1, 0] = sin * sx
    forward[:, 1, 1] = (sin * shear + cos) * sy
    det = forward[:, 0, 0] * forward[:, 1, 1] - forward[:, 0, 1] * forward[:, 1, 0]
    inverse = np.empty_like(forward)
    inverse[:, 0, 0] = forward[:, 1, 1] / det
    inverse[:, 0, 1] = -forward[:, 0, 1] / det
    inverse[:, 1, 0] = -forward[:, 1, 0] / det
    inverse[:, 1, 1] = forward[:, 0, 0] / det
    return SampleParams(inverse, forward, stroke, elastic_index, elastic_amplitude, noise_std)


def _gaussian_weights(points: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """Row-normalised Gaussian weights from each of ``points`` to each of ``grid`` (both 1-D coordinates)."""
    weights = np.exp(-0.5 * ((points[:, None] - grid[None, :]) / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=4)
def elastic_bank(seed: int, sigma: float, canvas: int, pixels_per_unit: float) -> np.ndarray:
    """``ELASTIC_BANK_SIZE`` smooth displacement fields of shape (2, canvas, canvas), in 28×28-pixel units.

    Simard et al. (2003) draw a displacement per pixel uniformly from [-1, 1] and smooth it with a Gaussian of
    σ pixels. Doing that per image is the expensive part of elastic distortion, so the fields are drawn once
    per (seed, σ) and each sample picks one (and a sign and an amplitude). The smoothing is a product of two
    small Gaussian matrices evaluated straight at the canvas pixels, on a random grid that extends 3σ beyond
    the canvas so that the fields have no edge effects. The bank is scaled to an RMS displacement of 1.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, SEED_ELASTIC_BANK]))
    extent = canvas / pixels_per_unit
    margin = math.ceil(3 * sigma)
    grid = np.arange(-margin, math.ceil(extent) + margin + 1, dtype=np.float64)
    centres = (np.arange(canvas) + 0.5) / pixels_per_unit
    smooth = _gaussian_weights(centres, grid, sigma)
    noise = rng.uniform(-1.0, 1.0, (ELASTIC_BANK_SIZE, 2, grid.size, grid.size))
    fields = smooth @ noise @ smooth.T
    fields /= np.sqrt(np.mean(np.sum(fields**2, axis=1)))
    return fields.astype(np.float32)
