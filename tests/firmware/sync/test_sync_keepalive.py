"""One mutual-TLS handshake for many uploads: the uploader keeps its connection to the reference cloud open across
upload periods (UploaderConfig.keepalive_s, 1.5 periods; aiohttp's default 15 s is shorter than the 30 s period),
counted on the cloud's own TLS context over real TLS on 127.0.0.1. When the cloud closes an idle connection
itself, the next cycle simply shakes hands again and nothing is lost or stored twice.

Time is injected: one FakeClock drives the uploader, the event loop's time (the cloud's keep-alive timers, the
connection pool's clean-up timer) and the clock aiohttp's connection pool judges idle connections by, so 30 s
periods pass at once and no test sleeps."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp.connector
import pytest
from aiohttp import web

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig, UploaderConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import Clock, FakeClock
from hal.trustedtime import FakeNtp, TrustedClock
from trust import pki

CYCLES = 5
T0 = 1_700_006_400


class ClockedLoop(asyncio.SelectorEventLoop):
    """An event loop whose time moves with a FakeClock as well as with real time (I/O still takes real time)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self._mono0 = clock, clock.monotonic_ns()

    def skew(self) -> float:
        return (self.clock.monotonic_ns() - self._mono0) / 1e9

    def time(self) -> float:
        return super().time() + self.skew()


def _records(i: int) -> list[dict]:
    return [{"schema": "umbra.aggregate/1", "window_start": T0 + 900 * i, "window_s": 900, "metric": "line_flow",
             "zone": "door", "values": [i + 3, 2], "k": 5, "epsilon": 0.5, "sensitivity": 1,
             "mechanism": "discrete_laplace"}]


async def _until(ok: Callable[[], bool], what: str) -> None:
    """Let the loop run (timers due, loopback I/O) until `ok()`; real time bounds it, nothing waits on it."""
    deadline = time.monotonic() + 20
    while not ok():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0)


def _pool_open(up: Uploader) -> bool:
    """Whether the uploader's connection pool holds a connection still open (aiohttp keeps the pool private)."""
    conn = up._session.connector if up._session is not None else None
    return any(p.is_connected() for q in getattr(conn, "_conns", {}).values() for p, _ in q)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         body: Callable[[Cloud, web.AppRunner, Uploader, FakeClock], Awaitable[None]], *,
         pool_on_real_time: bool = False, device_clock: Callable[[FakeClock], Clock] = lambda c: c,
         start_wall: float = T0 + 86_400, **cloud: object) -> None:
    """`pool_on_real_time`: the event loop and the connection pool keep real time, so a connection stays open
    however far the FakeClock moves (the device's own time passing while a connection is in steady use)."""
    clock = FakeClock(start_wall=start_wall)
    loop = asyncio.SelectorEventLoop() if pool_on_real_time else ClockedLoop(clock)
    if not pool_on_real_time:  # the pool stamps idle connections with time.monotonic, imported into
        skewed = loop.skew if isinstance(loop, ClockedLoop) else (lambda: 0.0)  # aiohttp.connector: the same skew
        monkeypatch.setattr(aiohttp.connector, "monotonic", lambda: time.monotonic() + skewed())

    async def main() -> None:
        c = Cloud(CloudConfig(data_dir=str(tmp_path / "cloud"), **cloud), clock)  # type: ignore[arg-type]
        runner, port = await c.start(port=0)
        dev = device_setup(c, tmp_path / "device", port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path))
        up = Uploader(dev.uploader, dev.tls, ob, device_clock(clock), random.Random(1))
        try:
            await body(c, runner, up, clock)
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()
            c.store.close()

    with asyncio.Runner(loop_factory=lambda: loop) as r:
        r.run(main())


async def _cycle(up: Uploader, i: int) -> float:
    """One upload of one batch; returns the uploader's own wait before the next (its period)."""
    up.outbox.enqueue(_records(i))
    res = await up.cycle()
    assert res.error is None and res.batches == 1 and len(up.outbox) == 0, res
    return up.next_delay(res)


def _stored(c: Cloud) -> list[int]:
    return [json.loads(b)["window_start"] for b in c.store.bodies(DEV_DEVICE)]


def test_one_handshake_for_many_upload_periods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(c: Cloud, runner: web.AppRunner, up: Uploader, clock: FakeClock) -> None:
        assert up.config.period_s == 30.0
        for i in range(CYCLES):
            clock.advance(await _cycle(up, i))
            for _ in range(50):  # the timers now due (pool clean-up, the cloud's keep-alive) run
                await asyncio.sleep(0)
        assert c.ssl.session_stats()["accept"] == 1  # with aiohttp's 15 s default: one per upload, 5
        assert len(runner.server.connections) == 1 and _pool_open(up)
        assert _stored(c) == [T0 + 900 * i for i in range(CYCLES)]

    _run(tmp_path, monkeypatch, body)


def test_a_cloud_that_closes_idle_connections_costs_a_handshake_and_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(c: Cloud, runner: web.AppRunner, up: Uploader, clock: FakeClock) -> None:
        for i in range(CYCLES):
            delay = await _cycle(up, i)
            assert c.ssl.session_stats()["accept"] == i + 1
            clock.advance(delay)  # past the cloud's 10 s: it closes the idle connection
            await _until(lambda: not runner.server.connections, "the cloud closes the idle connection")
            await _until(lambda: not _pool_open(up), "the device sees it closed")
        assert up.stats.failures == 0 and c.duplicate_batches == 0
        assert _stored(c) == [T0 + 900 * i for i in range(CYCLES)]  # each once, in order

    _run(tmp_path, monkeypatch, body, keepalive_s=10.0)


def test_a_kept_connection_goes_when_its_server_key_leaves_the_pin_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pins are checked at the handshake; a connection kept across a pin-set update that drops the
    server's key must not carry the next upload (on the old uploader it did, over the kept connection)."""
    async def body(c: Cloud, runner: web.AppRunner, up: Uploader, clock: FakeClock) -> None:
        clock.advance(await _cycle(up, 0))
        assert _pool_open(up)
        root = pki.load_root_key(c.pki.root_key)
        others = [base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
        up.pins.update(pki.sign_pin_update(root, others, up.pins.current.version + 1, int(clock.wall())))
        up.outbox.enqueue(_records(1))
        res = await up.cycle()
        assert res.error is not None and up.stats.pin_failures == 1, res
        assert len(up.outbox) == 1 and _stored(c) == [T0]  # refused before sending: kept, not stored
        assert c.ssl.session_stats()["accept"] == 2  # a new handshake was made, and refused by the pins

    _run(tmp_path, monkeypatch, body)


def test_a_kept_connection_goes_when_the_servers_certificate_expires_on_the_devices_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificate times are judged at the handshake; a connection in steady use across the server
    certificate's expiry (on the device's trusted time) must not carry the next upload."""
    async def body(c: Cloud, runner: web.AppRunner, up: Uploader, clock: FakeClock) -> None:
        key = pki.load_key(c.pki.server_key)  # a server certificate that ends long before the device's own
        leaf = pki.issue_cert(c._ca_key, c._ca, key.public_key(), "umbra-cloud", pki.utcnow(), 1,
                              server_names=c.config.hostnames)
        pki.write_atomic(c.pki.server_cert, pki.cert_pem(leaf))
        c.ssl.load_cert_chain(c.pki.server_cert, c.pki.server_key)
        clock.advance(await _cycle(up, 0))
        assert _pool_open(up) and up.stats.cert_time_failures == 0
        clock.advance(leaf.not_valid_after_utc.timestamp() - clock.wall() + 60)
        assert _pool_open(up)  # the pool keeps real time: the connection is still there to reuse
        up.outbox.enqueue(_records(1))
        res = await up.cycle()
        assert res.error is not None and up.stats.cert_time_failures >= 1, res
        assert len(up.outbox) == 1 and _stored(c) == [T0]

    _run(tmp_path, monkeypatch, body, pool_on_real_time=True,  # the harness's certificates are issued now
         device_clock=lambda c: TrustedClock(c, FakeNtp(synced=True)), start_wall=time.time())


@pytest.mark.parametrize("period_s", [1.0, 30.0, 600.0, 2420.0])
def test_the_cloud_keeps_idle_connections_longer_than_the_device(period_s: float) -> None:
    up = UploaderConfig(device_id="d", period_s=period_s)
    assert period_s < up.keepalive_s <= CloudConfig().keepalive_s


@pytest.mark.parametrize("bad", [0.0, 0.5, 86_401.0])
def test_the_clouds_keepalive_is_bounded(bad: float) -> None:
    with pytest.raises(ValueError, match="keepalive_s"):
        CloudConfig(keepalive_s=bad).validate()
