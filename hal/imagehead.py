"""The picture size of an image file, read from its header without decoding it (OpenCV's `imread` has no
header-only mode: it decodes the whole picture, 576 MB for a 16000x12000 one, before anyone can refuse it).

PNG (IHDR), JPEG (the first start-of-frame marker, reached by skipping segments by their lengths, so a large
EXIF block costs a seek, not a read) and BMP (BITMAPINFOHEADER and its older core form): the formats of
`hal.video.IMAGE_SUFFIXES`, told apart by their magic bytes, not by the file name. Anything else, or a header
cut short, is `ImageHeaderError`: a file whose size cannot be told cheaply is not decoded."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # not C4/C8/CC (DHT, JPG, DAC)
_MAX_SEGMENTS = 4096  # a JPEG with more segments before its frame header is not one a camera wrote


class ImageHeaderError(ValueError):
    """The file is not a PNG, JPEG or BMP whose header states its size."""


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) as the file's header states them; raises ImageHeaderError or OSError."""
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic == b"\x89PNG\r\n\x1a\n":
            return _png(f)
        if magic[:2] == b"\xff\xd8":
            f.seek(2)
            return _jpeg(f)
        if magic[:2] == b"BM":
            return _bmp(f)
    raise ImageHeaderError("not a PNG, JPEG or BMP file (by its first bytes)")


def _exact(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ImageHeaderError("the header is cut short")
    return b


def _png(f: BinaryIO) -> tuple[int, int]:
    length, kind = struct.unpack(">I4s", _exact(f, 8))
    if kind != b"IHDR" or length != 13:
        raise ImageHeaderError("a PNG whose first chunk is not IHDR")
    w, h = struct.unpack(">II", _exact(f, 8))
    return int(w), int(h)


def _jpeg(f: BinaryIO) -> tuple[int, int]:
    for _ in range(_MAX_SEGMENTS):
        b = _exact(f, 1)
        if b != b"\xff":
            raise ImageHeaderError("a JPEG whose segments do not follow one another")
        marker = _exact(f, 1)[0]
        while marker == 0xFF:  # fill bytes before a marker
            marker = _exact(f, 1)[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack(">H", _exact(f, 2))
        if length < 2:
            raise ImageHeaderError("a JPEG segment shorter than its own length field")
        if marker in _SOF:
            _precision, h, w = struct.unpack(">BHH", _exact(f, 5))
            return int(w), int(h)
        f.seek(length - 2, 1)
    raise ImageHeaderError("a JPEG with no frame header before its image data")


def _bmp(f: BinaryIO) -> tuple[int, int]:
    f.seek(14)
    (size,) = struct.unpack("<I", _exact(f, 4))
    if size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", _exact(f, 4))
        return int(w), int(h)
    if size < 40:
        raise ImageHeaderError("a BMP with an unknown header")
    w, h = struct.unpack("<ii", _exact(f, 8))
    return int(w), abs(int(h))  # a negative height is a top-down bitmap
