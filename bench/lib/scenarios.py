"""Bench scenarios shared by the benchmarks: inference where people are at the native rate (`gated`), and the
rate and invoke budget a Pi 4's CPU allows (`pi4`)."""

from __future__ import annotations

from dataclasses import replace

from firmware.config import UmbraConfig

PI4_HZ = 3.0  # a Pi 4's CPU: 40 to 80 ms an invoke of the shared SSD, so about 3 frames a second at 4 invokes
PI4_INVOKES = 4


def gated(cfg: UmbraConfig, invokes: int | None = None) -> UmbraConfig:
    """Regions around motion and tracked people (firmware.sensing.gating) instead of every tile every frame."""
    d = replace(cfg.detector, gating="motion", max_invokes=invokes or cfg.detector.max_invokes)
    return replace(cfg, detector=d)


def pi4(cfg: UmbraConfig, hz: float = PI4_HZ, invokes: int = PI4_INVOKES) -> UmbraConfig:
    """The Pi 4 scenario: the camera runs at its own rate and skips what came due while the loop was busy,
    the loop detects at `hz`, gated at `invokes` a frame."""
    cfg = gated(cfg, invokes)
    return replace(cfg, camera=replace(cfg.camera, realtime=True), loop=replace(cfg.loop, detect_hz=hz))
