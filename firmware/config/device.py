"""The [device] and [output] sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str = "bench-0001"
    state_dir: str = "~/.local/state/umbra"  # every state file defaults under it ("{state_dir}/...")
    # "system": the machine's clock is trusted (a bench PC); "ntp": wall time is trusted only once NTP has
    # synchronised it or the cloud has stated it (a Raspberry Pi, which boots with a wrong clock): until then
    # windows are withheld and key validity held (hal.trustedtime)
    clock: Literal["system", "ntp"] = "system"

    def validate(self) -> None:
        if not self.id or len(self.id) > 64 or not all(c.isalnum() or c in "-_." for c in self.id):
            raise ValueError(f"id: {self.id!r} must be 1 to 64 letters, digits, '-', '_' or '.'")
        if not self.state_dir or "{state_dir}" in self.state_dir:
            raise ValueError(f"state_dir: {self.state_dir!r} must be a folder (it is what {{state_dir}} stands for)")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    tracks_file: str = ""  # JSON lines of released track records (bench); empty: none
    aggregates_file: str = ""  # JSON lines of released aggregates (bench); empty: none
    # JSON lines of the device's own line counts per time bucket, line and direction (the count audit's and the
    # bench's source: firmware.installer.countaudit); empty: none
    crossings_file: str = ""
