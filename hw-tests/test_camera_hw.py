"""A real Pi camera: both streams at their sizes, the configured rate, buffers zeroed on release."""

from __future__ import annotations

import numpy as np

from hal.clock import SystemClock
from hal.picam import PiCamera


def test_capture_on_a_real_pi_camera(pi_camera_present):
    clock = SystemClock()
    with PiCamera(clock=clock, lores_size=(300, 300), main_size=(640, 480), fps=10.0) as cam:
        stamps, lit = [], 0
        for _ in range(30):
            with cam.capture() as f:
                assert f.pixels.shape == (300, 300, 3) and f.main.shape == (480, 640, 3)
                lit += int(f.pixels.mean() > 2)  # a real scene, not a black frame
                stamps.append(f.t_mono_ns)
                bufs = f.buffers()
            assert all(not b.any() for b in bufs)
    period = np.median(np.diff(stamps)) / 1e9
    assert 0.08 <= period <= 0.12, f"median frame period {period:.3f} s at 10 fps"
    assert lit >= 25
