"""The OTA exception family: every refusal names what was wrong, so a device can report it."""

from __future__ import annotations


class OtaError(Exception):
    """An update cannot be built, published, fetched, verified, installed or committed."""


class Refused(OtaError):
    """The device refused an update (bad signature, rollback, wrong hardware, too large...): `reason` is short."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
