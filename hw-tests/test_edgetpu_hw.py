"""A real Edge TPU: a golden image through a model that runs only on the TPU (Coral's face detector, compiled
for the Edge TPU), and the CPU fallback when the TPU is asked for but the delegate is unusable."""

from __future__ import annotations

import numpy as np

from hal.clock import SystemClock
from hal.tflite import TfliteDetector
from hal.video import VideoCamera


def test_golden_image_through_the_edge_tpu(edgetpu_present, shared_data, tmp_path):
    (tmp_path / "grace_hopper.bmp").symlink_to(shared_data / "images" / "grace_hopper.bmp")
    det = TfliteDetector("ssd_mobilenet_v2_face_edgetpu", edgetpu=True, classes=(0,), score_threshold=0.5)
    assert det.backend == "edgetpu"
    h, w = det.manifest.input_shape[1:3]
    with VideoCamera(tmp_path, clock=SystemClock(), lores_size=(w, h), main_size=None) as cam:
        with cam.capture() as f:
            faces = det.detect(f)
    det.close()
    assert len(faces) == 1, f"one face in grace_hopper.bmp, found {len(faces)}"
    cx, cy = (faces.boxes[0, :2] + faces.boxes[0, 2:]) / 2
    assert 0.3 <= cx <= 0.7 and 0.1 <= cy <= 0.5  # her face: upper middle of the portrait
    assert float(faces.scores[0]) >= 0.8
    assert np.all(faces.boxes[0, 2:] > faces.boxes[0, :2])
