"""Faces with their keypoints (BlazeFace), and dlib-style face chips aligned on them.

BlazeFace's regressors carry, beside each box, six keypoints (MediaPipe's order: right eye, left eye, nose
tip, mouth centre, right ear, left ear); `hal.faces` decodes only the boxes, this module keeps the keypoints
too (same anchors, same weighted NMS, applied to all 16 values).

dlib's age and gender networks were trained on "face chips": the face mapped by a similarity transform onto
dlib's 5-point template (two corners of each eye and the base of the nose) with 20% padding. dlib's landmark
model is not on the device (it comes with dlib); instead the chip is aligned on BlazeFace's two eye centres,
mapped onto the template's eye centres (the mean of each eye's two template corners), which fixes the
similarity exactly (rotation, scale, shift). A chip smaller than the face is made by an area resize first,
then a bilinear warp, as dlib's extract_image_chip does with its pyramid.

Every intermediate image this module makes (model input, resized copies) is zeroed before it returns; the
caller owns and zeroes the image it passes and the chip it receives.

Raises `DetectorError` when the model cannot be loaded or fails on an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hal.errors import DetectorError
from hal.faces import SPECS, FaceConfig, square_tiles, ssd_anchors, weighted_nms

# dlib's 5-point chip template (dlib/image_transforms/interpolation.h, get_face_chip_details), unit square
DLIB_TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                          [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                          [0.4901123135679, 0.6277975316475]])
EYE_RIGHT_OF_IMAGE = DLIB_TEMPLATE[0:2].mean(axis=0)  # the eye seen on the image's right side
EYE_LEFT_OF_IMAGE = DLIB_TEMPLATE[2:4].mean(axis=0)


@dataclass(frozen=True, slots=True)
class FaceMarks:
    """One face in image pixels: `box` xyxy, `score`, and `keypoints` (6, 2) as (x, y) in MediaPipe's order."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """(eye on the image's left, eye on the image's right), whichever MediaPipe calls right or left."""
        a, b = self.keypoints[0], self.keypoints[1]
        return (a, b) if a[0] <= b[0] else (b, a)


def chip_transform(marks: FaceMarks, size: int, padding: float) -> np.ndarray:
    """The 2x3 similarity mapping image pixels onto a size x size chip: the eyes onto dlib's template eyes."""
    src_l, src_r = (np.asarray(e, np.float64) for e in marks.eyes())
    dst_l, dst_r = ((padding + e) / (2 * padding + 1) * size for e in (EYE_LEFT_OF_IMAGE, EYE_RIGHT_OF_IMAGE))
    s, d = src_r - src_l, dst_r - dst_l
    norm = float(s @ s)
    if norm < 1e-6:
        raise DetectorError("face keypoints: both eyes at the same place")
    a = (s[0] * d[0] + s[1] * d[1]) / norm  # scale * cos
    b = (s[0] * d[1] - s[1] * d[0]) / norm  # scale * sin
    rot = np.array([[a, -b], [b, a]])
    shift = dst_l - rot @ src_l
    return np.column_stack([rot, shift])


def face_chip(rgb: np.ndarray, marks: FaceMarks, size: int, padding: float = 0.2) -> np.ndarray:
    """The aligned size x size uint8 RGB chip of one face (a new array: the caller zeroes it)."""
    import cv2

    m = chip_transform(marks, size, padding)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    small = None
    src = rgb
    if scale < 0.5:  # shrink by area first, so the warp does not alias (dlib uses a pyramid)
        f = min(1.0, 2.0 * scale)
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / w, small.shape[0] / h
        m = m @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
        src = small
    chip = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if small is not None:
        small.fill(0)
    return np.ascontiguousarray(chip)


def decode_marks(raw: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int,
                 score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw regressors (N, 16) and logits (N,) -> (rows (M, 16): box xyxy then 6 keypoints (x, y), normalized
    to the model input; scores (M,)) for the anchors whose sigmoid score clears the threshold."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    keep = scores >= score_threshold
    r = raw[keep].astype(np.float64) / input_size
    a = anchors[keep].astype(np.float64)
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    box = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], axis=1)
    kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    return np.concatenate([box, kps.reshape(-1, 12)], axis=1), scores[keep]


class FaceMarker:
    """BlazeFace on CPU with keypoints: `detect(rgb)` -> faces, best first. Tiles as `FaceConfig.tiles`
    (for a head crop the whole image, tiles (1,), is the usual choice)."""

    def __init__(self, config: FaceConfig | None = None, *, model_path: Path | None = None) -> None:
        self.config = config or FaceConfig(variant="short_range", tiles=(1,))
        self.config.validate()
        self.spec = SPECS[self.config.variant]
        self._it = _load(self.spec.model, self.config.threads, model_path)
        self._anchors = ssd_anchors(self.spec)
        self._in = self._it.get_input_details()[0]["index"]
        outs = self._it.get_output_details()
        self._box = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self._score = next(o["index"] for o in outs if o["shape"][-1] == 1)
        size = self.spec.input_size
        self._tensor = np.zeros((1, size, size, 3), np.float32)

    def detect(self, rgb: np.ndarray) -> list[FaceMarks]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DetectorError(f"face marker wants HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        rows, scores = [], []
        try:
            for grid in self.config.tiles:
                for x0, y0, side in square_tiles(w, h, grid):
                    r, s = self._square(rgb, x0, y0, side)
                    rows.append(r)
                    scores.append(s)
        finally:
            self._scrub()
        merged, best = weighted_nms(np.concatenate(rows), np.concatenate(scores), self.config.iou_threshold)
        return [FaceMarks((float(row[0]), float(row[1]), float(row[2]), float(row[3])), float(sc),
                          row[4:].reshape(6, 2).copy()) for row, sc in zip(merged, best, strict=True)]

    def _square(self, rgb: np.ndarray, x0: int, y0: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        crop = np.zeros((side, side, 3), np.uint8)
        part = rgb[y0:y0 + side, x0:x0 + side]
        crop[: part.shape[0], : part.shape[1]] = part
        size = self.spec.input_size
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crop.fill(0)
        np.multiply(small, 1 / 127.5, out=self._tensor[0], casting="unsafe")
        self._tensor -= 1.0
        small.fill(0)
        try:
            self._it.set_tensor(self._in, self._tensor)
            self._it.invoke()
            raw = self._it.get_tensor(self._box)[0]
            logits = self._it.get_tensor(self._score)[0, :, 0]
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"face model failed on an image: {e}") from e
        rows, scores = decode_marks(raw, logits, self._anchors, size, self.config.score_threshold)
        offset = np.tile([x0, y0], 8)
        return rows * side + offset, scores

    def _scrub(self) -> None:
        """Zero the model's input (our tensor and the interpreter's copy of it)."""
        self._tensor.fill(0.0)
        try:
            self._it.set_tensor(self._in, self._tensor)
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"face model: cannot clear its input: {e}") from e

    def close(self) -> None:
        self._it = None


def _load(model: str, threads: int, model_path: Path | None) -> Any:
    from hal.litert import load_interpreter
    from models import ModelError, resolve

    try:
        interpreter, _ = load_interpreter(model_path or resolve(model), edgetpu=False, num_threads=threads)
        return interpreter
    except ModelError as e:
        raise DetectorError(f"cannot load face model {model}: {e}") from e
