"""Glyphs → MNIST-format 28×28 digits: render once, then warp, normalise and encode whole batches in numpy.

The pipeline follows how MNIST itself was made (LeCun et al.): a white-on-black digit is size-normalised to fit
a 20×20 box with its aspect ratio preserved (anti-aliased, so grey levels appear at the edges), then placed in
the 28×28 field so that its centre of mass sits at the centre, (14, 14) in row/column pixel indices, as in the
real data. Augmentations act before that normalisation, so every output is in MNIST format whatever they did.

Speed comes from doing per glyph what can be done once (render it with FreeType, reduce it to a working
resolution of ``PIXELS_PER_UNIT`` pixels per output pixel, precompute its thinned/thickened stroke variants)
and from vectorising everything per sample over a batch: one combined inverse map (rotation · shear · scale
plus an elastic field from a precomputed bank) sampled bilinearly, then a per-image box filter expressed as two
batched matrix products, the intensity steps and the centre-of-mass placement. Only PNG encoding and the file
write stay per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from expforge.data.augment import Augmentation, SampleParams, elastic_bank
from expforge.data.manifest import IMAGE_SIZE

#: Font size (pixels per em) at which FreeType renders each glyph before it is reduced; large enough that
#: hinting and rasterisation details vanish in the reduction.
RENDER_SIZE = 64
#: The MNIST box the glyph is fitted into, and its centre (row/column index of the centre of mass).
BOX = 20
CENTRE = 14.0
#: Working resolution: pixels per final 28×28 pixel while warping (the later box filter anti-aliases).
PIXELS_PER_UNIT = 1.5
WORK_BOX = round(BOX * PIXELS_PER_UNIT)
CANVAS = round(IMAGE_SIZE * PIXELS_PER_UNIT)
#: Samples warped together: enough to amortise numpy's per-call cost, few enough to stay in the CPU cache.
SUB_BATCH = 48
#: Ink below this grey level (of 255) does not count towards a glyph's bounding box.
INK_THRESHOLD = 0.5


# --- glyphs ----------------------------------------------------------------------------------------------------


def open_font(path: str, index: int = 0) -> ImageFont.FreeTypeFont:
    """Open one face at ``RENDER_SIZE`` with the basic layout engine (single characters need no shaping)."""
    return ImageFont.truetype(path, RENDER_SIZE, index=index, layout_engine=ImageFont.Layout.BASIC)


def render_char(font: ImageFont.FreeTypeFont, char: str) -> Image.Image | None:
    """Render ``char`` white on black, cropped to its ink; ``None`` when the glyph leaves no ink at all.

    The glyph is drawn centred on a canvas of twice the font size, which saves asking FreeType for its bounding
    box first; only a glyph that reaches the canvas edge (none of the usual fonts' digits do) is drawn again on
    a canvas of its exact size.
    """
    side = 2 * RENDER_SIZE
    image = Image.new("L", (side, side))
    ImageDraw.Draw(image).text((RENDER_SIZE, RENDER_SIZE), char, font=font, fill=255, anchor="mm")
    ink = image.getbbox()
    if ink and (ink[0] == 0 or ink[1] == 0 or ink[2] == side or ink[3] == side):
        left, top, right, bottom = (int(v) for v in font.getbbox(char))
        image = Image.new("L", (max(1, right - left), max(1, bottom - top)))
        ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255)
        ink = image.getbbox()
    return image.crop(ink) if ink else None


def reduce_glyph(glyph: Image.Image, box: int = WORK_BOX) -> np.ndarray:
    """Scale a cropped glyph (anti-aliased, aspect kept) so that its longer side is ``box`` pixels."""
    width, height = glyph.size
    factor = box / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(glyph.resize(size, Image.Resampling.BOX))


def shape_feature(glyph: Image.Image, size: int = 24) -> np.ndarray:
    """A glyph fitted into the 20×20 box and centred in ``size``×``size``, as floats in [0, 1].

    Used to compare fonts (duplicates, digits that are not digits); centring by the bounding box is precise
    enough for a comparison.
    """
    small = reduce_glyph(glyph, BOX).astype(np.float32) / 255.0
    out = np.zeros((size, size), dtype=np.float32)
    top = (size - small.shape[0]) // 2
    left = (size - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


# --- stroke variants -------------------------------------------------------------------------------------------


def stroke_levels(augmentation: Augmentation) -> range:
    """Integer stroke offsets (in working pixels) that the augmentation's stroke range can blend between."""
    low, high = augmentation.stroke
    return range(math.floor(low * PIXELS_PER_UNIT), math.floor(high * PIXELS_PER_UNIT) + 2)


def _morph(frames: np.ndarray, step: int, grow: bool) -> np.ndarray:
    """One step of grey-level dilation (``grow``) or erosion of a stack of frames (..., S, S).

    Alternating a plus-shaped and a square neighbourhood approximates a disc, so strokes thicken evenly rather
    than into squares. Frames have a zero border wider than the total growth, so edges need no padding.
    """
    pick = np.maximum if grow else np.minimum
    out = frames.copy()
    inner = out[..., 1:-1, 1:-1]
    shifts = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if step % 2 == 0:
        shifts += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    size = frames.shape[-1]
    for dy, dx in shifts:
        pick(inner, frames[..., 1 + dy : size - 1 + dy, 1 + dx : size - 1 + dx], out=inner)
    return out


def build_sources(glyphs: Sequence[np.ndarray], levels: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stroke variants of each glyph, each centred in a common zero-padded frame.

    Returns ``sources`` (glyphs, levels, S, S) float32, ``centres`` (glyphs, 2) the integer (x, y) of each
    glyph's centre in the frame, and ``extents`` (glyphs, levels, 2) the half width/height of each variant's
    ink. Thinning stops at the last level that keeps at least half of a glyph's ink, so hairline fonts are
    not erased.
    """
    reach = max(abs(levels.start), abs(levels.stop - 1))
    frame = WORK_BOX + 2 * (reach + 2)
    count = len(glyphs)
    base = np.zeros((count, frame, frame), dtype=np.float32)
    centres = np.zeros((count, 2), dtype=np.float64)
    sizes = np.zeros((count, 2), dtype=np.float64)
    for g, glyph in enumerate(glyphs):
        height, width = glyph.shape
        top, left = (frame - height) // 2, (frame - width) // 2
        base[g, top : top + height, left : left + width] = glyph
        centres[g] = (left + width // 2, top + height // 2)
        sizes[g] = (width / 2, height / 2)
    variants = {0: base}
    for level in range(1, levels.stop):
        variants[level] = _morph(variants[level - 1], level, grow=True)
    ink = base.sum(axis=(1, 2))
    for level in range(-1, levels.start - 1, -1):
        previous = variants[level + 1]
        thinner = _morph(previous, -level, grow=False)
        keep = thinner.sum(axis=(1, 2)) >= 0.5 * ink
        variants[level] = np.where(keep[:, None, None], thinner, previous)
    sources = np.stack([variants[level] for level in levels], axis=1)
    grown = np.array([max(level, 0) for level in levels], dtype=np.float64)
    extents = sizes[:, None, :] + grown[None, :, None]
    return sources, centres, extents


# --- the batch pipeline ----------------------------------------------------------------------------------------

_GRID = np.arange(CANVAS, dtype=np.float64) + 0.5 - CANVAS / 2.0
#: Homogeneous output offsets of the canvas pixels from its centre, rows (x, y, 1), in row-major pixel order.
_OFFSETS = np.stack([np.tile(_GRID, CANVAS), np.repeat(_GRID, CANVAS), np.ones(CANVAS * CANVAS)]).astype(np.float32)


def _warp(
    sources: np.ndarray,
    centres: np.ndarray,
    extents: np.ndarray,
    digits: np.ndarray,
    levels: range,
    params: SampleParams,
    bank: np.ndarray,
) -> np.ndarray:
    """Blend each sample's stroke variants, then sample it through its affine + elastic inverse map.

    Returns (n, CANVAS, CANVAS) float32 grey levels. The affine part is rescaled so that the warped glyph's
    longer side is ``WORK_BOX``: the normalisation would undo that scale anyway, and this keeps the glyph at
    the working resolution and inside the canvas. Written with in-place operations: on arrays this size the
    cost is in passes over memory, not arithmetic.
    """
    n = digits.size
    frame = sources.shape[-1]
    offset = params.stroke * PIXELS_PER_UNIT - levels.start
    lower = np.minimum(np.maximum(np.floor(offset).astype(np.int64), 0), len(levels) - 2)
    frac = offset - lower
    src = sources[digits, lower + 1]
    base = sources[digits, lower]
    src -= base
    src *= frac.astype(np.float32)[:, None, None]
    src += base

    half = extents[digits, lower + (frac > 0)]
    forward = np.abs(params.forward)
    reach_x = forward[:, 0, 0] * half[:, 0] + forward[:, 0, 1] * half[:, 1]
    reach_y = forward[:, 1, 0] * half[:, 0] + forward[:, 1, 1] * half[:, 1]
    inverse = params.inverse * (2.0 * np.maximum(reach_x, reach_y) / WORK_BOX)[:, None, None]

    # Source pixel-index coordinate = inverse · (output offset + elastic displacement) + glyph centre − 0.5, for
    # both axes of the whole sub-batch in two batched matrix products (one homogeneous, one with the field).
    affine = np.empty((n, 2, 3), dtype=np.float32)
    affine[:, :, :2] = inverse
    affine[:, :, 2] = centres[digits] - 0.5
    displace = (inverse * (params.elastic_amplitude * PIXELS_PER_UNIT)[:, None, None]).astype(np.float32)
    coords = np.matmul(affine, _OFFSETS)
    coords += np.matmul(displace, bank[params.elastic_index].reshape(n, 2, CANVAS * CANVAS))
    # The frame's border is zero, so clamping out-of-range coordinates onto it samples black.
    np.clip(coords, 0.0, frame - 1.001, out=coords)
    whole = np.floor(coords)
    coords -= whole
    whole = whole.astype(np.int32)
    index = whole[:, 1]
    index *= frame
    index += whole[:, 0]
    index += (np.arange(n, dtype=np.int32) * (frame * frame))[:, None]
    # One gather of each sample point's 2×2 neighbourhood (16 bytes) instead of four scalar gathers.
    flat = src.reshape(-1)
    size = flat.size
    quad = np.zeros((size, 4), dtype=np.float32)
    quad[:, 0] = flat
    quad[:-1, 1] = flat[1:]
    quad[:-frame, 2] = flat[frame:]
    quad[: -frame - 1, 3] = flat[frame + 1 :]
    corners = quad.take(index, axis=0)
    xs, ys = coords[:, 0], coords[:, 1]
    top = corners[..., 1] - corners[..., 0]
    top *= xs
    top += corners[..., 0]
    bottom = corners[..., 3] - corners[..., 2]
    bottom *= xs
    bottom += corners[..., 2]
    bottom -= top
    bottom *= ys
    bottom += top
    return bottom.reshape(n, CANVAS, CANVAS)


def _box_weights(start: np.ndarray, length: np.ndarray, size: np.ndarray, pixels: int) -> np.ndarray:
    """(n, BOX, pixels) area-coverage weights mapping ``length`` source pixels from ``start`` onto ``size`` outputs.

    Output pixel i averages the source interval [start + i·length/size, start + (i+1)·length/size): an exact box
    (area) filter, which is what anti-aliased size normalisation means. Rows at or beyond ``size`` are zero.
    """
    step = length / size
    edges = start[:, None] + np.arange(BOX + 1, dtype=np.float64) * step[:, None]
    cover = edges[:, :, None] - np.arange(pixels, dtype=np.float64)
    np.clip(cover, 0.0, 1.0, out=cover)
    weights = cover[:, 1:] - cover[:, :-1]
    weights /= step[:, None, None]
    weights[np.arange(BOX)[None, :] >= size[:, None]] = 0.0
    return weights.astype(np.float32)


def _normalise(warped: np.ndarray, noise_std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST normalisation of a batch: fit into 20×20 (box filter), peak to 255, noise, centre of mass to (14, 14)."""
    n, _, pixels = warped.shape
    ink = warped > INK_THRESHOLD
    rows = np.asarray(ink.any(axis=2))
    cols = np.asarray(ink.any(axis=1))
    top = rows.argmax(axis=1)
    bottom = pixels - rows[:, ::-1].argmax(axis=1)
    left = cols.argmax(axis=1)
    right = pixels - cols[:, ::-1].argmax(axis=1)
    height = (bottom - top).astype(np.float64)
    width = (right - left).astype(np.float64)
    factor = BOX / np.maximum(height, width)
    out_h = np.clip(np.rint(height * factor), 1, BOX)
    out_w = np.clip(np.rint(width * factor), 1, BOX)
    wy = _box_weights(top.astype(np.float64), height, out_h, pixels)
    wx = _box_weights(left.astype(np.float64), width, out_w, pixels)
    small = np.matmul(np.matmul(wy, warped), wx.transpose(0, 2, 1))

    peak = small.max(axis=(1, 2))
    small *= (255.0 / np.maximum(peak, 1e-6)).astype(np.float32)[:, None, None]
    # Noise on the ink only, then round to grey levels (in place: one buffer for the whole sequence).
    grey = rng.standard_normal(small.shape, dtype=np.float32)
    grey *= noise_std.astype(np.float32)[:, None, None]
    grey += small
    grey[small < 0.5] = 0.0
    np.clip(grey, 0.0, 255.0, out=grey)
    grey += 0.5
    np.floor(grey, out=grey)

    mass = np.maximum(grey.sum(axis=(1, 2)), 1.0)
    index = np.arange(BOX, dtype=np.float64)
    com_y = grey.sum(axis=2) @ index / mass
    com_x = grey.sum(axis=1) @ index / mass
    off_y = np.clip(np.floor(CENTRE - com_y + 0.5), 0, IMAGE_SIZE - out_h).astype(np.int64)
    off_x = np.clip(np.floor(CENTRE - com_x + 0.5), 0, IMAGE_SIZE - out_w).astype(np.int64)
    # One slice assignment per sample costs less than a three-array fancy index over the batch.
    placed = np.zeros((n, IMAGE_SIZE + BOX, IMAGE_SIZE + BOX), dtype=np.uint8)
    grey8 = grey.astype(np.uint8)
    for k, (y, x) in enumerate(zip(off_y.tolist(), off_x.tolist(), strict=True)):
        placed[k, y : y + BOX, x : x + BOX] = grey8[k]
    return np.ascontiguousarray(placed[:, :IMAGE_SIZE, :IMAGE_SIZE])


def render_batch(
    sources: np.ndarray,
    centres: np.ndarray,
    extents: np.ndarray,
    digits: np.ndarray,
    levels: range,
    params: SampleParams,
    rng: np.random.Generator,
    *,
    seed: int,
    augmentation: Augmentation,
) -> np.ndarray:
    """Render a batch of augmented digits of one face as (n, 28, 28) ``uint8`` MNIST-format images.

    Works through the batch ``SUB_BATCH`` samples at a time so that the intermediate arrays stay in cache.
    """
    bank = elastic_bank(seed, augmentation.elastic_sigma, CANVAS, PIXELS_PER_UNIT)
    images = np.empty((digits.size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, digits.size, SUB_BATCH):
        part = slice(start, start + SUB_BATCH)
        sub = params.select(part)
        warped = _warp(sources, centres, extents, digits[part], levels, sub, bank)
        images[part] = _normalise(warped, sub.noise_std, rng)
    return images
