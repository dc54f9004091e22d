"""Secrets on disk are 0600 from their first byte: the dev PKI's keys, a bench device's key and signing keys,
the cloud's key ring, and the OTA repository's signing keys."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from cloud.app import Cloud, CloudConfig
from cloud.harness import device_setup
from hal.clock import FakeClock
from ota.repo import Repository

SECRET = (".key", "keys.json", "root_key.pem")


def _secrets(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and
            (p.name.endswith(SECRET) or p.parent.name == "keys" or "key" in p.name and p.suffix == ".pem")]


def test_every_secret_the_bench_writes_is_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: 0644 for whatever is not made private on purpose
    try:
        cloud = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud")), FakeClock(start_wall=time.time()))
        device_setup(cloud, tmp_path / "device", 8443)
        cloud.store.close()
        Repository(tmp_path / "ota").init()
    finally:
        os.umask(old)
    found = _secrets(tmp_path)
    assert any(p.parent.name == "device" for p in found) and any("ota" in p.parts for p in found)
    loose = [f"{p}: {oct(stat.S_IMODE(p.stat().st_mode))}" for p in found if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert not loose, loose
