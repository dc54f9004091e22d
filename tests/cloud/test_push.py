"""Push to a real Mosquitto broker on 127.0.0.1 (started per module from Debian's binary) and to a webhook:
what a batch newly stores is published once (a resend publishes nothing), Frigate-style topics, Home Assistant
discovery for per-zone counts, retained state, availability, a tenant filter, signed webhook posts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from aiohttp import web

from cloud import customers
from cloud.app import Cloud, CloudConfig
from cloud.harness import device_setup
from cloud.mqttbroker import LocalMosquitto
from cloud.push import PushConfig, messages
from firmware.config.sync import OutboxConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import FakeClock

T0 = 1_700_000_100


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalMosquitto]:
    with LocalMosquitto() as b:
        yield b


class Listener:
    def __init__(self, port: int) -> None:
        self.got: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: dict[str, tuple[bytes, bool]] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda _c, _u, m: self.got.put((m.topic, m.payload, bool(m.retain)))
        subscribed = queue.Queue()  # type: ignore[var-annotated]
        self.c.on_subscribe = lambda *a: subscribed.put(1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe([("umbra/#", 1), ("homeassistant/#", 1)])
        subscribed.get(timeout=10)

    def until(self, topic: str, timeout: float = 10) -> tuple[bytes, bool]:
        """The first message on `topic` (waiting for it; others that arrive meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        while topic not in self.seen:
            t, p, r = self.got.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.setdefault(t, (p, r))
        return self.seen[topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _records() -> list[dict]:
    base = {"window_start": T0, "window_s": 300, "k": 5, "epsilon": 0.5, "sensitivity": 1,
            "mechanism": "discrete_laplace", "schema": "umbra.aggregate/1"}
    return [{**base, "metric": "occupancy", "zone": "shop floor", "values": [31, 4.5, 9]},
            {**base, "metric": "line_flow", "zone": "door", "values": [12, None]},
            {"schema": "umbra.status/1", "t": T0, "firmware": "1.3.0", "profile": "aggregates", "uptime_s": 5.0,
             "outbox_records": 0, "dropped": {}, "fps": 10.0}]


def _run(tmp: Path, push: PushConfig, body) -> object:  # type: ignore[no-untyped-def]
    clock = FakeClock(start_wall=time.time())

    async def main() -> object:
        cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud"), push=push), clock)
        runner, port = await cloud.start(port=0)
        dev = device_setup(cloud, tmp / "device", port)
        outbox = Outbox(OutboxConfig(path=dev.outbox_path))
        up = Uploader(dev.uploader, dev.tls, outbox, clock, __import__("random").Random(3))
        try:
            return await body(cloud, up, outbox)
        finally:
            await up.close()
            outbox.close()
            await runner.cleanup()
            assert cloud.push is not None
            await cloud.push.drain()
            cloud.push.close()
            cloud.store.close()

    return asyncio.run(main())


def test_a_stored_batch_is_published_once_with_discovery_and_retained_state(broker: LocalMosquitto,
                                                                            tmp_path: Path) -> None:
    lis = Listener(broker.port)

    async def body(cloud: Cloud, up: Uploader, ob: Outbox) -> None:
        ob.enqueue(_records())
        assert (await up.cycle()).error is None
        assert cloud.push is not None and cloud.push.sent == 5  # discovery, occupancy, person, crossings, status

    try:
        _run(tmp_path, PushConfig(mqtt_host="127.0.0.1", mqtt_port=broker.port), body)
        occ, _ = lis.until("umbra/umbra-dev-0001/shop_floor/occupancy")
        assert json.loads(occ) == {"window_start": T0, "window_s": 300, "visitors": 31, "mean_present": 4.5,
                                   "peak_present": 9}
        assert lis.until("umbra/umbra-dev-0001/shop_floor/person")[0] == b"9"
        assert json.loads(lis.until("umbra/umbra-dev-0001/door/crossings")[0])["backward"] is None
        assert json.loads(lis.until("umbra/umbra-dev-0001/status")[0])["fps"] == 10.0
        cfg = json.loads(lis.until("homeassistant/sensor/umbra_umbra-dev-0001_shop_floor_occupancy/config")[0])
        assert cfg["state_topic"] == "umbra/umbra-dev-0001/shop_floor/occupancy"
        assert cfg["value_template"] == "{{ value_json.peak_present }}" and cfg["unit_of_measurement"] == "people"
        while lis.until("umbra/available")[0] != b"offline":  # the cloud says goodbye on close
            del lis.seen["umbra/available"]
    finally:
        lis.close()
    late = Listener(broker.port)  # a new subscriber gets the retained state at once
    try:
        occ, retained = late.until("umbra/umbra-dev-0001/shop_floor/occupancy")
        assert json.loads(occ)["peak_present"] == 9 and retained
    finally:
        late.close()


def test_messages_are_frigate_style_and_tenant_filtered() -> None:
    alert = {"schema": "umbra.alert/1", "t": T0, "rule": "occupancy", "zone": "a/b#"}
    assert [m.topic for m in messages("umbra", "s+1", alert)] == ["umbra/s_1/alerts", "umbra/alerts"]
    assert messages("umbra", "s", {"schema": "umbra.track/1"}) == []
    from cloud.push import Push

    p = Push(PushConfig(webhooks=(), tenant="acme"))
    assert p.batch("s", _records(), owner="globex") == [] and p.sent == 0
    with pytest.raises(ValueError, match="webhook_secret"):
        PushConfig(webhooks=("https://example.invalid/h",)).validate()


def test_webhooks_get_the_same_messages_signed(tmp_path: Path) -> None:
    secret = "s" * 24
    seen: list[tuple[bytes, str]] = []

    async def body(cloud: Cloud, up: Uploader, ob: Outbox) -> None:
        async def hook(request: web.Request) -> web.Response:
            seen.append((await request.read(), request.headers["X-Umbra-Webhook-Signature"]))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        object.__setattr__(cloud.push, "config", PushConfig(webhooks=(f"http://127.0.0.1:{port}/hook",),
                                                            webhook_secret=secret))
        customers.assign_sensor(cloud.store, "umbra-dev-0001", "acme")
        ob.enqueue(_records())
        assert (await up.cycle()).error is None
        assert cloud.push is not None
        await cloud.push.drain()
        await runner.cleanup()

    _run(tmp_path, PushConfig(webhooks=("http://127.0.0.1:9/placeholder",), webhook_secret=secret), body)
    (raw, sig), = seen
    assert hmac.compare_digest(sig, hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest())
    topics = [m["topic"] for m in json.loads(raw)["messages"]]
    assert "umbra/umbra-dev-0001/door/crossings" in topics and len(topics) == 5
