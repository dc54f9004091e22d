"""BlazeFace face detector (MediaPipe short- and full-range models) through the TFLite runtime.

Used only by the sample-image path: every face found in a sample is blurred before encoding. The model
outputs raw SSD regressors and logits per anchor; decoding follows MediaPipe's SSD anchor scheme
(`SsdAnchorsCalculator` with fixed-size anchors, one grid per stride, consecutive layers of the same stride
sharing a grid), sigmoid scores and weighted non-maximum suppression. Small faces in a 640x480 image are
found by running the model on the whole image and on overlapping square tiles (`FaceConfig.tiles`).

Raises `DetectorError` when the model cannot be loaded or fails on an image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hal.detections import Detections
from hal.errors import DetectorError
from hal.litert import load_interpreter
from models import ModelError, resolve

log = logging.getLogger(__name__)

FACE = -1  # class id of a face in Detections (not a COCO id, so `persons()` never returns faces)


@dataclass(frozen=True, slots=True)
class BlazeFaceSpec:
    """What a BlazeFace variant needs for decoding: input size, anchor strides, anchors per cell per layer
    (aspect ratio 1 plus the interpolated scale when `interpolated` is true)."""

    model: str  # manifest name
    file: str  # file name under the model mirror's blazeface/ folder
    input_size: int
    strides: tuple[int, ...]
    interpolated: bool
    num_anchors: int


SHORT_RANGE = BlazeFaceSpec(
    "blazeface_short_range", "face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 896
)
FULL_RANGE = BlazeFaceSpec(
    "blazeface_full_range", "face_detection_full_range.tflite", 192, (4,), False, 2304
)
SPECS = {"short_range": SHORT_RANGE, "full_range": FULL_RANGE}


@dataclass(frozen=True, slots=True)
class FaceConfig:
    """`variant`: "short_range" (faces within ~2 m) or "full_range" (~5 m). `tiles`: tile grids the image is
    also cut into (1 = the whole image only; (1, 2, 3) = whole, 2x2 and 3x3 overlapping square tiles).
    `score_threshold` on the sigmoid score; `iou_threshold` for weighted NMS."""

    variant: str = "full_range"
    tiles: tuple[int, ...] = (1, 2, 3)
    score_threshold: float = 0.5
    iou_threshold: float = 0.3
    threads: int = 2

    def validate(self) -> None:
        if self.variant not in SPECS:
            raise ValueError(f"variant: {self.variant!r} must be one of {sorted(SPECS)}")
        if not self.tiles or not all(1 <= t <= 6 for t in self.tiles):
            raise ValueError("tiles: a non-empty list of grid sizes from 1 to 6, e.g. [1, 2, 3]")
        if not 0.0 < self.score_threshold < 1.0:
            raise ValueError("score_threshold: must be between 0 and 1 (exclusive)")
        if not 0.0 < self.iou_threshold < 1.0:
            raise ValueError("iou_threshold: must be between 0 and 1 (exclusive)")
        if not 1 <= self.threads <= 8:
            raise ValueError("threads: 1 to 8")


def ssd_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """Anchor centres (N, 2) as (x, y) normalized, in the model's output order: per stride group, row by row,
    column by column, then the anchors of that cell. Anchor sizes are fixed (1 x 1), so only centres matter."""
    centres: list[np.ndarray] = []
    i = 0
    while i < len(spec.strides):
        stride = spec.strides[i]
        per_cell = 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            per_cell += 2 if spec.interpolated else 1
            i += 1
        side = int(np.ceil(spec.input_size / stride))
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        grid = np.stack([(xs + 0.5) / side, (ys + 0.5) / side], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    anchors = np.concatenate(centres).astype(np.float32)
    if len(anchors) != spec.num_anchors:
        raise DetectorError(f"{spec.model}: built {len(anchors)} anchors, the model has {spec.num_anchors}")
    return anchors


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int,
           score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw regressors (N, 16) and logits (N,) -> (boxes (M, 4) xyxy normalized to the model input, scores (M,))
    for the anchors whose sigmoid score clears `score_threshold`."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    keep = scores >= score_threshold
    r = raw_boxes[keep].astype(np.float64) / input_size
    a = anchors[keep].astype(np.float64)
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    half_w, half_h = r[:, 2] / 2, r[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return boxes, scores[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster (IoU above threshold with its best box) becomes the
    score-weighted mean of its boxes, with the best score."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    out_boxes, out_scores = [], []
    alive = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (_iou(boxes[i], boxes) >= iou_threshold)
        members[i] = True
        w = scores[members][:, None]
        out_boxes.append((boxes[members] * w).sum(axis=0) / w.sum())
        out_scores.append(scores[i])
        alive &= ~members
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros((0,))
    return np.array(out_boxes), np.array(out_scores)


def square_tiles(width: int, height: int, grid: int) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) covering the image: grid 1 is one square the size of the longer side
    (the image letterboxed); grid g > 1 cuts the shorter side into g overlapping squares and tiles the
    longer side with as many as needed."""
    if grid == 1:
        return [(0, 0, max(width, height))]
    side = int(round(2 * min(width, height) / (grid + 1)))  # 50% overlap between neighbours
    def starts(length: int) -> list[int]:
        n = max(1, int(np.ceil((length - side) / (side / 2))) + 1)
        return [int(round(v)) for v in np.linspace(0, max(length - side, 0), n)]
    return [(x, y, side) for y in starts(height) for x in starts(width)]


def _load_interpreter(spec: BlazeFaceSpec, threads: int, model_path: Path | None) -> Any:
    """The BlazeFace model (found and hash-checked by models.resolve) on the CPU through hal.litert."""

    try:
        path = model_path or resolve(spec.model)
        interpreter, _backend = load_interpreter(path, edgetpu=False, num_threads=threads)
        return interpreter
    except ModelError as e:
        raise DetectorError(f"cannot load face model {spec.model}: {e}") from e


class FaceDetector:
    """BlazeFace on CPU. `detect(rgb)` takes an HxWx3 uint8 RGB image of any size and returns faces as
    Detections (normalized xyxy, class FACE). The interpreter is not shared between threads."""

    backend = "cpu"

    def __init__(self, config: FaceConfig | None = None, *, model_path: Path | None = None) -> None:
        self.config = config or FaceConfig()
        self.config.validate()
        self.spec = SPECS[self.config.variant]
        self._interpreter = _load_interpreter(self.spec, self.config.threads, model_path)
        self._anchors = ssd_anchors(self.spec)
        inp = self._interpreter.get_input_details()[0]
        self._input_index = inp["index"]
        outs = self._interpreter.get_output_details()
        # regressors are (1, N, 16), logits (1, N, 1): tell them apart by their last dimension, not by order
        self._box_index = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self._score_index = next(o["index"] for o in outs if o["shape"][-1] == 1)

    def detect(self, rgb: np.ndarray) -> Detections:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DetectorError(f"face detector wants HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        all_boxes, all_scores = [], []
        for grid in self.config.tiles:
            for x0, y0, side in square_tiles(w, h, grid):
                boxes, scores = self._detect_square(rgb, x0, y0, side)
                all_boxes.append(boxes)
                all_scores.append(scores)
        boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
        scores = np.concatenate(all_scores) if all_scores else np.zeros((0,))
        boxes, scores = weighted_nms(boxes, scores, self.config.iou_threshold)
        boxes = np.clip(boxes / np.array([w, h, w, h], dtype=np.float64), 0.0, 1.0)
        return Detections(
            boxes.astype(np.float32), scores.astype(np.float32), np.full(len(scores), FACE, np.int32)
        )

    def _detect_square(self, rgb: np.ndarray, x0: int, y0: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Runs the model on the square (x0, y0, side) of the image (zero-padded past the edges); returns
        boxes in image pixels."""
        import cv2

        crop = np.zeros((side, side, 3), np.uint8)
        part = rgb[y0:y0 + side, x0:x0 + side]
        crop[: part.shape[0], : part.shape[1]] = part
        size = self.spec.input_size
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crop.fill(0)
        tensor = (small.astype(np.float32) / 127.5 - 1.0)[None]
        small.fill(0)
        try:
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._box_index)[0]
            raw_scores = self._interpreter.get_tensor(self._score_index)[0, :, 0]
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"face model failed on an image: {e}") from e
        finally:  # no copy of the image outlives the call: ours, and the model's input tensor
            tensor.fill(0)
            self._interpreter.set_tensor(self._input_index, tensor)
        boxes, scores = decode(raw_boxes, raw_scores, self._anchors, size, self.config.score_threshold)
        boxes = boxes * side + np.array([x0, y0, x0, y0], dtype=np.float64)
        return boxes, scores

    def close(self) -> None:
        self._interpreter = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScriptedFaces:
    """The fake beside FaceDetector: returns the faces it was given (normalized xyxy), for every image, or
    the ones `script(rgb)` computes. For loop and sample tests without the model."""

    backend = "scripted"

    def __init__(self, boxes: np.ndarray | None = None, script: Any = None) -> None:
        self._boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        self._script = script
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> Detections:
        self.calls += 1
        boxes = self._boxes if self._script is None else np.asarray(self._script(rgb), np.float32).reshape(-1, 4)
        return Detections(boxes, np.ones(len(boxes), np.float32), np.full(len(boxes), FACE, np.int32))

    def close(self) -> None:
        pass
