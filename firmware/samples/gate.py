"""The check a de-identified sample must pass before it may leave: it is sent only if neither the person
detector nor the face detectors find anything on it as it would be sent, searched more widely than the loop
searches a frame.

- Persons: the configured person model (the shared COCO SSD) on every square grid of `[samples] check_grids`
  (1x1 to 6x6 by default, tiles overlapping by `check_overlap`: every scale at which the model can find a
  person in a 640x480 image, down to ~25 px tall), each tile upscaled to the model's input, so a
  person small in the frame is large in one tile; a person counts from `check_score` (0.2 by default, below
  the loop's 0.3: the gate is stricter than the threshold it is judged by, fixed before any footage was
  measured).
- Faces: both BlazeFace variants on 1..6 tile grids, from `check_face_score` (0.4, below BlazeFace's 0.5).

What either finds is blurred again (`firmware.samples.taking.clean_sample`), harder, and if anything is still
found the sample is dropped and audited: a sample that cannot be shown free of people is never sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from firmware.config.samples import SamplesConfig
from firmware.samples.taking import FaceFinder, PersonFinder
from hal.detections import Detections
from hal.faces import FACE
from hal.frame import Frame
from hal.tflite import TfliteDetector, tile_grid


def grid_person_finder(detector: TfliteDetector, grids: Sequence[int], overlap: float, score: float) -> PersonFinder:
    """Persons (normalized boxes) the detector finds at `score` or above on any of the square `grids`.
    The detector's own `score_threshold` must not be above `score` (it filters before this does)."""
    if detector.score_threshold > score:
        raise ValueError(f"the detector drops scores below {detector.score_threshold}, above the gate's {score}")
    tilings = [tile_grid(n, n, overlap) for n in grids]

    def finder(rgb: np.ndarray) -> np.ndarray:
        frame = Frame(rgb, None, 0, 0, (rgb.shape[1], rgb.shape[0]))
        found = [detector.detect(frame, t).persons(score).boxes for t in tilings]
        return np.concatenate(found).reshape(-1, 4) if found else np.zeros((0, 4), np.float32)

    return finder


class AllFaces:
    """Several face detectors as one FaceFinder: the union of their faces."""

    def __init__(self, finders: Sequence[FaceFinder]) -> None:
        self.finders = list(finders)

    def detect(self, rgb: np.ndarray) -> Detections:
        boxes = [np.asarray(f.detect(rgb).boxes, np.float32).reshape(-1, 4) for f in self.finders]
        b = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
        return Detections(b, np.ones(len(b), np.float32), np.full(len(b), FACE, np.int32))


def sample_faces(config: SamplesConfig) -> AllFaces:
    """The gate's face finder: full-range and short-range BlazeFace, each on 1..6 tile grids."""
    from hal.faces import FaceConfig, FaceDetector  # the models are loaded only where samples are taken

    s = config.check_face_score
    return AllFaces([FaceDetector(FaceConfig(variant="full_range", tiles=(1, 2, 3, 4, 5, 6), score_threshold=s)),
                     FaceDetector(FaceConfig(variant="short_range", tiles=(1, 2, 3, 4, 5, 6), score_threshold=s))])


def sample_persons(config: SamplesConfig, model: str, threads: int = 2, edgetpu: bool | None = None) -> PersonFinder:
    """The gate's person finder: its own instance of `model` (thresholded at the gate's score)."""
    detector = TfliteDetector(model, tiles=(1, 1), score_threshold=config.check_score, num_threads=threads,
                              edgetpu=edgetpu)
    return grid_person_finder(detector, config.check_grids, config.check_overlap, config.check_score)
