"""The reference cloud: an aiohttp HTTPS server that requires fleet client certificates, verifies signed
batches, validates records against the project's schemas, drops duplicates, stores what it accepts, rotates
signing keys and device certificates, publishes the signed pin set and serves the OTA repository.

The API is described in `cloud/openapi.yaml`. Every refusal is a 4xx JSON `{"error", "detail"}`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import re
import ssl
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud import dashboard, privacy_watch
from cloud.errors import ApiRefused, Refused
from cloud.privacy_watch import PrivacyWatch
from cloud.push import Push, PushConfig
from cloud.read_api import ReadApi
from cloud.store import Peer, Replay, Store
from firmware import schemas
from firmware.config.flows import FlowGroupConfig
from firmware.config.privacy import MAX_DAILY_EPSILON
from hal.clock import Clock
from trust import pki
from trust.keys import H_KEY, H_NONCE, H_SIG, H_TS, BatchKey, KeyRing, signature_ok
from trust.tls import server_context

log = logging.getLogger(__name__)

DEV_DEVICE = "umbra-dev-0001"
NEWEST_KEY_TTL_S = 300.0  # how long a worker trusts its cached newest key of a device (see Cloud._newest_key)


@dataclass(frozen=True, slots=True)
class CloudConfig:
    data_dir: str = "cloud-data"
    host: str = "127.0.0.1"
    port: int = 8443
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")
    key_lifetime_s: int = 86_400
    rotate_lead_s: int = 7_200  # issue the next key this long before the current one expires (the overlap)
    replay_window_s: int = 300
    max_body_bytes: int = 8 * 1024 * 1024  # as sent (gzip)
    max_inflated_bytes: int = 8 * 1024 * 1024  # bounded as the raw body is: 30 MB of JSON costs ~0.9 GB parsed
    cert_days: int = 30
    ota_dir: str = ""  # default: <data_dir>/ota
    api_port: int = 8444  # the customer and ops API (server TLS only; callers present API keys)
    max_range_s: int = 31 * 86_400  # the longest from..to a read may ask for
    api_rate: float = 10.0  # requests a second per API key (all workers together), bursts up to api_burst
    api_burst: float = 50.0
    online_within_s: float = 900.0  # a device heard from within this is online (3 status periods)
    flow_p_same: float = 0.26  # flow groups: the same person's same-group rate (bench/flowgroups.py, default noise)
    push: PushConfig = PushConfig()  # MQTT and webhooks (off unless a broker or webhook is named)
    database: str = ""  # a postgresql:// URL for a fleet (several workers); default: SQLite <data_dir>/cloud.sqlite
    # how long the device listener keeps an idle connection (aiohttp's AppRunner default, made explicit): longer
    # than the devices keep theirs (firmware.config.sync.UploaderConfig.keepalive_s, 1.5 upload periods: 45 s at
    # the default 30 s), so a device reuses one mutual-TLS connection upload after upload and it is the device
    # that closes an idle one; 3630 s covers upload periods up to 2420 s
    keepalive_s: float = 3630.0
    # the fleet's [privacy] daily_epsilon: the privacy watch flags a device whose releases of one stream pass it
    # on a UTC day (budget_passed); 0, the devices' default: epsilon times the windows in a day
    daily_epsilon: float = 0.0
    # PostgreSQL: how many batches a worker takes at once, each in a thread of its own with its own connection
    # (the event loop goes on reading requests meanwhile, and the commits share WAL flushes); SQLite: unused
    db_threads: int = 4

    def validate(self) -> None:
        if not 0 < self.rotate_lead_s < self.key_lifetime_s:
            raise ValueError("rotate_lead_s: above 0 and below key_lifetime_s")
        if not 10 <= self.replay_window_s <= 3600:
            raise ValueError("replay_window_s: 10 to 3600")
        if not (0 <= self.port <= 65535 and 0 <= self.api_port <= 65535):
            raise ValueError("port, api_port: 0 to 65535")
        if not (self.api_rate > 0 and self.api_burst >= 1 and self.max_range_s >= 60):
            raise ValueError("api_rate above 0, api_burst at least 1, max_range_s at least 60")
        if not 1 <= self.keepalive_s <= 86_400:
            raise ValueError("keepalive_s: 1 to 86400 (above the devices' keep-alive, 1.5 upload periods)")
        if not 1 <= self.db_threads <= 64:
            raise ValueError("db_threads: 1 to 64 (each a PostgreSQL connection of a worker)")
        if not 0 <= self.daily_epsilon <= MAX_DAILY_EPSILON:
            raise ValueError(f"daily_epsilon: 0 to {MAX_DAILY_EPSILON:g} (0: epsilon times the windows in a day)")


# A run of 19 digits or more (an integer that may pass 64 bits) or an exponent of three digits (a float that
# may overflow to infinity): only a body holding one is parsed again with every number checked.
_SUSPECT_NUMBER = re.compile(rb"\d{19}|[eE][+-]?\d{3}")
MAX_INT = 2**63 - 1  # what PostgreSQL's bigint and SQLite's integer hold


def _not_json(name: str) -> Any:
    raise Refused(400, "bad_json", f"body holds {name}, which is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(v := int(text)) > MAX_INT:
        raise Refused(400, "bad_json", f"body holds the integer {text[:24]}{'...' if len(text) > 24 else ''}, "
                                       "beyond 64 bits")
    return v


def _finite_float(text: str) -> float:
    if not math.isfinite(v := float(text)):
        raise Refused(400, "bad_json", f"body holds {text[:24]}, which overflows a float")
    return v


def _plain_text(doc: Any) -> None:
    """Refuse a string or key holding a NUL or a lone surrogate (what an escape can put in JSON and UTF-8
    cannot hold)."""
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                raise Refused(400, "bad_json", "body holds a NUL character (\\u0000)")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise Refused(400, "bad_json", "body holds a lone surrogate escape (not a character)") from None


class Cloud:
    def __init__(self, config: CloudConfig, clock: Clock, *, insecure_identity_header: bool = False) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.dir = Path(config.data_dir)
        self.pki = pki.ensure_dev_pki(self.dir / "pki", config.hostnames, DEV_DEVICE)
        self.ota_dir = Path(config.ota_dir) if config.ota_dir else self.dir / "ota"
        self.ota_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.database or self.dir / "cloud.sqlite")
        # audit heads and epsilon per device, in the cloud database
        self.watch = PrivacyWatch(self.store.db, every_stream=config.daily_epsilon)
        self._ca_key, self._ca = pki.load_key(self.pki.ca_key), pki.load_cert(self.pki.ca_cert)
        self.ssl: ssl.SSLContext = server_context(self.pki.server_cert, self.pki.server_key, self.pki.ca_cert)
        self.api_ssl = server_context(self.pki.server_cert, self.pki.server_key, self.pki.ca_cert,
                                      require_client_cert=False)
        self.api_ssl.verify_mode = ssl.CERT_NONE  # customers hold API keys, not fleet certificates
        self.read_api = ReadApi(self.store, clock, max_range_s=config.max_range_s, rate=config.api_rate,
                                burst=config.api_burst, online_within_s=config.online_within_s,
                                flow_p_same=config.flow_p_same, flow_groups=FlowGroupConfig().groups)
        self.push = Push(config.push) if config.push.mqtt_host or config.push.webhooks else None
        self.insecure_identity_header = insecure_identity_header  # schemathesis over plain HTTP only
        self.unavailable_until = 0.0  # wall time: answer 503 + Retry-After until then (outage simulation)
        self.refusals: Counter[str] = Counter()
        self._keys: dict[tuple[str, str], BatchKey] = {}
        self._newest: dict[str, tuple[float, BatchKey]] = {}  # device -> (cached until, its newest key)
        self.duplicate_batches = 0  # resends of batches already stored (acknowledged, not stored again)
        self.stage_cpu: Counter[str] | None = None  # set to a Counter: CPU ns per ingest stage (bench.fleet_scale)
        self._db_threads: ThreadPoolExecutor | None = None  # PostgreSQL: where batches are taken (see `app`)
        if self.store.newest_key(DEV_DEVICE) is None:
            ring = KeyRing(self.pki.root / "device_keys.json")
            ring.add(self.issue_key(DEV_DEVICE), clock.wall())

    # --- keys and certificates ------------------------------------------------------------------------------

    def issue_key(self, device_id: str) -> BatchKey:
        key = BatchKey.generate(self.clock.wall(), self.config.key_lifetime_s)
        self.store.add_key(device_id, key)
        self._newest.pop(device_id, None)
        return key

    def _newest_key(self, device_id: str, now: float) -> BatchKey | None:
        """The device's newest key, from a per-worker cache of NEWEST_KEY_TTL_S. A worker issues a key only when
        the newest is within rotate_lead_s of expiry, so a cached key further from expiry than that stays the
        newest unless one is issued by hand (provisioning), which this worker sees within the TTL."""
        got = self._newest.get(device_id)
        if got is not None and now < got[0] and got[1].expires - now > self.config.rotate_lead_s:
            return got[1]
        key = self.store.newest_key(device_id)
        if key is not None and len(self._newest) < 200_000:
            self._newest[device_id] = (now + NEWEST_KEY_TTL_S, key)
        return key

    def next_key_for(self, device_id: str, used: BatchKey | None) -> BatchKey | None:
        """The key the device should have next: a fresh one when the newest is near expiry."""
        now = self.clock.wall()
        newest = self._newest_key(device_id, now)
        if newest is None or newest.expires - now <= self.config.rotate_lead_s:
            newest = self.issue_key(device_id)
        return None if used is not None and used.key_id == newest.key_id else newest

    def rotate_server_cert(self, key_path: Path) -> str:
        """Serve a new certificate for the key at `key_path` (e.g. the backup-pinned key); returns its pin.
        New handshakes use it at once; connections already open keep the old one."""
        key = pki.load_key(key_path)
        cert = pki.issue_cert(self._ca_key, self._ca, key.public_key(), "umbra-cloud",
                              pki.utcnow(), 825, server_names=self.config.hostnames)
        pki.write_atomic(self.pki.server_cert, pki.cert_pem(cert))
        pki.write_atomic(self.pki.server_key, pki.key_pem(key), private=True)
        self.ssl.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        return pki.spki_sha256(key.public_key())

    # --- request helpers ------------------------------------------------------------------------------------

    def _device(self, request: web.Request) -> str:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            for rdn in peer.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        return str(v)
        if self.insecure_identity_header and request.headers.get("X-Umbra-Device"):
            return request.headers["X-Umbra-Device"][:64]
        raise Refused(401, "unauthenticated", "a fleet client certificate is required")

    def _peer(self, request: web.Request) -> Peer:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if not cert:
            return Peer()
        expires = int(ssl.cert_time_to_seconds(cert["notAfter"])) if cert.get("notAfter") else None
        return Peer(cert.get("serialNumber"), expires)

    def _signing_key(self, device: str, key_id: str, now: float) -> BatchKey | None:
        key = self._keys.get((device, key_id))
        if key is not None:
            return key
        key, newest = self.store.key_and_newest(device, key_id)  # one statement: `next_key_for` needs the newest
        if newest is not None and device not in self._newest and len(self._newest) < 200_000:
            self._newest[device] = (now + NEWEST_KEY_TTL_S, newest)
        if key is not None and len(self._keys) < 200_000:
            self._keys[(device, key_id)] = key  # keys never change once issued
        return key

    def _check_signature(self, request: web.Request, device: str, body: bytes) -> tuple[BatchKey, tuple[str, int, int]]:
        """The key that signed the request, and its nonce to claim (nonce, timestamp, forget nonces before) in
        the transaction that stores the batch (`Store.store_batch` refuses a nonce already held)."""
        h = request.headers
        if not all(x in h for x in (H_KEY, H_TS, H_NONCE, H_SIG)):
            raise Refused(401, "unsigned", f"headers {H_KEY}, {H_TS}, {H_NONCE}, {H_SIG} are required")
        now = self.clock.wall()
        key = self._signing_key(device, h[H_KEY], now)
        if key is None:
            raise Refused(401, "unknown_key", "this key id was never issued to this device; fetch /v1/keys/next")
        if not key.valid_at(now):
            raise Refused(401, "key_expired", "this key is no longer accepted; fetch /v1/keys/next")
        try:
            ts = int(h[H_TS])
        except ValueError:
            raise Refused(401, "bad_timestamp", f"{H_TS} must be whole Unix seconds") from None
        window = self.config.replay_window_s
        if abs(ts - now) > window:
            raise Refused(401, "stale", f"timestamp is more than {window} s from the cloud's clock")
        if not signature_ok(key, h, request.method, request.path, device, body):
            raise Refused(401, "bad_signature", "the HMAC does not match the request (edited, or wrong key)")
        if len(h[H_NONCE]) > 64:
            raise Refused(409, "replay", "this signed request was already received")
        return key, (h[H_NONCE], ts, int(now) - 2 * window)

    def _inflate(self, request: web.Request, body: bytes) -> bytes:
        enc = request.headers.get("Content-Encoding", "identity").lower()
        if enc == "identity":
            return body
        if enc != "gzip":
            raise Refused(415, "encoding", "Content-Encoding must be gzip or identity")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(body, self.config.max_inflated_bytes)
        except zlib.error as e:
            raise Refused(400, "bad_gzip", f"body is not valid gzip: {e}") from None
        if d.unconsumed_tail:
            raise Refused(413, "too_large", f"batch inflates beyond {self.config.max_inflated_bytes} bytes")
        if not d.eof:
            raise Refused(400, "bad_gzip", "gzip stream is truncated")
        return out

    @staticmethod
    def _load_json(raw: bytes) -> Any:
        try:
            doc = json.loads(raw, parse_constant=_not_json)
            if _SUSPECT_NUMBER.search(raw):  # rare: read again with every number checked (slower per number)
                json.loads(raw, parse_int=_bounded_int, parse_float=_finite_float)
            if b"\\u" in raw:  # escapes: none may be a NUL or half a surrogate pair (no database holds them)
                _plain_text(doc)
            return doc
        except Refused:
            raise
        except (ValueError, UnicodeDecodeError) as e:
            raise Refused(400, "bad_json", f"body is not JSON: {e}") from None
        except RecursionError:  # nested past the parser: no batch is
            raise Refused(400, "bad_json", "body is JSON nested too deep") from None

    @staticmethod
    def _validate_batch(device: str, doc: Any) -> dict[str, Any]:
        try:
            schemas.validate(doc, "umbra.batch/1")
        except schemas.SchemaError as e:
            raise Refused(422, "bad_batch", str(e)) from None
        if doc["device_id"] != device:
            raise Refused(403, "wrong_device", "device_id differs from the client certificate")
        if len(doc["seqs"]) != len(doc["records"]) or len(set(doc["seqs"])) != len(doc["seqs"]):
            raise Refused(422, "bad_batch", "seqs must be distinct and one per record")
        for i, rec in enumerate(doc["records"]):
            if rec.get("schema") not in schemas.RECORD_SCHEMAS:
                raise Refused(422, "bad_record", f"records/{i}: unknown schema {rec.get('schema')!r}")
            try:
                schemas.validate(rec)
            except schemas.SchemaError as e:
                raise Refused(422, "bad_record", f"records/{i}: {e}") from None
        return doc

    # --- handlers -------------------------------------------------------------------------------------------

    async def ingest(self, request: web.Request) -> web.Response:
        device = self._device(request)
        now = self.clock.wall()
        if now < self.unavailable_until:
            wait = max(1, int(self.unavailable_until - now))
            raise Refused(503, "unavailable", "the cloud is down for maintenance", {"Retry-After": str(wait)})
        if request.content_type != "application/json":
            raise Refused(415, "content_type", "Content-Type must be application/json")
        body = await request.read()  # bounded by client_max_size (413 above it)
        peer = self._peer(request)
        if self._db_threads is None:  # SQLite: one connection, on the event loop
            got = self._take_batch(request, device, now, body, peer)
        else:  # PostgreSQL: on one of the worker's database threads, each with its own connection
            got = await asyncio.get_running_loop().run_in_executor(self._db_threads, self._take_batch, request,
                                                                   device, now, body, peer)
        doc, new, stored, fresh, flags, nxt, stages = got
        privacy_watch.report(flags)
        if self.push is not None and fresh:
            by_seq = dict(zip(doc["seqs"], doc["records"], strict=True))
            self.push.batch(device, (by_seq[s] for s, _, _ in fresh), self.store.owner(device))
        self.duplicate_batches += not new
        out = web.json_response({"ack": doc["batch_id"], "duplicate": not new, "stored": stored,
                                 "next_key": nxt.to_json() if nxt else None})
        if self.stage_cpu is not None and stages:
            self.stage_cpu.update(stages)
            self.stage_cpu["batches"] += 1
        return out

    def _take_batch(self, request: web.Request, device: str, now: float, body: bytes, peer: Peer) -> tuple[
            dict[str, Any], bool, int, list[tuple[int, str, str]], list[dict[str, Any]], BatchKey | None,
            dict[str, int]]:
        """Everything between reading a batch's body and writing its ack, all in one thread (the event loop's on
        SQLite, a database thread's on PostgreSQL, where every statement waits for the server): the signature,
        inflating, JSON, the schema checks, the store transaction with the privacy watch, and the next key.
        Returns (batch, new?, records stored, the rows newly stored, the watch's flags, the next key, CPU ns per
        stage when `stage_cpu` is on)."""
        cpu = time.thread_time_ns if self.stage_cpu is not None else None
        t0 = cpu() if cpu else 0
        key, nonce = self._check_signature(request, device, body)
        t1 = cpu() if cpu else 0
        raw = self._inflate(request, body)
        t2 = cpu() if cpu else 0
        doc = self._load_json(raw)
        t3 = cpu() if cpu else 0
        self._validate_batch(device, doc)
        t4 = cpu() if cpu else 0
        rows = [(s, r["schema"], json.dumps(r, separators=(",", ":")))
                for s, r in zip(doc["seqs"], doc["records"], strict=True)]
        fresh: list[tuple[int, str, str]] = []
        flags: list[dict[str, Any]] = []
        watch_ns = [0]

        def on_new() -> None:
            w = cpu() if cpu else 0
            flags.extend(self.watch.check(device, doc, now, device_locked=True))  # see Store.store_batch
            watch_ns[0] = cpu() - w if cpu else 0

        t5 = cpu() if cpu else 0
        try:
            new, stored = self.store.store_batch(device, doc["batch_id"], doc["outbox_id"], doc["seq"], now, rows,
                                                 peer, fresh, on_new=on_new, nonce=nonce)
        except Replay:
            raise Refused(409, "replay", "this signed request was already received") from None
        t6 = cpu() if cpu else 0
        nxt = self.next_key_for(device, key)
        stages: dict[str, int] = {}
        if cpu:
            stages = {"signature": t1 - t0, "inflate": t2 - t1, "json_parse": t3 - t2, "schema_validate": t4 - t3,
                      "json_dump_records": t5 - t4, "privacy_watch": watch_ns[0],
                      "store_tx": t6 - t5 - watch_ns[0], "ack": cpu() - t6}
        return doc, new, stored, fresh, flags, nxt, stages

    async def keys_next(self, request: web.Request) -> web.Response:
        device = self._device(request)
        key = self.next_key_for(device, None)
        assert key is not None
        return web.json_response({"next_key": key.to_json()})

    async def certificate(self, request: web.Request) -> web.Response:
        device = self._device(request)
        if (request.content_length or 0) > 16384:
            raise Refused(413, "too_large", "a CSR is at most 16 KiB")
        csr = await request.read()
        try:
            cert = pki.sign_csr(self._ca_key, self._ca, csr, pki.utcnow(), self.config.cert_days,
                                expect_common_name=device)
        except (pki.PkiError, ValueError) as e:
            raise Refused(400, "bad_csr", str(e)) from None
        return web.json_response({"certificate": pki.cert_pem(cert).decode("ascii")})

    def authorize(self, device_id: str, token: str) -> str:
        """The operator side: relay a customer's sampling token to a device (stored as is; the device verifies
        it against the customer's key). Returns its token id."""
        from firmware.samples.authorization import _token_id_or_none

        token_id = _token_id_or_none(token.strip())
        if token_id is None:
            raise ValueError("not a sampling-authorization token (umbra.sampling-authorization/1)")
        self.store.put_authorization(device_id, token_id, token.strip())
        return token_id

    def revoke_authorization(self, device_id: str, token_id: str) -> None:
        self.store.put_authorization(device_id, token_id, None)

    async def authorizations(self, request: web.Request) -> web.Response:
        tokens, revoked = self.store.authorizations(self._device(request))
        return web.json_response({"schema": "umbra.sampling-tokens/1", "tokens": tokens, "revoked": revoked})

    async def pins(self, request: web.Request) -> web.Response:
        self._device(request)
        return web.json_response(pki.pins_message(self.pki.pins))

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "records": self.store.count("records")})

    async def _date(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = email.utils.formatdate(self.clock.wall(), usegmt=True)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except (Refused, ApiRefused) as e:
            self.refusals[e.error] += 1
            return web.json_response({"error": e.error, "detail": e.detail}, status=e.status, headers=e.headers)
        except web.HTTPException as e:
            if e.status >= 400:
                self.refusals[str(e.status)] += 1
                return web.json_response({"error": e.reason.lower().replace(" ", "_"), "detail": e.text or e.reason},
                                         status=e.status, headers={k: v for k, v in e.headers.items()
                                                                   if k in ("Allow", "Retry-After")})
            raise

    def api_app(self) -> web.Application:
        """The customer and ops API (and the dashboard): API keys, no client certificates."""
        app = web.Application(client_max_size=16 * 1024, middlewares=[self._errors])
        self.read_api.add_routes(app)
        dashboard.add_routes(app)
        return app

    async def start_api(self, host: str | None = None, port: int | None = None,
                        tls: bool = True) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(self.api_app(), access_log=None, max_line_size=4096, max_field_size=4096)
        await runner.setup()
        site = web.TCPSite(runner, host or self.config.host, self.config.api_port if port is None else port,
                           ssl_context=self.api_ssl if tls else None)
        await site.start()
        return runner, int(runner.addresses[0][1])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._errors])
        if self.store.db.postgres:  # a batch's statements wait for the server: off the event loop, db_threads at once
            self._db_threads = ThreadPoolExecutor(self.config.db_threads, thread_name_prefix="umbra-db")
            app.on_cleanup.append(self._stop_db_threads)
        app.on_response_prepare.append(self._date)  # devices without a trusted clock learn the time from it
        app.router.add_post("/v1/batches", self.ingest)
        app.router.add_post("/v1/keys/next", self.keys_next)
        app.router.add_post("/v1/certificate", self.certificate)
        app.router.add_get("/v1/pins", self.pins)
        app.router.add_get("/v1/authorizations", self.authorizations)
        app.router.add_get("/v1/health", self.health)
        app.router.add_static("/ota/", self.ota_dir, follow_symlinks=False, show_index=False)
        return app

    async def start(self, host: str | None = None, port: int | None = None,
                    tls: bool = True) -> tuple[web.AppRunner, int]:
        """Start serving; returns the runner (call `await runner.cleanup()`) and the bound port."""
        runner = web.AppRunner(self.app(), access_log=None, auto_decompress=False,  # we inflate, bounded
                               keepalive_timeout=self.config.keepalive_s)
        await runner.setup()
        site = web.TCPSite(runner, host or self.config.host, self.config.port if port is None else port,
                           ssl_context=self.ssl if tls else None)
        await site.start()
        return runner, int(runner.addresses[0][1])

    async def _stop_db_threads(self, app: web.Application) -> None:
        pool, self._db_threads = self._db_threads, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)  # lets the batches in hand finish


async def serve_forever(cloud: Cloud) -> None:
    runner, port = await cloud.start()
    api_runner, api_port = await cloud.start_api()
    log.warning("umbra-cloud on https://%s:%d, API on https://%s:%d (data in %s)", cloud.config.host, port,
                cloud.config.host, api_port, cloud.dir)
    print(f"umbra-cloud serving https://{cloud.config.host}:{port}  CA {cloud.pki.ca_cert}  "
          f"device cert {cloud.pki.device_cert}  keys {cloud.pki.root / 'device_keys.json'}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await api_runner.cleanup()
        await runner.cleanup()
