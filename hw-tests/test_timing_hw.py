"""Timing against a per-board baseline (hw-tests/baselines.json): inference and the loop's own work on this
board must stay within 1.5x of what the same board measured when the baseline was recorded."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hal.frame import Frame
from hal.tflite import TfliteDetector


@pytest.mark.parametrize("backend", ["cpu", "edgetpu"])
def test_inference_time_within_the_boards_baseline(backend, board_baseline, request):
    figures = board_baseline
    if backend == "edgetpu":
        request.getfixturevalue("edgetpu_present")
    # the CPU runs the person SSD the bench uses; the TPU runs Coral's TPU-compiled SSD v2 of the same size class
    model = "ssd_mobilenet_v2_face_edgetpu" if backend == "edgetpu" else "ssd_mobilenet_v1_coco_quant"
    det = TfliteDetector(model, edgetpu=backend == "edgetpu", classes=(0,))
    h, w = det.manifest.input_shape[1:3]
    buf = np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)
    times = []
    for i in range(60):
        t0 = time.perf_counter()
        det.detect(Frame(buf, None, 0, i, (w, h)))
        times.append(time.perf_counter() - t0)
    det.close()
    median_ms = float(np.median(times[10:]) * 1e3)
    limit = figures[f"{backend}_inference_ms"] * figures["tolerance"]
    assert median_ms <= limit, f"{backend} inference {median_ms:.1f} ms > {limit:.1f} ms on this board"
