"""Wiring: build the devices and the loop from a config. Hardware implementations are imported here, on
demand, so the rest of firmware/ imports on any laptop."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from firmware.config import UmbraConfig, resolve_path
from firmware.errors import ConfigError
from firmware.sensing.gating import Gate
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import FrameHook, RecordSink, SensorLoop, TickSink
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.records import QuantizedTrack
from firmware.sensing.tracker import Tracker
from hal.camera import Camera
from hal.clock import Clock, SystemClock
from hal.detector import Detector
from hal.trustedtime import TimedatectlNtp, TrustedClock

log = logging.getLogger(__name__)


def build_clock(cfg: UmbraConfig, base: Path) -> TrustedClock:
    """[device] clock: "system" trusts the machine's clock; "ntp" only NTP's sync or the cloud's Date, with the
    last trusted time kept in the state folder."""
    system = SystemClock()
    if cfg.device.clock == "system":
        return TrustedClock.always_trusted(system)
    state = resolve_path(cfg.device.state_dir, base) / "trusted_time.json"
    return TrustedClock(system, TimedatectlNtp(system), state)


def build_camera(cfg: UmbraConfig, base: Path, clock: Clock, lores_size: tuple[int, int]) -> Camera:
    c = cfg.camera
    if c.kind == "pi":
        from hal.picam import PiCamera

        check_image_size(cfg, c.main_size, "camera.main_size")
        pi = PiCamera(lores_size=lores_size, main_size=c.main_size, clock=clock)
        pi.probe()  # a permanent fault (picamera2 missing, no camera) stops the run here, with one line
        return pi
    from hal.video import VideoCamera

    cam = VideoCamera(
        resolve_path(c.source, base),
        lores_size=lores_size,
        main_size=c.main_size,
        fps=c.fps or None,
        realtime=c.realtime,
        clock=clock,
        stall_timeout_s=c.stall_timeout_s,
    )
    check_image_size(cfg, cam.probe(), f"camera.source {cam.source}")
    return cam


def check_image_size(cfg: UmbraConfig, size: tuple[int, int], what: str) -> None:
    """The camera's picture must be the size the homography was calibrated on ([geometry] image_size), or
    every zone and line would silently move."""
    want = tuple(cfg.geometry.image_size)
    if want != (0, 0) and tuple(size) != want:
        raise ConfigError(f"{what} is {size[0]}x{size[1]} pixels but [geometry] image_size (the calibration's) is "
                          f"{want[0]}x{want[1]}; recalibrate, or use a source of that size")


def build_detector(cfg: UmbraConfig, base: Path) -> Detector:
    d = cfg.detector
    if d.kind == "scripted":
        from hal.scripted import ScriptedDetector

        return ScriptedDetector.from_mot(resolve_path(d.ground_truth, base))
    from hal.tflite import TfliteDetector

    return TfliteDetector(
        d.model,
        edgetpu={"auto": None, "on": True, "off": False}[d.edgetpu],
        tiles=d.tiles,
        overlap=d.overlap,
        score_threshold=d.score_threshold,
        num_threads=d.threads,
    )


def model_input_size(cfg: UmbraConfig) -> tuple[int, int]:
    """The low-res stream's size: the model's input, times the tiling, so each tile needs no resize."""
    from models import manifest

    m = manifest(cfg.detector.model)
    h, w = m.input_shape[1], m.input_shape[2]
    nx, ny = cfg.detector.tiles if cfg.detector.kind == "tflite" else (1, 1)
    return (int(w * nx), int(h * ny)) if nx * ny > 1 else (int(w), int(h))


def build_loop(
    cfg: UmbraConfig,
    base: Path,
    clock: Clock,
    *,
    camera: Camera | None = None,
    detector: Detector | None = None,
    sinks: Sequence[TickSink] = (),
    frame_hooks: Sequence[FrameHook] = (),
    profile: bool = False,
) -> SensorLoop:
    geometry = Geometry(cfg.geometry)
    quantizer = Quantizer(cfg.quantize, geometry, Pseudonymizer(cfg.pseudonym.rotate_s))
    if camera is None:
        camera = build_camera(cfg, base, clock, model_input_size(cfg))
    if detector is None:
        detector = build_detector(cfg, base)
    return SensorLoop(
        cfg.loop, camera, detector, Tracker(cfg.tracker), quantizer, clock,
        sinks=sinks, frame_hooks=frame_hooks, profile=profile, gate=build_gate(cfg, detector),
    )


def build_gate(cfg: UmbraConfig, detector: Detector) -> Gate | None:
    """The region gate when `[detector] gating = "motion"`, over the detector's own tile grid (for its sweep)."""
    d = cfg.detector
    if d.gating != "motion":
        return None
    grid = getattr(detector, "grid", None)
    if grid is None:
        from hal.tflite import tile_grid

        grid = tile_grid(int(d.tiles[0]), int(d.tiles[1]), d.overlap)
    return Gate(d, grid)


class JsonlSink(RecordSink):
    """Writes released track records as JSON lines (the bench's view of what leaves the device), the last
    bucket's too when the loop stops."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(self._write)
        self.stream = stream
        self.count = 0

    def _write(self, records: Sequence[QuantizedTrack]) -> None:
        for rec in records:
            self.stream.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
        self.count += len(records)
