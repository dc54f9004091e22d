"""The provisioning package's one exception family: every failure of the station, the line or the device is
a ProvisioningError with a `code` saying how it failed."""

from __future__ import annotations


class ProvisioningError(Exception):
    """The provisioning conversation failed; `code` says how (a device's refusal, a timeout, a bad frame)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class FrameError(ProvisioningError, ValueError):
    """A frame that is damaged (bad COBS, length or CRC) or too large; the stream carries on after it."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_frame", message)


class Refusal(ProvisioningError):
    """The device refused a request (its answer's error code)."""


class IssuanceRefused(ProvisioningError):
    """The station will not issue: the hardware id or the device id already has a certificate."""
