"""Cheap motion on the low-res stream, the way Frigate gates its detector (its improved motion detector, read
as a reference): a small grey image against a running-average background, thresholded, dilated, and the
connected blobs' boxes. Pure numpy and scipy on a strided view of the frame; no clock, no I/O.

The background is a blurred average of the scene at 1/`step` of the low-res size. It never leaves the
device and is zeroed by `reset()` (the loop calls it when the camera closes). The work buffers (the
thumbnail, its difference from the background, the masks) are allocated once per thumbnail size, zeroed
after every frame and dropped by `reset()`.

Every step is exact in its arithmetic (sums of grey levels are whole numbers in float32, masks are boolean),
so the buffers and the order of the work change no box: tests/firmware/sensing/test_gate_reference.py holds
digests of what the code before them gave, which this code reproduces to the bit (bench/GATING.md)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connected blobs (scipy's default)


class _Work:
    """The per-frame buffers for a thumbnail of (h, w) samples: allocated once, zeroed after every frame."""

    def __init__(self, h: int, w: int) -> None:
        self.grey = np.zeros((h, w), np.uint8)  # the strided samples
        self.pairs = np.zeros((h, w - 1), np.uint16)  # sums of horizontal neighbours
        self.small = np.zeros((h - 1, w - 1), np.float32)  # the 2x2 blur, then its difference from the background
        self.size = np.zeros((h - 1, w - 1), np.float32)  # the difference's magnitude
        self.moved = np.zeros((h - 1, w - 1), bool)
        self.rows = np.zeros((h - 1, w - 1), bool)  # the mask dilated along rows
        self.grown = np.zeros((h - 1, w - 1), bool)  # ... and then along columns: a 5x5 dilation
        # 4-connected blobs number at most half the samples: 16 bits hold them but in a huge thumbnail
        self.labels = np.zeros((h - 1, w - 1), np.int16 if h * w < 2**16 else np.int32)
        self.shape = (h, w)

    def zero(self) -> None:
        for a in (self.grey, self.pairs, self.small, self.size, self.moved, self.rows, self.grown,
                  self.labels):
            a.fill(0)


def _dilate(m: np.ndarray) -> np.ndarray:
    """A 3x3 binary dilation from shifted ORs (scipy's is ten times slower at this size)."""
    rows = m.copy()
    rows[1:] |= m[:-1]
    rows[:-1] |= m[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _dilate5(m: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`_dilate(_dilate(m))` (a 5x5 square, nothing beyond the edges) into preallocated buffers: along rows,
    then along columns (OpenCV's dilate gives the same, no faster in the loop)."""
    np.copyto(rows, m)
    rows[:, 1:] |= m[:, :-1]
    rows[:, 2:] |= m[:, :-2]
    rows[:, :-1] |= m[:, 1:]
    rows[:, :-2] |= m[:, 2:]
    np.copyto(out, rows)
    out[1:] |= rows[:-1]
    out[2:] |= rows[:-2]
    out[:-1] |= rows[1:]
    out[:-2] |= rows[2:]
    return out


class MotionDetector:
    """`boxes(pixels)` returns (N, 4) float64 boxes [x0, y0, x1, y1] normalized to the frame, around what
    changed since the background. The first frame (and one after a change of more than `relearn` of the
    image, such as lights switched on) only teaches the background and reports no motion."""

    def __init__(self, threshold: int = 20, min_area: float = 0.0002, alpha: float = 0.1,
                 target_height: int = 64, relearn: float = 0.6) -> None:
        self.threshold = float(threshold)
        self.min_area = min_area
        self.alpha = alpha
        self.target_height = target_height
        self.relearn = relearn
        self._bg: np.ndarray | None = None
        self._work: _Work | None = None
        self.share = 0.0  # share of the small image that moved in the last frame

    def reset(self) -> None:
        if self._bg is not None:
            self._bg.fill(0)
        self._bg = None
        if self._work is not None:
            self._work.zero()
        self._work = None

    def _small(self, pixels: np.ndarray) -> tuple[_Work, np.ndarray]:
        step = max(1, pixels.shape[0] // self.target_height)
        # green (most of luma, one channel read), every step-th sample; from a contiguous frame as a 2-D view
        # with one stride a row, which numpy reads several times faster than the 3-D one
        if pixels.ndim == 3 and pixels.shape[2] > 1 and pixels.flags.c_contiguous:
            c = pixels.shape[2]
            grey = pixels.reshape(pixels.shape[0], -1)[::step, 1::c * step]
        else:
            grey = pixels[::step, ::step, 1]
        if self._work is None or self._work.shape != grey.shape:
            self._work = _Work(*grey.shape)
        wk = self._work
        np.copyto(wk.grey, grey)
        g = wk.grey
        np.add(g[:, :-1], g[:, 1:], out=wk.pairs, dtype=np.uint16)  # a 2x2 box blur: whole numbers, exact
        np.add(wk.pairs[:-1], wk.pairs[1:], out=wk.small, dtype=np.float32)
        wk.small *= 0.25
        return wk, wk.small

    def boxes(self, pixels: np.ndarray) -> np.ndarray:
        wk, small = self._small(pixels)
        try:
            return self._boxes(wk, small)
        finally:
            wk.zero()

    def _boxes(self, wk: _Work, small: np.ndarray) -> np.ndarray:
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
            return np.zeros((0, 4))
        diff = np.subtract(small, self._bg, out=small)
        moved = np.greater(np.abs(diff, out=wk.size), self.threshold, out=wk.moved)
        self.share = float(np.count_nonzero(moved)) / moved.size
        if self.share > self.relearn:  # the whole picture changed: learn it again, report nothing
            self._bg += diff
            return np.zeros((0, 4))
        # the background follows the scene slowly where nothing moves, and ten times more slowly where
        # something does, so a person who stops fades into it over tens of seconds (tracked regions keep them)
        np.multiply(diff, 0.1, out=diff, where=moved)
        diff *= self.alpha
        self._bg += diff
        if self.share == 0.0:
            return np.zeros((0, 4))
        return self._blobs(_dilate5(moved, wk.rows, wk.grown), wk.labels)

    def _blobs(self, mask: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        if labels is None:
            labels = np.zeros(mask.shape, np.int32)
        n = ndimage.label(mask, structure=_CROSS, output=labels)
        if not n:
            return np.zeros((0, 4))
        h, w = mask.shape
        least = self.min_area * h * w
        # a blob of the 5x5-dilated mask holds at least a 3x3 square (a moved sample in a corner), so below
        # nine samples the area check passes every blob and is skipped
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].tolist() if least > 9 or min(h, w) < 3 else None
        out = [(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
               for i, sl in enumerate(ndimage.find_objects(labels, n))
               if sl is not None and (areas is None or areas[i] >= least)]
        if not out:
            return np.zeros((0, 4))
        return np.array(out, dtype=np.float64) / np.array((w, h, w, h), dtype=np.float64)
