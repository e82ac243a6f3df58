"""Random affine augmentation of digit batches in pure torch (no torchvision), batched on the training device.

Rotation, scale, shear and shift become one 2×3 matrix per image, applied with ``affine_grid``/``grid_sample``:
a whole batch is transformed by two kernels, on GPU or CPU alike, with no per-image Python work. The random
draws are separated from the transform: a trainer draws the uniforms for an epoch from its own seeded
``torch.Generator`` (so a checkpoint can capture and restore them) and passes them in.
The ranges are the usual mild ones for handwritten digits: a 6 stays a 6, a 1 does not become a 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PARAMS_PER_IMAGE = 5  # rotation, scale, shear, shift x, shift y


@dataclass(frozen=True)
class AffineRanges:
    """Half-widths of the uniform ranges; shifts are in pixels of a 28-pixel image."""

    rotation_degrees: float = 12.0
    scale: float = 0.10
    shear: float = 0.15
    shift_pixels: float = 2.0
    image_size: int = 28


DEFAULT_RANGES = AffineRanges()


def draw_params(count: int, generator: torch.Generator) -> torch.Tensor:
    """``count``×5 uniforms in [0, 1) from ``generator`` (CPU); 0.5 everywhere is the identity transform."""
    import torch

    return torch.rand(count, PARAMS_PER_IMAGE, generator=generator)


def affine_matrices(uniforms: torch.Tensor, ranges: AffineRanges = DEFAULT_RANGES) -> torch.Tensor:
    """N×5 uniforms → N×2×3 ``affine_grid`` matrices (output → input coordinates, normalised to [-1, 1])."""
    import torch

    centred = uniforms.float() * 2.0 - 1.0  # [-1, 1)
    angle = centred[:, 0] * math.radians(ranges.rotation_degrees)
    scale = 1.0 + centred[:, 1] * ranges.scale
    shear = centred[:, 2] * ranges.shear
    shift = centred[:, 3:5] * (2.0 * ranges.shift_pixels / ranges.image_size)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # A = R(angle) · [[1, shear], [0, 1]] / scale
    a = cos / scale
    b = (cos * shear - sin) / scale
    c = sin / scale
    d = (sin * shear + cos) / scale
    return torch.stack(
        [torch.stack([a, b, shift[:, 0]], dim=1), torch.stack([c, d, shift[:, 1]], dim=1)],
        dim=1,
    )


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Apply N×2×3 matrices to N×1×H×W float images (bilinear; outside the frame is black, 0)."""
    import torch.nn.functional as F

    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(images: torch.Tensor, uniforms: torch.Tensor, ranges: AffineRanges = DEFAULT_RANGES) -> torch.Tensor:
    """Transform N×1×H×W float images by the matrices of N×5 ``uniforms`` (moved to the images' device)."""
    return warp(images, affine_matrices(uniforms.to(images.device, non_blocking=True), ranges))
