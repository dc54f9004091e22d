"""The uploader: drains the outbox to the cloud over pinned mutual TLS, in signed gzip'd JSON batches.

- Every `period_s` (30 s) it sends what the outbox holds, batch after batch; after a failure it retries with
  exponential backoff and jitter (injected RNG), never sooner than the server's `Retry-After`; the first
  success after an outage drains the backlog at once (no waiting for the next period). `kick()` wakes it
  early (e.g. when the network comes back).
- A batch is deleted from the outbox only when the cloud acknowledges its id. Until then the same batch
  (same id, same sequence, same records) is resent, signed afresh, and the cloud drops duplicates.
- One connection serves upload after upload: it is kept idle for 1.5 periods (`UploaderConfig.keepalive_s`),
  so the mutual-TLS handshake is paid once, not every period; a connection the cloud closed is replaced by a
  new one (a new handshake) at the next request, and nothing is lost.
- Every call has a timeout (`ClientTimeout` with connect and total limits) and every response read is
  bounded (`max_response_bytes`).
- Housekeeping on the same channel: the next signing key before the current one runs out (and at once if
  none is valid), the signed pin set every `pins_refresh_s`, and a renewed device certificate (new key made
  here, CSR sent) `cert_renew_before_s` before the current one expires.

`cycle()` does one pass and returns what happened; `run()` loops on it with `sleep` injected, so tests drive
`cycle()` with a FakeClock and never sleep.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from firmware.config.sync import UploaderConfig
from firmware.errors import UploadError
from firmware.samples.grantstore import MAX_TOKENS, SCHEMA
from firmware.sync.outbox import Batch, Outbox
from hal.clock import Clock
from hal.trustedtime import TrustedClock
from trust import pki
from trust.errors import CertTimeRefused, NoUsableKey, PinMismatch, TrustError
from trust.keys import BatchKey, KeyRing, sign_headers
from trust.tls import CertTimes, PinStore, TlsConfig, client_context, device_context
from trust.tls import PinnedConnector as _PinnedConnector

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/batches"
MAX_RETRY_AFTER_S = 86_400.0


@dataclass(slots=True)
class CycleResult:
    batches: int = 0
    records: int = 0
    duplicates: int = 0
    error: str | None = None
    retry_after: float | None = None
    backlog: bool = False  # the cycle stopped with records left (batch limit)


@dataclass(slots=True)
class UploaderStats:
    cycles: int = 0
    batches: int = 0
    records: int = 0
    duplicates_acked: int = 0
    failures: int = 0
    pin_failures: int = 0
    cert_time_failures: int = 0  # server chains refused for their validity at the device's time
    keys_received: int = 0
    certs_renewed: int = 0
    last_error: str | None = None
    errors: dict[str, int] = field(default_factory=dict)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped at a day; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone takes '²' (float() refuses it) and '١٢'
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


class Uploader:
    def __init__(self, config: UploaderConfig, tls: TlsConfig, outbox: Outbox, clock: Clock,
                 rng: random.Random, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 audit_head: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        """`clock`: a TrustedClock holds key validity, signing times and renewal until wall time is trusted
        (learnt from the cloud's Date when nothing else gave it) and judges the cloud's certificate times (OpenSSL
        would use the system clock); any other Clock (tests, benchmarks) is taken as trusted, and certificate
        times are left to OpenSSL on the system clock.
        `audit_head`: the audit log's current signed head, sent with every batch."""
        config.validate()
        self.audit_head = audit_head  # the audit log's current signed head, sent with every batch
        self.config, self.tls, self.outbox, self.clock, self.rng = config, tls, outbox, clock, rng
        self.time = clock if isinstance(clock, TrustedClock) else TrustedClock.always_trusted(clock)
        self._judge_cert_times = isinstance(clock, TrustedClock)  # else OpenSSL judges them on the system clock
        self._sleep = sleep
        self.keyring = KeyRing(config.keyring_file)
        self.pins = PinStore(tls.pins_file, tls.fleet_root_public_key)
        self.stats = UploaderStats()
        self._session: aiohttp.ClientSession | None = None
        self._session_trusted = False  # whether the session's connections were checked at trusted time
        self._failures = 0
        self._next_pins_at = 0.0
        self._next_authorizations_at = 0.0
        self._kick = asyncio.Event()
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout_s, sock_connect=config.connect_timeout_s,
                                              connect=config.connect_timeout_s)
        finish_renewal(tls)

    # --- session --------------------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            times: CertTimes | None = None
            if self._judge_cert_times:  # on the device's trusted time, not the system clock (trust.tls.CertTimes)
                ctx, times = device_context(self.tls.ca_file, self.tls.cert_file, self.tls.key_file,
                                            self.tls.min_version, self.time)
            else:
                ctx = client_context(self.tls.ca_file, self.tls.cert_file, self.tls.key_file, self.tls.min_version)
            conn = _PinnedConnector(ssl_context=ctx, pins=self.pins.pins, cert_times=times, limit=2,
                                    enable_cleanup_closed=True, keepalive_timeout=self.config.keepalive_s)
            self._session = aiohttp.ClientSession(connector=conn, timeout=self._timeout)
            self._session_trusted = self.time.trusted
        return self._session

    async def _drop_outlived_connections(self) -> None:
        """A kept connection was checked (pins, certificate times) at its handshake only: when the pin set has
        since dropped its server's key, or its chain has expired since, the connections go, and the request
        about to be made shakes hands and is checked again."""
        conn = self._session.connector if self._session is not None else None
        why = conn.outlived() if isinstance(conn, _PinnedConnector) else None
        if why is not None:
            log.info("kept connections to the cloud closed: %s", why)
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                    ) -> dict[str, Any]:
        """One request; returns the JSON answer of a 200, raises UploadError otherwise (bounded read)."""
        kw: dict[str, Any] = {"server_hostname": self.config.server_hostname} if self.config.server_hostname else {}
        await self._drop_outlived_connections()
        try:
            async with self._client().request(method, self.config.url + path, data=body, headers=headers,
                                              timeout=self._timeout, allow_redirects=False, **kw) as r:
                if not self.time.trusted:  # the pinned, authenticated cloud says what time it is
                    self._observe_date(r.headers.get("Date"))
                raw = await _read_bounded(r.content, self.config.max_response_bytes)
                if len(raw) > self.config.max_response_bytes:
                    raise UploadError(f"{path}: answer larger than {self.config.max_response_bytes} bytes",
                                      status=r.status)
                if r.status != 200:
                    ra = parse_retry_after(r.headers.get("Retry-After"), self.time.wall())
                    raise UploadError(f"{path}: HTTP {r.status} {raw[:200]!r}", ra, r.status)
                try:
                    answer = json.loads(raw)
                except RecursionError:  # nested deeper than the parser goes: no answer of ours looks so
                    raise UploadError(f"{path}: answer is JSON nested too deep", status=200) from None
                if not isinstance(answer, dict):
                    raise UploadError(f"{path}: answer is JSON {type(answer).__name__}, not an object", status=200)
                return answer
        except PinMismatch as e:
            self.stats.pin_failures += 1
            raise UploadError(f"{path}: {e}") from e
        except CertTimeRefused as e:
            self.stats.cert_time_failures += 1
            raise UploadError(f"{path}: {e}") from e
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise UploadError(f"{path}: {type(e).__name__}: {e}") from e

    def _observe_date(self, value: str | None) -> None:
        try:
            when = email.utils.parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            self.time.observe_server_time(when.timestamp())

    async def _learn_time(self) -> None:
        """Wall time is not trusted yet: ask the cloud (any answer's Date will do) before anything time-bound."""
        try:
            await self._call("GET", "/v1/health")
        except UploadError as e:
            if e.status is None:
                raise
        if not self.time.trusted:
            raise UploadError("time: wall time not trusted yet (no NTP sync, no usable Date from the cloud)")

    # --- one pass -------------------------------------------------------------------------------------------

    async def cycle(self) -> CycleResult:
        res = CycleResult()
        self.stats.cycles += 1
        try:
            if not self.time.trusted:
                await self._learn_time()
            if not self._session_trusted and self._session is not None:
                await self.close()  # connections checked only against the floor: check them again at trusted time
            await self._housekeeping()
            for _ in range(self.config.max_batches_per_cycle):
                batch = self.outbox.take_batch()
                if batch is None:
                    break
                dup = await self._send(batch)
                res.batches += 1
                res.records += len(batch)
                res.duplicates += int(dup)
            else:
                res.backlog = len(self.outbox) > 0
        except UploadError as e:
            res.error, res.retry_after = str(e), e.retry_after
        except TrustError as e:  # no usable signing key even after asking: counted, retried next cycle
            res.error = f"keys: {e}"
        self._account(res)
        return res

    def _account(self, res: CycleResult) -> None:
        self.stats.batches += res.batches
        self.stats.records += res.records
        self.stats.duplicates_acked += res.duplicates
        if res.error is None:
            self._failures = 0
            return
        self._failures += 1
        self.stats.failures += 1
        self.stats.last_error = res.error
        kind = res.error.split(":")[1].strip().split(" ")[0] if ":" in res.error else res.error
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
        log.warning("upload failed (%d in a row): %s", self._failures, res.error)

    async def _send(self, batch: Batch) -> bool:
        head = self.audit_head() if self.audit_head is not None else None
        body = gzip.compress(batch.payload(self.config.device_id, head), self.config.gzip_level, mtime=0)
        for attempt in (0, 1):
            key = await self._key()
            headers = sign_headers(key, "POST", BATCH_PATH, self.config.device_id, body, self.time.wall())
            headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
            try:
                answer = await self._call("POST", BATCH_PATH, body, headers)
            except UploadError as e:
                if attempt == 0 and e.status == 401 and ("key_expired" in str(e) or "unknown_key" in str(e)):
                    await self._fetch_key()
                    continue
                raise
            if answer.get("ack") != batch.batch_id:
                raise UploadError(f"{BATCH_PATH}: answer acknowledges {answer.get('ack')!r}, not this batch")
            self.outbox.ack(batch.batch_id)
            if answer.get("next_key"):
                self._store_key(answer["next_key"])
            return bool(answer.get("duplicate"))
        raise UploadError(f"{BATCH_PATH}: refused twice for the key")  # pragma: no cover

    # --- keys, pins, certificate ----------------------------------------------------------------------------

    async def _key(self) -> BatchKey:
        try:
            return self.keyring.current(self.time.wall())
        except NoUsableKey:
            await self._fetch_key()
            return self.keyring.current(self.time.wall())

    def _store_key(self, d: object) -> None:
        try:
            if not isinstance(d, dict):
                raise TypeError(f"a JSON {type(d).__name__}")
            key = BatchKey.from_json(d)
        except (KeyError, TypeError, ValueError, AttributeError, TrustError) as e:
            raise UploadError(f"next_key: malformed signing key from the cloud ({e!r})", status=200) from e
        if key.key_id not in {k.key_id for k in self.keyring.keys()}:
            self.keyring.add(key, self.time.wall())
            self.stats.keys_received += 1

    async def _fetch_key(self) -> None:
        answer = await self._call("POST", "/v1/keys/next")
        self._store_key(answer.get("next_key"))

    async def _housekeeping(self) -> None:
        now = self.time.wall()
        if self.keyring.needs_next(now, self.config.key_lead_s):
            await self._fetch_key()
        if now >= self._next_pins_at:
            msg = await self._call("GET", "/v1/pins")
            payload = msg.get("payload")
            version = payload.get("version", 0) if isinstance(payload, dict) else None
            if not isinstance(version, int) or isinstance(version, bool):
                raise UploadError(f"/v1/pins: malformed pin-set message (payload {type(payload).__name__})",
                                  status=200)
            if version > self.pins.current.version:
                try:
                    self.pins.update(msg)
                except (TrustError, KeyError, TypeError, ValueError, AttributeError) as e:
                    log.error("pin-set update refused: %r", e)
            self._next_pins_at = now + self.config.pins_refresh_s
        if self.config.authorizations_file and now >= self._next_authorizations_at:
            self._next_authorizations_at = now + self.config.authorizations_refresh_s
            await self._fetch_authorizations()
        if self.time.trusted and cert_expires(self.tls.cert_file) - now < self.config.cert_renew_before_s:
            await self.renew_certificate()

    async def _fetch_authorizations(self) -> None:
        """Customer sampling tokens relayed by the cloud, written as they are to `authorizations_file` (the
        sensor verifies, stores and audits them: firmware.samples.grantstore). Optional: a cloud without the route,
        or a malformed answer, is logged and does not fail the cycle."""

        try:
            msg = await self._call("GET", "/v1/authorizations")
        except UploadError as e:
            if e.status is None:
                raise  # the network: the cycle's own failure
            log.warning("sampling authorizations not fetched: %s", e)
            return
        tokens, revoked = msg.get("tokens"), msg.get("revoked")
        if (msg.get("schema") != SCHEMA or not isinstance(tokens, list) or not isinstance(revoked, list)
                or len(tokens) > MAX_TOKENS or len(revoked) > 4 * MAX_TOKENS
                or not all(isinstance(t, str) and len(t) <= 2048 for t in tokens + revoked)):
            log.warning("sampling authorizations from the cloud ignored: not %s within its limits", SCHEMA)
            return
        body = json.dumps({"schema": SCHEMA, "tokens": tokens, "revoked": revoked}, indent=1).encode("utf-8")
        target = Path(self.config.authorizations_file)
        if not target.exists() or target.read_bytes() != body:
            pki.write_atomic(target, body, private=True)

    async def renew_certificate(self) -> None:
        """New key made here, CSR to the cloud, new certificate checked and installed atomically."""
        key = pki.make_key()
        csr = pki.make_csr(key, self.config.device_id).public_bytes(serialization.Encoding.PEM)
        answer = await self._call("POST", "/v1/certificate", csr, {"Content-Type": "application/pkcs10"})
        try:
            cert = x509.load_pem_x509_certificate(str(answer["certificate"]).encode("ascii"))
            cert.verify_directly_issued_by(pki.load_cert(Path(self.tls.ca_file)))
        except (KeyError, ValueError, TypeError, pki.PkiError) as e:
            raise UploadError(f"renewed certificate refused: {e!r}") from e
        if pki.spki_sha256(cert) != pki.spki_sha256(key.public_key()):
            raise UploadError("renewed certificate is not for the key made for it")
        install_renewal(self.tls, pki.key_pem(key), pki.cert_pem(cert))
        await self.close()  # the next request builds a context with the new certificate
        self.stats.certs_renewed += 1

    # --- the loop -------------------------------------------------------------------------------------------

    def next_delay(self, res: CycleResult) -> float:
        """Seconds to wait after `res`: at once if a backlog remains, the period when all went, else backoff
        (exponential, equal jitter from the injected RNG) and never less than Retry-After."""
        if res.error is None:
            return 0.0 if res.backlog else self.config.period_s
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** min(self._failures - 1, 30))
        delay = cap / 2 + self.rng.uniform(0, cap / 2)
        return max(delay, res.retry_after or 0.0)

    def kick(self) -> None:
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                res = await self.cycle()
            except Exception as e:  # the uploader never stops for good: counted, logged, retried with backoff
                log.exception("upload cycle failed")
                res = CycleResult(error=f"cycle: {type(e).__name__}: {e}")
                self._account(res)
            self._kick.clear()
            delay = self.next_delay(res)
            if res.error is not None and res.retry_after is None and delay > self.config.period_s:
                # an outage: back off, but look for the cloud every period (a bare TCP connect, no data) so
                # the backlog goes at once when it is back, not at the end of a long backoff
                waiter = asyncio.ensure_future(self._watch_for_cloud(delay))
            else:
                waiter = asyncio.ensure_future(self._sleep(delay))
            kicked = asyncio.ensure_future(self._kick.wait())
            stopper = asyncio.ensure_future(stop.wait())
            _, pending = await asyncio.wait({waiter, kicked, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
        await self.close()

    async def _watch_for_cloud(self, delay: float) -> None:
        """Wait up to `delay`, returning early once the cloud accepts a TCP connection again."""

        parts = urlsplit(self.config.url)
        waited = 0.0
        while waited < delay:
            step = min(self.config.period_s, delay - waited)
            await self._sleep(step)
            waited += step
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, parts.port or 443), self.config.connect_timeout_s)
                writer.close()
                log.info("cloud reachable again after %.0f s: uploading the backlog now", waited)
                return
            except (OSError, TimeoutError):
                continue

async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole answer, however small the pieces it arrives in, up to `limit` + 1 bytes (more is refused)."""
    raw = bytearray()
    while len(raw) <= limit:
        chunk = await stream.read(limit + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


def cert_expires(cert_file: str) -> float:
    return pki.load_cert(Path(cert_file)).not_valid_after_utc.timestamp()


def install_renewal(tls: TlsConfig, key_pem: bytes, cert_pem: bytes) -> None:
    """Write `<file>.next` for both, then replace key and certificate; `finish_renewal` completes a pair
    interrupted between the two replaces (a power cut), so the device never holds a mismatched pair."""
    pki.write_atomic(Path(tls.key_file + ".next"), key_pem, private=True)
    pki.write_atomic(Path(tls.cert_file + ".next"), cert_pem)
    finish_renewal(tls)


def finish_renewal(tls: TlsConfig) -> None:
    key_next, cert_next = Path(tls.key_file + ".next"), Path(tls.cert_file + ".next")
    if cert_next.exists() and (key_next.exists() or _pair_matches(tls.key_file, cert_next)):
        if key_next.exists():
            os.replace(key_next, tls.key_file)
        os.replace(cert_next, tls.cert_file)
    elif key_next.exists():  # the certificate never arrived: keep the old pair
        key_next.unlink()


def _pair_matches(key_file: str, cert_file: Path) -> bool:
    try:
        return pki.spki_sha256(pki.load_key(Path(key_file)).public_key()) == pki.spki_sha256(pki.load_cert(cert_file))
    except pki.PkiError:
        return False
