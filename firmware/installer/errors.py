"""The installer package's one exception family."""

from __future__ import annotations

from firmware.errors import FirmwareError


class InstallerError(FirmwareError):
    """The installer view, editor, calibration or count audit cannot do what was asked."""


class InstallerRefused(InstallerError):
    """An installer authorization was refused; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"installer authorization refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
