"""The OTA exception family: every refusal names what was wrong, so a device can report it."""

from __future__ import annotations


class OtaError(Exception):
    """An update cannot be built, published, fetched, verified, installed or committed."""


class Refused(OtaError):
    """The device refused an update (bad signature, rollback, wrong hardware, too large...): `reason` is short."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Held(OtaError):
    """A check not made now (not an attack): the device's wall time is not trusted yet, so metadata expiry and
    rollout stages cannot be judged. The next check after the time is trusted goes ahead by itself."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"held: {detail}")
        self.reason = "held"
