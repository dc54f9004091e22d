"""PiCamera on a picamera2 stand-in that pads YUV rows to a stride, holds requests and stalls like the real one."""

from __future__ import annotations

import numpy as np
import pytest

from hal.clock import FakeClock
from hal.errors import CameraError, CameraStalled
from hal.fakepicam import FakePicamera2
from hal.picam import PiCamera


def scene() -> np.ndarray:
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, :320] = (200, 40, 40)  # red left half
    img[:, 320:] = (40, 40, 200)  # blue right half
    img[200:280, 280:360] = (40, 200, 40)  # a green block in the middle
    return img


def make(fake: FakePicamera2, **kw) -> PiCamera:
    return PiCamera(clock=FakeClock(), lores_size=(300, 300), factory=lambda n: fake, **kw)


def test_lores_is_model_sized_rgb_from_padded_yuv_and_main_is_640x480():
    fake = FakePicamera2(scene())
    with make(fake) as cam:
        assert fake.config["lores"] == {"size": (300, 300), "format": "YUV420"}
        with cam.capture() as f:
            assert f.pixels.shape == (300, 300, 3) and f.main.shape == (480, 640, 3)
            left, right, mid = f.pixels[150, 20], f.pixels[150, 280], f.pixels[150, 150]
            assert left[0] > 150 and left[2] < 90  # red survives YUV420 and the stride
            assert right[2] > 150 and right[0] < 90
            assert mid[1] > 150
            np.testing.assert_array_equal(f.main[10, 10], (200, 40, 40))
            bufs = f.buffers()
        assert all(not b.any() for b in bufs)  # released: zeroed
        assert not cam._i420.any()  # the YUV scratch buffer too
        assert fake.released == fake.requests == 1  # libcamera's request went back at once


def test_a_stall_raises_camerastalled_and_the_camera_recovers_after_reopen():
    fake = FakePicamera2(scene(), stall_on=frozenset({2}))
    cam = make(fake, stall_timeout_s=0.5)
    cam.open()
    cam.capture().release()
    with pytest.raises(CameraStalled, match="0.5 s"):
        cam.capture()
    cam.close()
    assert fake.closed
    fake.closed = False
    cam.open()
    cam.capture().release()


def test_start_failure_and_missing_library_are_clear():
    with pytest.raises(CameraError, match="would not start"):
        make(FakePicamera2(scene(), fail_start=True)).open()
    with pytest.raises(CameraError, match="not open"):
        make(FakePicamera2(scene())).capture()
    with pytest.raises(CameraError, match="even"):
        PiCamera(clock=FakeClock(), lores_size=(301, 300))


def test_without_picamera2_the_error_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_picamera2(name, *a, **kw):
        if name == "picamera2":
            raise ImportError("No module named 'picamera2'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_picamera2)
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        PiCamera(clock=FakeClock()).open()
