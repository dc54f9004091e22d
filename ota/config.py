"""The device's [ota] config section."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OtaConfig:
    enabled: bool = False
    base_url: str = ""  # the OTA repository, e.g. https://cloud.example:8443/ota
    hardware: str = "umbra-pi4"
    version_floor: str = "0"  # never install below this version, whatever is signed
    state_dir: str = "{state_dir}/ota"  # {state_dir}: [device] state_dir, expanded by firmware.config
    trusted_root: str = "{state_dir}/provisioning/ota_root.json"  # embedded at provisioning
    # the one lock over the slots, shared with the Debian package's scripts (ota.lock; they find it the same way:
    # this key, else [device] state_dir/slots.lock)
    lock_file: str = "{state_dir}/slots.lock"
    lock_wait_s: float = 300.0  # how long an OTA step waits for a package install holding it
    # "tryboot" (Raspberry Pi firmware A/B), "slots:<root>" (the package's venv slots, e.g. slots:/opt/umbra)
    # or "directory:<path>" (bench)
    boot: str = "tryboot"
    check_every_s: float = 6 * 3600.0
    health_deadline_s: float = 300.0
    max_restarts: int = 3  # more systemd restarts than this during the trial fails it

    def validate(self) -> None:
        if self.enabled and not self.base_url.startswith("https://"):
            raise ValueError("base_url: the https:// address of the OTA repository")
        if not (self.boot == "tryboot" or self.boot.startswith(("directory:", "slots:"))):
            raise ValueError("boot: 'tryboot', 'slots:<root>' or 'directory:<path>'")
        _seconds("check_every_s", self.check_every_s, 60, 30 * 86400)
        if not self.lock_file:
            raise ValueError("lock_file: the slots lock file (shared with the package's scripts) must be set")
        _seconds("lock_wait_s", self.lock_wait_s, 1, 3600)
        _seconds("health_deadline_s", self.health_deadline_s, 10, 86400)
        if not 0 <= self.max_restarts <= 100:
            raise ValueError(f"max_restarts: {self.max_restarts!r} is not allowed; use a whole number from 0 to 100")


def _seconds(key: str, value: float, lo: float, hi: float) -> None:
    # ota/ imports nothing from firmware/, so the range check is written out here
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{key}: {value!r} is not allowed; use a finite number from {lo:g} to {hi:g} s")
