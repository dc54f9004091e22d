"""The agent on a real device: its serial console in provisioning mode, its hardware id, its self-tests.

    umbra provision agent --port /dev/serial0 --state /var/lib/umbra/provisioning --ca /etc/umbra/mfg-ca.pem
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware import __version__
from firmware.config import UmbraConfig
from hal.clock import SystemClock
from hal.serial import open_serial
from provisioning.agent import DeviceAgent, SelfTest

log = logging.getLogger(__name__)


def hardware_id() -> str:
    """The board's serial number (Raspberry Pi: /proc/cpuinfo or the device tree), else the machine id."""
    for path, prefix in (("/sys/firmware/devicetree/base/serial-number", ""), ("/proc/cpuinfo", "Serial")):
        try:
            text = Path(path).read_text(errors="replace").rstrip("\x00")
        except OSError:
            continue
        if not prefix and text.strip():
            return text.strip().lstrip("0") or text.strip()
        for line in text.splitlines():
            if line.startswith(prefix) and ":" in line:
                return line.split(":", 1)[1].strip().lstrip("0")
    return Path("/etc/machine-id").read_text().strip()[:16]


def self_tests(state_dir: Path, sensor_config: Callable[[], UmbraConfig] | None = None) -> dict[str, SelfTest]:
    """The factory self-tests. With `sensor_config` (the sensor's config, as it will run: the maker's template
    with what the station set laid over it), the camera test opens that config's camera; without, the Pi camera."""

    def camera() -> dict[str, Any]:
        info: dict[str, Any] = {}
        if sensor_config is None:
            from hal.picam import PiCamera

            cam: Any = PiCamera(clock=SystemClock())
        else:
            from firmware.cli.assemble import build_camera

            cfg = sensor_config()
            info["kind"] = cfg.camera.kind
            cam = build_camera(cfg, Path("/"), SystemClock(), (320, 240))
        with cam, cam.capture() as f:
            return {**info, "lores": list(f.pixels.shape), "lit": bool(f.pixels.mean() > 2)}

    def detector() -> dict[str, Any]:
        from hal.tflite import TfliteDetector

        det = TfliteDetector()
        backend = det.backend
        det.close()
        return {"backend": backend}

    def clock() -> dict[str, Any]:
        m0, w0 = time.monotonic(), time.time()
        time.sleep(0.05)
        drift = abs((time.time() - w0) - (time.monotonic() - m0))
        if drift > 0.01 or w0 < 1.7e9:
            raise RuntimeError(f"wall clock unset or jumping (drift {drift:.3f} s, now {w0:.0f})")
        return {"wall": int(w0)}

    def storage() -> dict[str, Any]:
        probe = state_dir / ".probe"
        probe.write_bytes(os.urandom(4096))
        os.fsync(os.open(probe, os.O_RDONLY))
        probe.unlink()
        return {"free_mb": shutil.disk_usage(state_dir).free // 2**20}

    return {"camera": camera, "detector": detector, "clock": clock, "storage": storage}


def serve(port: str, state_dir: Path, ca_pem: Path, *, model: str = "umbra-pi", baudrate: int = 115_200) -> None:
    """Answer the station on `port` until the device is locked (then keep answering hello)."""

    agent = DeviceAgent(state_dir, hardware_id=hardware_id(), model=model, firmware=__version__,
                        trusted_ca_pem=ca_pem.read_bytes(), self_tests=self_tests(state_dir))
    line = open_serial(port, baudrate, timeout_s=0.2)
    log.info("provisioning agent on %s (hardware id %s, state %s)", port, agent.hardware_id, agent.state["state"])
    try:
        while True:
            data = line.read(4096)
            for frame in agent.feed(data) if data else ():
                line.write(frame)
    finally:
        line.close()
