"""Cheap motion on the low-res stream, the way Frigate gates its detector (its improved motion detector, read
as a reference): a small grey image against a running-average background, thresholded, dilated, and the
connected blobs' boxes. Numpy on a strided view of the frame, OpenCV for the dilation and the blobs; no clock,
no I/O.

The background is a blurred average of the scene at 1/`step` of the low-res size. It never leaves the
device and is zeroed by `reset()` (the loop calls it when the camera closes). The work buffers (the
thumbnail, its difference from the background, the masks) are allocated once per thumbnail size, zeroed
after every frame and dropped by `reset()`.

Every step is exact in its arithmetic (sums of grey levels are whole numbers in float32, masks are boolean),
so the buffers and the order of the work change no box: tests/firmware/sensing/test_gate_reference.py holds
digests of what the code before them gave, which this code reproduces to the bit (bench/GATING.md)."""

from __future__ import annotations

import cv2
import numpy as np


class _Work:
    """The per-frame buffers for a thumbnail of (h, w) samples, all views of one block of memory: allocated
    once, zeroed after every frame by one fill (cold, each call costs more than its bytes)."""

    grey: np.ndarray
    pairs: np.ndarray
    small: np.ndarray
    size: np.ndarray
    moved: np.ndarray
    rows: np.ndarray
    grown: np.ndarray
    labels: np.ndarray

    def __init__(self, h: int, w: int) -> None:
        m = (h - 1, w - 1)
        label = np.uint16 if h * w < 2**16 else np.int32  # OpenCV's label types: 16 bits hold one a sample
        parts = (("grey", (h, w), np.uint8),  # the strided samples
                 ("pairs", (h, w - 1), np.uint16),  # sums of horizontal neighbours
                 ("small", m, np.float32),  # the 2x2 blur, then its difference from the background
                 ("size", m, np.float32),  # the difference's magnitude
                 ("moved", m, np.bool_),
                 ("rows", m, np.bool_),  # the mask dilated along rows
                 ("grown", m, np.bool_),  # ... and then along columns: a 5x5 dilation
                 ("labels", m, label))  # the blobs' numbers
        sizes = [-(-int(np.prod(shape)) * np.dtype(t).itemsize // 64) * 64 for _, shape, t in parts]
        self.memory = np.zeros(sum(sizes), np.uint8)
        at = 0
        for (name, shape, t), n in zip(parts, sizes, strict=True):
            k = int(np.prod(shape)) * np.dtype(t).itemsize
            setattr(self, name, self.memory[at:at + k].view(t).reshape(shape))
            at += n
        self.shape = (h, w)

    def zero(self) -> None:
        self.memory.fill(0)


_ROW5 = np.ones((1, 5), np.uint8)  # a 5x5 square as a row of 5 and then a column of 5
_COL5 = np.ones((5, 1), np.uint8)


def _dilate5(m: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The 5x5 binary dilation of the boolean mask `m` (nothing beyond the edges) into `out`, along rows into
    `rows` and then along columns: OpenCV's dilate on the masks' bytes (booleans are bytes 0 and 1, and the
    maximum of those is their OR), one C call a pass where numpy needed ten shifted ORs."""
    cv2.dilate(m.view(np.uint8), _ROW5, dst=rows.view(np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    cv2.dilate(rows.view(np.uint8), _COL5, dst=out.view(np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
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
        return np.array(self.regions(pixels), dtype=np.float64).reshape(-1, 4)

    def regions(self, pixels: np.ndarray) -> list[list[float]]:
        """`boxes` as plain floats (what the gate packs), the same values."""
        wk, small = self._small(pixels)
        try:
            return self._boxes(wk, small)
        finally:
            wk.zero()

    def _boxes(self, wk: _Work, small: np.ndarray) -> list[list[float]]:
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
            return []
        diff = np.subtract(small, self._bg, out=small)
        moved = np.greater(np.abs(diff, out=wk.size), self.threshold, out=wk.moved)
        self.share = float(np.count_nonzero(moved)) / moved.size
        if self.share > self.relearn:  # the whole picture changed: learn it again, report nothing
            self._bg += diff
            return []
        # the background follows the scene slowly where nothing moves, and ten times more slowly where
        # something does, so a person who stops fades into it over tens of seconds (tracked regions keep them)
        np.multiply(diff, 0.1, out=diff, where=moved)
        diff *= self.alpha
        self._bg += diff
        if self.share == 0.0:
            return []
        return self._blob_list(_dilate5(moved, wk.rows, wk.grown), wk.labels)

    def _blobs(self, mask: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        return np.array(self._blob_list(mask, labels), dtype=np.float64).reshape(-1, 4)

    def _blob_list(self, mask: np.ndarray, labels: np.ndarray | None = None) -> list[list[float]]:
        """The boxes of the 4-connected blobs of the boolean `mask` covering at least `min_area` of it, in the
        order of their first sample row by row (scipy's label and find_objects, which this replaced, gave the
        same boxes in the same order); `labels` (uint16 or int32, the mask's shape) receives their numbers."""
        h, w = mask.shape
        if labels is None:
            labels = np.zeros(mask.shape, np.int32)
        ltype = cv2.CV_16U if labels.dtype == np.uint16 else cv2.CV_32S
        _, got, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), labels=labels, connectivity=4,
                                                            ltype=ltype)
        if got is not labels:  # never so with a buffer of the right kind: keep the blobs zeroable
            np.copyto(labels, got)
            got.fill(0)
        least = self.min_area * h * w
        # row 0 is the background; x, y, width, height, area; int / int is the correctly rounded quotient,
        # as numpy's float64 division
        return [[x / w, y / h, (x + bw) / w, (y + bh) / h] for x, y, bw, bh, area in stats[1:].tolist()
                if area >= least]
