"""A cloud that is slow or hostile, over real mutual TLS on 127.0.0.1: through a proxy that trickles the
answers 16 bytes every 10 ms the uploads succeed; a server (with the cloud's own TLS identity) answering
every wrong shape of body leaves each cycle with a counted error, never an exception, and the outbox whole."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import random
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud.app import Cloud, CloudConfig
from cloud.harness import device_setup
from firmware.config.sync import OutboxConfig
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 50, i % 7), 0.5, "M", i % 8, "east").to_json()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, piece: int, gap_s: float) -> None:
    try:
        while data := await reader.read(65536):
            for k in range(0, len(data), piece):
                writer.write(data[k:k + piece])
                await writer.drain()
                if gap_s:
                    await asyncio.sleep(gap_s)  # the slow link is the thing under test
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def trickle_proxy(upstream_port: int, piece: int = 16, gap_s: float = 0.01) -> asyncio.Server:
    """127.0.0.1 proxy: the client's bytes go up at once, the server's come back `piece` bytes per `gap_s`."""
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(_pipe(cr, uw, 65536, 0.0), _pipe(ur, cw, piece, gap_s))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _run(tmp: Path, body: Any) -> Any:
    clock = FakeClock(start_wall=time.time())

    async def main() -> Any:
        cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud")), clock)
        runner, port = await cloud.start(port=0)
        try:
            return await body(cloud, port, clock)
        finally:
            await runner.cleanup()
            cloud.store.close()

    return asyncio.run(main())


def _uploader(cloud: Cloud, tmp: Path, port: int, clock: FakeClock) -> tuple[Uploader, Outbox]:
    dev = device_setup(cloud, tmp / "device", port, url=f"https://127.0.0.1:{port}", request_timeout_s=120.0)
    outbox = Outbox(OutboxConfig(path=dev.outbox_path, batch_records=20))
    return Uploader(dev.uploader, dev.tls, outbox, clock, random.Random(3)), outbox


def test_uploads_succeed_through_a_link_that_trickles_16_bytes_every_10_ms(tmp_path: Path) -> None:
    async def body(cloud: Cloud, port: int, clock: FakeClock) -> tuple:
        proxy = await trickle_proxy(port)
        up, ob = _uploader(cloud, tmp_path, proxy.sockets[0].getsockname()[1], clock)
        ob.enqueue([track(i) for i in range(40)])
        try:
            res = await up.cycle()
            return res, len(ob), cloud.store.count("records")
        finally:
            await up.close()
            ob.close()
            proxy.close()

    res, left, stored = _run(tmp_path, body)
    assert res.error is None, res.error
    assert left == 0 and stored == 40


@web.middleware
async def _trickle(request: web.Request, handler: Any) -> web.StreamResponse:
    """The cloud's own answer, written 16 bytes at a time 10 ms apart (each piece its own TLS record)."""
    resp = await handler(request)
    body = resp.body if isinstance(resp, web.Response) and isinstance(resp.body, bytes) else b""
    out = web.StreamResponse(status=resp.status, headers={k: v for k, v in resp.headers.items()
                                                          if k.lower() not in ("content-length", "transfer-encoding")})
    await out.prepare(request)
    for k in range(0, len(body), 16):
        await out.write(body[k:k + 16])
        await asyncio.sleep(0.01)
    await out.write_eof()
    return out


def test_uploads_succeed_when_the_cloud_answers_16_bytes_every_10_ms(tmp_path: Path) -> None:
    async def body(cloud: Cloud, port: int, clock: FakeClock) -> tuple:
        app = cloud.app()
        app.middlewares.append(_trickle)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=cloud.ssl).start()
        up, ob = _uploader(cloud, tmp_path, runner.addresses[0][1], clock)
        ob.enqueue([track(i) for i in range(40)])
        try:
            res = await up.cycle()
            return res, len(ob), cloud.store.count("records")
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()

    res, left, stored = _run(tmp_path, body)
    assert res.error is None, res.error
    assert left == 0 and stored == 40


WRONG = [b"null", b"[]", b"[1, 2]", b'"ack"', b"1", b"true", b"{", b"", b"\xff\xfe", b"{}",
         b'{"ack": null}', b'{"ack": []}', b'{"ack": {"x": 1}}', b'{"next_key": "k"}', b'{"next_key": [1]}',
         b'{"next_key": {"key_id": 1}}', b'{"next_key": {"key_id": "k", "secret": "!!", "not_before": 0}}',
         b'{"payload": []}', b'{"payload": {"version": "7"}}', b'{"payload": {"version": 99}, "signature": 1}',
         b'{"payload": null}', b'{"tokens": null}', gzip.compress(b"{}"), b"x" * 300_000,
         b"[" * 100_000, b'{"payload": ' * 20_000 + b"1" + b"}" * 20_000,  # nested past the parser's recursion
         b'{"payload": {"version": NaN}}', b'{"payload": {"version": 1e400}}', b"1" * 5000]


def test_every_wrong_answer_is_a_counted_error_and_the_outbox_keeps_every_record(tmp_path: Path) -> None:
    shapes = itertools.cycle(WRONG)
    served: list[bytes] = []

    async def hostile(request: web.Request) -> web.Response:
        await request.read()
        b = next(shapes)
        served.append(b)
        return web.Response(body=b, content_type="application/json")

    async def body(cloud: Cloud, port: int, clock: FakeClock) -> tuple:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hostile)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=cloud.ssl)  # the cloud's own TLS identity
        await site.start()
        hport = runner.addresses[0][1]
        up, ob = _uploader(cloud, tmp_path, hport, clock)
        ob.enqueue([track(i) for i in range(60)])
        up._next_pins_at = 0.0
        results = []
        try:
            for _ in range(3 * len(WRONG)):
                up._next_pins_at = 0.0  # ask for pins every cycle too: more answers to get wrong
                results.append(await up.cycle())  # never raises
                clock.advance(31)
            return results, len(ob), up.stats
        finally:
            await up.close()
            ob.close()
            await runner.cleanup()

    results, left, stats = _run(tmp_path, body)
    assert set(WRONG) <= set(served)
    assert all(r.error is not None for r in results)
    assert stats.failures == len(results) and sum(stats.errors.values()) == len(results)
    assert left == 60
