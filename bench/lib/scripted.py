"""Detections from the scripted detector (ground truth replayed with the real detector's measured errors)."""

from __future__ import annotations

import numpy as np


def scripted_detections(gt_path, frames: int, **kw) -> list[np.ndarray]:
    from hal.frame import Frame
    from hal.scripted import ScriptedDetector

    det = ScriptedDetector.from_mot(gt_path, **kw)
    buf = np.zeros((1, 1, 3), np.uint8)
    w, h = det.source_size
    out = []
    for seq in range(1, frames + 1):
        d = det.detect(Frame(buf, None, 0, seq, (w, h)))
        out.append(np.hstack((d.to_pixels(w, h), d.scores[:, None])))
    return out
