"""Provisioning fixtures: `factory`, a manufacturing CA, the fleet's settings and a station log in tmp_path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning.station import FileCA, FleetSettings, StationLog
from trust import pki
from trust.keys import BatchKey


@pytest.fixture
def factory(tmp_path: Path) -> tuple[FileCA, FleetSettings, StationLog]:
    ca = FileCA.create(tmp_path / "ca")
    root = Ed25519PrivateKey.generate()
    pins = pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, int(time.time()))
    fleet = FleetSettings("https://localhost:8443", pins, pki.root_public_b64(root), b'{"signed": {"_type": "root"}}',
                          lambda device_id: BatchKey.generate(time.time(), 86_400).to_json())
    return ca, fleet, StationLog(tmp_path / "station.sqlite")
