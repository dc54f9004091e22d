"""Images for the benches, as RGB arrays: a file or a JPEG that OpenCV cannot decode is a clear error
(`UnreadableImage`, naming what), never a None that fails later inside cvtColor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.lib.data import DataMissing


class UnreadableImage(DataMissing):
    """An image file or encoded buffer that OpenCV could not decode (bench data that cannot be used)."""


def read_rgb(path: Path | str) -> np.ndarray:
    """The image at `path` as an RGB uint8 array."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableImage(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_rgb(encoded: bytes, what: str = "JPEG") -> np.ndarray:
    """An encoded image (a sample, a view) as an RGB uint8 array."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableImage(f"cannot decode {what} ({len(encoded)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
