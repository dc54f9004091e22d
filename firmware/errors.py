"""The firmware exception family."""

from __future__ import annotations


class FirmwareError(Exception):
    """Root of every error raised by firmware/."""


class ConfigError(FirmwareError):
    """The config file is malformed or holds a bad key or value; the message names it and the fix."""
