"""Push: released aggregates, device health and alerts, as they are newly stored, to an MQTT broker (topics
in the style Frigate users know, Home Assistant MQTT discovery for per-zone counts) and/or to webhooks.

Topics (prefix `umbra` by default; names outside [A-Za-z0-9_-] become `_`):

    umbra/available                         "online" / "offline" (retained; the broker sends offline if we vanish)
    umbra/<sensor>/<zone>/occupancy         {"window_start", "window_s", "visitors", "mean_present", "peak_present"}
    umbra/<sensor>/<zone>/person            the window's peak people present, a plain number (as frigate/<zone>/person)
    umbra/<sensor>/<line>/crossings         {"window_start", "window_s", "forward", "backward"}
    umbra/<sensor>/<zone>/dwell             {"window_start", "window_s", "histogram"}
    umbra/<sensor>/status                   the newest umbra.status/1 (retained)
    umbra/<sensor>/alerts, umbra/alerts     each umbra.alert/1 (not retained)
    homeassistant/sensor/umbra_<sensor>_<zone>_occupancy/config   discovery (retained), once per zone and worker

Aggregates are retained (a new subscriber sees the last window at once). A value the device suppressed is null.
Delivery is at most once per stored record: a record is pushed after its batch commits, so a worker killed in
between stores it without pushing it (the read API still serves it). Webhooks get the same messages as one JSON
POST per batch, `{"messages": [{"topic", "payload", "retain"}]}`, signed X-Umbra-Webhook-Signature: hex
HMAC-SHA256 of the body under the webhook secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class PushConfig:
    mqtt_host: str = ""  # empty: no MQTT
    mqtt_port: int = 1883
    prefix: str = "umbra"
    discovery_prefix: str = "homeassistant"  # empty: no Home Assistant discovery
    tenant: str = ""  # only this tenant's sensors (empty: every sensor)
    webhooks: tuple[str, ...] = ()
    webhook_secret: str = ""
    timeout_s: float = 5.0

    def validate(self) -> None:
        if not 0 < self.mqtt_port < 65536:
            raise ValueError("push mqtt_port: 1 to 65535")
        if not self.prefix or _UNSAFE.sub("", self.prefix.replace("/", "")) != self.prefix.replace("/", ""):
            raise ValueError("push prefix: letters, digits, _ - and /")
        if self.webhooks and len(self.webhook_secret) < 16:
            raise ValueError("push webhook_secret: at least 16 characters, to sign each POST")
        if any(not u.startswith(("https://", "http://127.0.0.1", "http://localhost")) for u in self.webhooks):
            raise ValueError("push webhooks: https:// URLs (plain http only to this machine)")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: Any
    retain: bool

    def wire(self) -> bytes:
        return (self.payload if isinstance(self.payload, str) else json.dumps(self.payload)).encode()


def _name(s: str) -> str:
    return _UNSAFE.sub("_", s)[:64] or "_"


def messages(prefix: str, sensor: str, rec: dict[str, Any]) -> list[Message]:
    """The messages one newly stored record gives (none for kinds that are not pushed)."""
    s, schema = _name(sensor), rec.get("schema")
    if schema == "umbra.status/1":
        return [Message(f"{prefix}/{s}/status", {k: v for k, v in rec.items() if k != "schema"}, True)]
    if schema == "umbra.alert/1":
        body = {"sensor": sensor, **{k: v for k, v in rec.items() if k != "schema"}}
        return [Message(f"{prefix}/{s}/alerts", body, False), Message(f"{prefix}/alerts", body, False)]
    if schema != "umbra.aggregate/1":
        return []
    z, v = _name(rec["zone"]), rec["values"]
    head = {"window_start": rec["window_start"], "window_s": rec["window_s"]}
    if rec["metric"] == "occupancy":
        occ = {**head, "visitors": v[0], "mean_present": v[1], "peak_present": v[2]}
        peak = "" if v[2] is None else str(v[2])
        return [Message(f"{prefix}/{s}/{z}/occupancy", occ, True), Message(f"{prefix}/{s}/{z}/person", peak, True)]
    if rec["metric"] == "line_flow":
        return [Message(f"{prefix}/{s}/{z}/crossings", {**head, "forward": v[0], "backward": v[1]}, True)]
    if rec["metric"] == "dwell_histogram":
        return [Message(f"{prefix}/{s}/{z}/dwell", {**head, "histogram": v}, True)]
    return []


def discovery(cfg: PushConfig, sensor: str, zone: str) -> Message:
    """Home Assistant MQTT discovery for a zone's people count (state: the window's peak present)."""
    s, z = _name(sensor), _name(zone)
    uid = f"umbra_{s}_{z}_occupancy"
    return Message(f"{cfg.discovery_prefix}/sensor/{uid}/config", {
        "name": f"{zone} people", "unique_id": uid, "object_id": uid,
        "state_topic": f"{cfg.prefix}/{s}/{z}/occupancy", "value_template": "{{ value_json.peak_present }}",
        "json_attributes_topic": f"{cfg.prefix}/{s}/{z}/occupancy", "unit_of_measurement": "people",
        "state_class": "measurement", "icon": "mdi:account-group",
        "availability_topic": f"{cfg.prefix}/available",
        "device": {"identifiers": [f"umbra_{s}"], "name": f"Umbra {sensor}", "manufacturer": "Umbra"}}, True)


class Push:
    """Publishes what a batch newly stored. MQTT through paho-mqtt's own network thread (reconnecting by
    itself); webhooks as asyncio tasks on the cloud's loop."""

    def __init__(self, config: PushConfig) -> None:
        config.validate()
        self.config = config
        self._announced: set[tuple[str, str]] = set()
        self.sent = 0
        self.webhook_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._mqtt: Any = None
        if config.mqtt_host:
            self._mqtt = self._connect()

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        avail = f"{self.config.prefix}/available"
        c.will_set(avail, "offline", qos=1, retain=True)
        c.on_connect = lambda cl, _u, _f, rc, _p=None: cl.publish(avail, "online", qos=1, retain=True)
        c.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30)
        c.loop_start()
        return c

    def batch(self, sensor: str, records: Iterable[dict[str, Any]], owner: str | None = None) -> list[Message]:
        """Push what these newly stored records give; returns the messages (for tests and webhooks)."""
        if self.config.tenant and owner != self.config.tenant:
            return []
        out: list[Message] = []
        for rec in records:
            msgs = messages(self.config.prefix, sensor, rec)
            if msgs and rec.get("metric") == "occupancy" and self.config.discovery_prefix:
                if (sensor, rec["zone"]) not in self._announced:
                    self._announced.add((sensor, rec["zone"]))
                    out.append(discovery(self.config, sensor, rec["zone"]))
            out += msgs
        if not out:
            return out
        if self._mqtt is not None:
            for m in out:
                self._mqtt.publish(m.topic, m.wire(), qos=1, retain=m.retain)
        self.sent += len(out)
        if self.config.webhooks:
            task = asyncio.get_running_loop().create_task(self._post(out))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return out

    async def _post(self, msgs: list[Message]) -> None:
        import aiohttp

        body = json.dumps({"messages": [{"topic": m.topic, "payload": m.payload, "retain": m.retain}
                                        for m in msgs]}).encode()
        sig = hmac.new(self.config.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Umbra-Webhook-Signature": sig}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)) as http:
            for url in self.config.webhooks:
                try:
                    async with http.post(url, data=body, headers=headers) as r:
                        if r.status >= 300:
                            raise aiohttp.ClientError(f"status {r.status}")
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    self.webhook_failures += 1
                    log.warning("webhook %s failed: %s (not retried)", url, e)

    async def drain(self) -> None:
        """Wait for the webhook posts in flight."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        if self._mqtt is not None:
            info = self._mqtt.publish(f"{self.config.prefix}/available", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(5)
            except (RuntimeError, ValueError):  # not connected: the broker's will says offline anyway
                pass
            self._mqtt.disconnect()
            self._mqtt.loop_stop()
            self._mqtt = None
