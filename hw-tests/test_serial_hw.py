"""Real serial hardware: a UART loopback (TX wired to RX) and a real sensor in provisioning mode. Point
UMBRA_SERIAL_LOOPBACK at the looped port and UMBRA_SERIAL_DEVICE at the sensor's port; without them the
tests look for /dev/ttyUSB* and /dev/serial0 and skip, saying what is missing."""

from __future__ import annotations

import glob
import os

import pytest

from provisioning.framing import Deframer, encode
from provisioning.protocol import Client


def _port(env: str, patterns: tuple[str, ...]) -> str:
    if os.environ.get(env):
        return os.environ[env]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    pytest.skip(f"no serial port: set {env} or attach one ({', '.join(patterns)})")


def test_uart_loopback_carries_frames_intact():
    import serial

    port = _port("UMBRA_SERIAL_LOOPBACK", ("/dev/serial0",))
    with serial.Serial(port, 115_200, timeout=0.5) as line:
        frames = [encode(bytes(range(256)) * k) for k in (1, 4, 15)]
        for f in frames:
            line.write(f)
        got = b""
        while len(got) < sum(map(len, frames)):
            chunk = line.read(4096)
            if not chunk:
                break
            got += chunk
    bodies = [b for b in Deframer().feed(got) if isinstance(b, bytes)]
    assert bodies == [bytes(range(256)) * k for k in (1, 4, 15)]


def test_a_real_sensor_answers_hello():
    import serial

    port = _port("UMBRA_SERIAL_DEVICE", ("/dev/ttyUSB*", "/dev/ttyACM*"))
    with serial.Serial(port, 115_200, timeout=0.1) as line:
        hello = Client(line, timeout_s=2.0).call("hello")
    assert hello["protocol"] == 1 and hello["hardware_id"] and hello["state"] in (
        "blank", "keyed", "certified", "configured", "locked")
