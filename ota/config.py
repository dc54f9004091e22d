"""The device's [ota] config section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OtaConfig:
    enabled: bool = False
    base_url: str = ""  # the OTA repository, e.g. https://cloud.example:8443/ota
    hardware: str = "umbra-pi4"
    version_floor: str = "0"  # never install below this version, whatever is signed
    state_dir: str = "/var/lib/umbra/ota"
    trusted_root: str = "/var/lib/umbra/provisioning/ota_root.json"  # embedded at provisioning
    boot: str = "tryboot"  # "tryboot" (Raspberry Pi firmware A/B) or "directory:<path>" (bench)
    check_every_s: float = 6 * 3600.0
    health_deadline_s: float = 300.0
    max_restarts: int = 3  # more systemd restarts than this during the trial fails it

    def validate(self) -> None:
        if self.enabled and not self.base_url.startswith("https://"):
            raise ValueError("base_url: the https:// address of the OTA repository")
        if not (self.boot == "tryboot" or self.boot.startswith("directory:")):
            raise ValueError("boot: 'tryboot' or 'directory:<path>'")
        if self.check_every_s < 60 or self.health_deadline_s < 10:
            raise ValueError("check_every_s >= 60 and health_deadline_s >= 10")
