"""The hal exception family: every failure at the hardware boundary is a HalError."""

from __future__ import annotations


class HalError(Exception):
    """Root of every error raised by hal/."""


class CameraError(HalError):
    """The camera could not be opened, or stopped delivering frames."""


class CameraStalled(CameraError):
    """No frame arrived within the camera's timeout; the caller may reopen the camera."""


class CameraUnavailable(CameraError):
    """A permanent camera fault: the camera cannot work on this machine as configured (its driver module is not
    installed, there is no such camera, it refuses the configuration, the source file is missing or not a
    video). Reopening cannot help, so the caller stops and says so; every other CameraError is transient (a
    frame timeout, a camera busy or failing to start that may come back) and is retried with backoff."""


class DetectorError(HalError):
    """The detector could not load its model or failed on a frame."""


class DelegateError(DetectorError):
    """The Edge TPU delegate could not be loaded or vanished while running."""


class SerialError(HalError):
    """A serial port could not be opened, read or written."""


class BootControlError(HalError):
    """The boot-slot controller could not read or change which slot boots."""


class EndOfStream(CameraError):
    """A finite source (a video file, an image folder) has no more frames."""
