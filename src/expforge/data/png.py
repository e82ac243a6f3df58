"""A minimal 8-bit greyscale PNG encoder for small images.

Pillow's encoder costs more than rendering a whole augmented 28×28 digit, so every dataset writer uses this one.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_pngs(images: np.ndarray) -> list[bytes]:
    """Encode a stack of 2-D ``uint8`` images as 8-bit greyscale PNGs (no row filter, zlib level 1).

    Written by hand because Pillow's encoder costs more than the whole rest of a sample on a 28×28 image. The
    header is the same for the whole stack and the filter bytes are added in one numpy step, so per image only
    the deflate and the IDAT checksum remain. The bytes are standard PNG (``manifest.load_image`` and Pillow read them).
    """
    count, height, width = images.shape
    rows = np.zeros((count, height, width + 1), dtype=np.uint8)
    rows[:, :, 1:] = images
    head = PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    idat_crc = zlib.crc32(b"IDAT")
    encoded = []
    for raw in rows:
        data = zlib.compress(raw, 1)
        size = struct.pack(">I", len(data))
        encoded.append(b"".join((head, size, b"IDAT", data, struct.pack(">I", zlib.crc32(data, idat_crc)), _PNG_IEND)))
    return encoded


def encode_png(image: np.ndarray) -> bytes:
    """Encode one 2-D ``uint8`` image (see ``encode_pngs``)."""
    return encode_pngs(image[None])[0]
