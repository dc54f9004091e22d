"""The firmware exception family."""

from __future__ import annotations


class FirmwareError(Exception):
    """Root of every error raised by firmware/."""


class ConfigError(FirmwareError):
    """The config file is malformed or holds a bad key or value; the message names it and the fix."""


class AuditError(FirmwareError):
    """The audit log cannot be opened or written (the device must stop releasing data when this happens)."""


class SampleError(FirmwareError):
    """A sample could not be made (encoding failed, bad image)."""


class SchemaError(FirmwareError):
    """A record does not match its schema (or names none we know); the message says where."""


class CalibrationError(FirmwareError):
    """The points given cannot determine a homography."""


class SamplesCommandError(FirmwareError):
    """A customer key or token file cannot be made or read."""


class ComplianceError(FirmwareError):
    """A data-subject request is malformed (bad range, unknown kind)."""


class UploadError(FirmwareError):
    """One upload step failed; `retry_after` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class AuthorizationRefused(FirmwareError):
    """A sampling authorization was refused; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"sampling authorization refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class TokenStoreError(FirmwareError):
    """The token file cannot be read or written, or is not a token file (it is then left untouched)."""


class OutboxError(FirmwareError):
    """The outbox database cannot be opened or written, or a record cannot be stored."""


class BudgetError(FirmwareError):
    """The budget store cannot be read or written."""


class InstallerError(FirmwareError):
    """The installer view, editor, calibration or count audit cannot do what was asked."""


class InstallerRefused(InstallerError):
    """An installer authorization (or a request without a live installer session) was refused; `reason` is a
    short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"installer authorization refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
