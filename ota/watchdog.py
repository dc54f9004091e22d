"""systemd integration without a dependency: sd_notify over the $NOTIFY_SOCKET datagram socket (READY=1 at
start, WATCHDOG=1 from the loop while it keeps its rate, STATUS= lines), and the restart count that the OTA
health check reads (a slot that keeps restarting is not healthy)."""

from __future__ import annotations

import os
import socket
import subprocess


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one sd_notify message; False when not running under systemd (no socket)."""
    path = socket_path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(path)
        s.sendall(message.encode())
    return True


class Watchdog:
    """A loop sink: WATCHDOG=1 at most once a second of wall time while ticks keep coming."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path
        self._last = 0.0
        self.sent = 0

    def ready(self) -> None:
        notify("READY=1", self.socket_path)

    def __call__(self, tick) -> None:
        if tick.wall - self._last >= 1.0:
            self._last = tick.wall
            if notify("WATCHDOG=1", self.socket_path):
                self.sent += 1


def restart_count(unit: str = "umbra.service") -> int:
    """How many times systemd restarted `unit` since boot (0 where systemd is absent)."""
    try:
        out = subprocess.run(["systemctl", "show", "-p", "NRestarts", "--value", unit], capture_output=True,
                             text=True, timeout=5)
        return int(out.stdout.strip() or 0)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0
