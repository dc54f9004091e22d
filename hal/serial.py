"""The serial line: a Protocol for what provisioning needs, and pyserial behind it (USB serial adapters,
the Pi's UART, and pseudo-terminals in tests)."""

from __future__ import annotations

from typing import Protocol

from hal.errors import SerialError


class SerialPort(Protocol):
    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


def open_serial(port: str, baudrate: int = 115_200, timeout_s: float = 0.05) -> SerialPort:
    """Open `port` raw, 8N1, no flow control; reads return what arrived within `timeout_s`."""
    import serial

    try:
        return serial.Serial(port, baudrate=baudrate, timeout=timeout_s, write_timeout=2.0)
    except (serial.SerialException, ValueError) as e:
        raise SerialError(f"cannot open serial port {port}: {e}") from e
