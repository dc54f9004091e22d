"""The configs a new user copies load as they are, and the custom-camera example names the steps it needs."""

from __future__ import annotations

from pathlib import Path

from firmware import config as cfgmod

CONFIGS = Path(__file__).resolve().parents[2] / "bench" / "configs"


def test_the_custom_camera_example_loads_and_keeps_installer_mode_off() -> None:
    path = CONFIGS / "custom-camera.example.toml"
    cfg = cfgmod.load(path)
    assert cfg.installer.enabled is False and cfg.installer.bind == "127.0.0.1"
    assert [z.name for z in cfg.geometry.zones] == ["entrance"] and [ln.name for ln in cfg.geometry.lines] == ["door"]
    text = path.read_text()
    for step in ("umbra calibrate --points", "umbra draw", "umbra audit-counts", "umbra installer sign-token"):
        assert step in text
