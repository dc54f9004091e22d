"""Camera faults that last against faults that pass. A Pi camera named on a machine without picamera2, with no
such camera, or refusing its configuration cannot come back: `CameraUnavailable`, raised at the probe before the
loop starts and out of the loop if it shows there, so `umbra run` stops with one line and a non-zero exit
(systemd's Restart=on-failure then tries again, slowly). A frame timeout, a camera busy or failing to start, a
camera that comes back: retried with backoff as before. Before, every fault was a plain CameraError, the loop
retried for ever and the run ended with exit 0 (seen failing on the old code)."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest

from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.errors import CameraError, CameraUnavailable
from hal.fakepicam import FakePicamera2
from hal.picam import PiCamera
from hal.synthetic import SyntheticCamera, SyntheticCrowd


def _loop(clock: FakeClock, camera: Any) -> SensorLoop:
    quant = Quantizer(QuantizeConfig(), Geometry(GeometryConfig(homography=(
        (0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)))), Pseudonymizer(3600, lambda n: bytes(range(n))))
    return SensorLoop(LoopConfig(detect_hz=10.0, reopen_backoff_s=(0.5, 4.0)), camera, SyntheticCrowd(2),
                      Tracker(TrackerConfig()), quant, clock)


def _no_picamera2(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *a: Any, **kw: Any) -> Any:
        if name == "picamera2":
            raise ModuleNotFoundError("No module named 'picamera2'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)


class _NoSuchCamera:
    """picamera2 on a Pi whose ribbon cable is out: libcamera lists no camera 0."""

    def __call__(self, num: int) -> Any:
        return [][num]


def _refusing(num: int) -> FakePicamera2:
    return FakePicamera2(np.zeros((480, 640, 3), np.uint8), refuse_config=True)


PERMANENT = {"picamera2 missing": None, "no such camera": _NoSuchCamera(), "configuration refused": _refusing}


@pytest.mark.parametrize("name", PERMANENT)
def test_a_permanent_camera_fault_stops_at_the_probe(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    if name == "picamera2 missing":
        _no_picamera2(monkeypatch)
        cam = PiCamera(clock=FakeClock())
    else:
        cam = PiCamera(clock=FakeClock(), factory=PERMANENT[name])
    with pytest.raises(CameraUnavailable):
        cam.probe()


@pytest.mark.parametrize("name", PERMANENT)
def test_a_permanent_camera_fault_ends_the_loop_instead_of_retrying(monkeypatch: pytest.MonkeyPatch,
                                                                     name: str) -> None:
    if name == "picamera2 missing":
        _no_picamera2(monkeypatch)
        cam = PiCamera(clock=FakeClock())
    else:
        cam = PiCamera(clock=FakeClock(), factory=PERMANENT[name])
    clock = FakeClock()
    loop = _loop(clock, cam)
    with pytest.raises(CameraUnavailable):
        loop.run(max_ticks=200)
    assert loop.stats.ticks == 1  # stopped at the first open, not after 200 ticks of retries


def test_an_odd_lores_size_is_permanent() -> None:
    with pytest.raises(CameraUnavailable, match="even"):
        PiCamera(clock=FakeClock(), lores_size=(301, 300))


class _Flaky:
    """A Picamera2 factory that fails `fails` times (busy, then a frontend timeout at start), then works."""

    def __init__(self, fails: int) -> None:
        self.fails, self.calls = fails, 0

    def __call__(self, num: int) -> FakePicamera2:
        self.calls += 1
        img = np.full((480, 640, 3), 90, np.uint8)
        if self.calls <= self.fails // 2:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        return FakePicamera2(img, fail_start=self.calls <= self.fails)


def test_transient_faults_keep_the_retry_with_backoff_and_the_camera_comes_back() -> None:
    flaky = _Flaky(fails=4)
    probe = PiCamera(clock=FakeClock(), factory=flaky)
    probe.probe()  # transient at start: only logged, the loop takes it from there
    clock = FakeClock()
    cam = PiCamera(clock=clock, factory=flaky, lores_size=(320, 240), main_size=None)
    loop = _loop(clock, cam)
    stats = loop.run(max_ticks=120)
    assert flaky.calls >= 5 and stats.frames > 0  # it came back
    assert stats.ticks == 120


def test_a_stall_is_transient() -> None:
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=30, stall_frames=frozenset({3}), stall_timeout_s=0.2)
    stats = _loop(clock, cam).run(max_ticks=300)
    assert stats.camera_stalls == 1 and stats.frames == 30


def test_transient_and_permanent_are_told_apart_by_type() -> None:
    assert issubclass(CameraUnavailable, CameraError)  # callers that catch CameraError still see it
    with pytest.raises(CameraError) as e:
        PiCamera(clock=FakeClock(), factory=lambda n: FakePicamera2(np.zeros((8, 8, 3), np.uint8),
                                                                    fail_start=True)).open()
    assert not isinstance(e.value, CameraUnavailable)
