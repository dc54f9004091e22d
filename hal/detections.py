"""Detections: a small immutable value type for what a detector found in one frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERSON = 0  # COCO class id (0-based) of a person


@dataclass(frozen=True, slots=True)
class Detections:
    """N detections. `boxes` is (N, 4) float32 [x0, y0, x1, y1] normalized to [0, 1] in the source image;
    `scores` (N,) float32; `classes` (N,) int32 (0-based COCO ids, person = 0)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.classes.shape != (n,):
            raise ValueError(
                f"detections disagree in length: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"classes {self.classes.shape}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask], self.classes[mask])

    def persons(self, min_score: float = 0.0) -> Detections:
        return self.select((self.classes == PERSON) & (self.scores >= min_score))

    def person_pixels(self, min_score: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """`persons(min_score)`'s boxes in pixels (`to_pixels`) and their scores, the same values, without the
        intermediate Detections (the loop's every frame)."""
        keep = (self.classes == PERSON) & (self.scores >= min_score)
        return self.boxes[keep] * np.array([width, height, width, height], dtype=np.float64), self.scores[keep]

    def to_pixels(self, width: int, height: int) -> np.ndarray:
        """Boxes in pixels of an image `width` x `height`, as float64 (N, 4) xyxy."""
        scale = np.array([width, height, width, height], dtype=np.float64)
        return self.boxes * scale  # (numpy casts the boxes to float64 for the product: no copy of its own)
