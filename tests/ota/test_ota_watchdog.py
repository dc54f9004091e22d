"""sd_notify reaches a real datagram socket as systemd's would; the watchdog sink paces its keep-alives."""

from __future__ import annotations

import socket

from firmware.sensing.loop import TickResult
from ota.watchdog import Watchdog, notify


def test_keepalives_reach_the_notify_socket_once_a_second(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(1)
    try:
        wd = Watchdog(path)
        wd.ready()
        assert srv.recv(64) == b"READY=1"
        for i in range(50):  # 5 s of ticks at 10 Hz
            wd(TickResult(1000.0 + i / 10, [], [], None))
        got = [srv.recv(64) for _ in range(wd.sent)]
    finally:
        srv.close()
    assert got == [b"WATCHDOG=1"] * 5 and wd.sent == 5
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("WATCHDOG=1") is False  # not under systemd: a no-op, not an error
