"""The privacy check of installer views: in each served JPEG, persons found by the shared person detector
(the project's default detector settings, score >= 0.3, as bench.deid checks sample images) and faces found
by two BlazeFace variants inside the regions the view blurred."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.lib.images import decode_rgb

PERSON_THRESHOLD = 0.3  # DetectorConfig.score_threshold's default, as bench.deid
VIEW = (640, 480)


@dataclass(frozen=True, slots=True)
class ViewCheck:
    views: int
    persons: int  # at >= PERSON_THRESHOLD, anywhere
    best_person: float  # the best person score anywhere, at any threshold
    faces_in_blur: int
    bad_seqs: tuple[int, ...]


def inside(boxes_px: np.ndarray, regions: Sequence[tuple[float, float, float, float]], frac: float = 0.5) -> np.ndarray:
    """Which boxes lie at least `frac` of their area inside one region."""
    out = np.zeros(len(boxes_px), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes_px):
        area = max((x1 - x0) * (y1 - y0), 1e-9)
        for rx0, ry0, rx1, ry1 in regions:
            iw, ih = max(0.0, min(x1, rx1) - max(x0, rx0)), max(0.0, min(y1, ry1) - max(y0, ry0))
            if iw * ih / area >= frac:
                out[i] = True
                break
    return out


class Checker:
    def __init__(self) -> None:
        from firmware.config.sensing import DetectorConfig
        from hal.faces import FaceConfig, FaceDetector
        from hal.tflite import TfliteDetector

        d = DetectorConfig()
        self.persons = TfliteDetector(d.model, tiles=d.tiles, overlap=d.overlap, score_threshold=0.05,
                                      num_threads=d.threads)
        self.faces = (FaceDetector(FaceConfig(variant="full_range", tiles=(1, 2, 3, 4))),
                      FaceDetector(FaceConfig(variant="short_range", tiles=(1, 2, 3))))

    def check(self, views: Sequence[Any]) -> ViewCheck:
        """`views`: firmware.installer.view.ViewFrame (jpeg bytes, normalized blurred regions)."""

        from hal.frame import Frame

        w, h = VIEW
        persons = faces = 0
        best = 0.0
        bad: list[int] = []
        for v in views:
            rgb = decode_rgb(v.jpeg, "view")
            found = self.persons.detect(Frame(rgb, None, 0, 0, (w, h))).persons(0.0)
            best = max(best, float(found.scores.max()) if len(found) else 0.0)
            n_p = int((found.scores >= PERSON_THRESHOLD).sum())
            regions = [(a * w, b * h, c * w, d * h) for a, b, c, d in v.regions]
            n_f = sum(int(inside(f.detect(rgb).to_pixels(w, h), regions).sum()) for f in self.faces)
            persons, faces = persons + n_p, faces + n_f
            if n_p or n_f:
                bad.append(int(v.seq))
        return ViewCheck(len(views), persons, best, faces, tuple(bad))
