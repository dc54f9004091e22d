"""Hardware-only tests: a real Pi camera, a real Edge TPU, a real board. Run with `pytest hw-tests` on the
device; each test skips, saying what is missing, where its hardware is absent."""

from __future__ import annotations

import ctypes.util
import glob
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def board_model() -> str | None:
    try:
        return Path("/proc/device-tree/model").read_text().rstrip("\x00").strip()
    except OSError:
        return None


def camera_reason() -> str | None:
    """None when a Pi camera is usable, else why not."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        return "picamera2 is not installed (Raspberry Pi OS: apt install python3-picamera2)"
    try:
        if not Picamera2.global_camera_info():
            return "libcamera finds no camera (check the ribbon cable and `rpicam-hello --list-cameras`)"
    except Exception as e:  # libcamera not running at all
        return f"libcamera unavailable: {e}"
    return None


def edgetpu_reason() -> str | None:
    """None when an Edge TPU and its runtime are present, else why not."""
    if not (ctypes.util.find_library("edgetpu") or glob.glob("/usr/lib/*/libedgetpu.so.1*")):
        return "libedgetpu.so.1 is not installed (Coral's apt repository: libedgetpu1-std)"
    usb = any(_usb_ids(p) in {("1a6e", "089a"), ("18d1", "9302")} for p in glob.glob("/sys/bus/usb/devices/*"))
    pcie = bool(glob.glob("/dev/apex_*"))
    if not (usb or pcie):
        return "no Coral Edge TPU on USB (1a6e:089a / 18d1:9302) or PCIe (/dev/apex_*)"
    return None


def _usb_ids(path: str) -> tuple[str, str]:
    try:
        vendor = Path(path, "idVendor").read_text().strip()
        product = Path(path, "idProduct").read_text().strip()
        return vendor, product
    except OSError:
        return "", ""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    env = os.environ.get("UMBRA_DATA_DIR")
    d = Path(env) if env else ROOT.parent / "shared" / "data"
    if not d.is_dir():
        pytest.skip(f"bench data not found at {d}: set UMBRA_DATA_DIR")
    return d


@pytest.fixture
def pi_camera_present() -> None:
    reason = camera_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def edgetpu_present() -> None:
    reason = edgetpu_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def board_baseline() -> dict:
    """This board's timing figures from hw-tests/baselines.json (skips on an unknown board)."""
    import json

    baselines = json.loads((Path(__file__).parent / "baselines.json").read_text())
    model = board_model()
    if model is None:
        pytest.skip("not a single-board computer (no /proc/device-tree/model)")
    for name, figures in baselines["boards"].items():
        if model.startswith(name):
            return {**figures, "tolerance": baselines["tolerance"]}
    pytest.skip(f"no timing baseline for board {model!r}: record one in hw-tests/baselines.json")
