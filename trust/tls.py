"""TLS for everything that leaves the device: mutual TLS to the fleet's private CA, plus SPKI pinning.

The client context trusts the fleet CA file and nothing else (no system store), checks the hostname,
presents the device certificate, and refuses anything below the configured floor (TLS 1.3 by default,
1.2 at the least). On top of that normal verification, `PinnedConnector` checks the server's public key
(sha256 of its SubjectPublicKeyInfo) against the pin set as soon as the handshake completes and before
aiohttp writes a byte of the request; a mismatch aborts the connection and raises `PinMismatch`.
(aiohttp's own `Fingerprint` pins one leaf certificate and turns off CA and hostname checks, so it is not
used.)

Time: OpenSSL judges certificate validity on the system clock, and a Raspberry Pi boots with a wrong one
(no battery-backed clock), so a device a day behind could not even reach the cloud to learn the time. The
device's contexts (`device_context`) therefore set OpenSSL's X509_V_FLAG_NO_CHECK_TIME, keeping every other
check (chain, signatures, hostname, purpose, version floor), and `CertTimes` checks the validity windows of the
peer's chain after the handshake, before a request byte is sent, against the device's own notion of time
(`DeviceTime`, e.g. `hal.trustedtime.TrustedClock`): once wall time is trusted, notBefore <= now <= notAfter;
while it is not, only a chain that expired before the last trusted time (or before the device's own
certificate was issued) is refused, so the device can connect, learn the signed time and become trusted. A
connector given a context that skips the time check refuses to run without a `CertTimes` to do it.

The pin set lives in a file holding a message signed by the fleet root key (Ed25519, see
`trust.pki.sign_pin_update`); `PinStore` verifies it on load and accepts a replacement only if it is
signed by that key, has a higher version, and names at least two pins (one in use, at least one backup).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import ssl
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trust.errors import CertTimeRefused, PinMismatch, PinUpdateRefused, TlsError
from trust.files import canonical, write_atomic
from trust.pki import PINS_SCHEMA, load_root_public, spki_sha256_der_cert

log = logging.getLogger(__name__)

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
MAX_PIN_MESSAGE = 16_384
MIN_PINS = 2
NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME (1.1.0 on); Python's ssl has no name for it
MAX_CHAIN = 8


@dataclass(frozen=True, slots=True)
class TlsConfig:
    # "{state_dir}" is the device's [device] state_dir, expanded when firmware.config builds the config
    ca_file: str = "{state_dir}/pki/ca.pem"  # the fleet CA: the only trust anchor
    cert_file: str = "{state_dir}/pki/device.pem"
    key_file: str = "{state_dir}/pki/device.key"
    pins_file: str = "{state_dir}/pki/pins.json"  # signed pin set (umbra.pins/1)
    fleet_root_public_key: str = ""  # base64 of the raw 32-byte Ed25519 key that signs pin sets
    min_version: str = "1.3"

    def validate(self) -> None:
        if self.min_version not in TLS_VERSIONS:
            raise ValueError(f"min_version: {self.min_version!r}; allowed: '1.2' or '1.3'")
        for name in ("ca_file", "cert_file", "key_file", "pins_file"):
            if not getattr(self, name):
                raise ValueError(f"{name}: needs a file path")
        if self.fleet_root_public_key:
            self.check_fleet_root()

    def check_fleet_root(self) -> None:
        """The pin-set signer's key: needed once sync runs (the uploader checks pin updates with it), not before,
        so a device with sync off may name its key files (the audit head is signed with the key) without it."""
        try:
            if len(base64.b64decode(self.fleet_root_public_key, validate=True)) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            raise ValueError("fleet_root_public_key: base64 of the raw 32-byte Ed25519 public key") from None


def client_context(ca_file: str | Path, cert_file: str | Path, key_file: str | Path,
                   min_version: str = "1.3") -> ssl.SSLContext:
    """Client side of mutual TLS: fleet CA only, hostname checked, device certificate, version floor."""
    if min_version not in TLS_VERSIONS:
        raise TlsError(f"min_version {min_version!r}: use '1.2' or '1.3'")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on; no default CAs loaded
    ctx.minimum_version = TLS_VERSIONS[min_version]
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load TLS files (CA {ca_file}, cert {cert_file}, key {key_file}): {e}") from e
    return ctx


class DeviceTime(Protocol):
    """What the certificate time check reads of the device's clock (hal.trustedtime.TrustedClock has it)."""

    @property
    def trusted(self) -> bool: ...

    @property
    def floor(self) -> float: ...

    def wall(self) -> float: ...


def peer_chain(ssl_object: Any) -> list[bytes]:
    """The chain OpenSSL verified for the peer of a TLS connection (an `ssl.SSLObject` as asyncio's transports
    hold, or an `ssl.SSLSocket`), leaf first, each certificate as DER: the leaf, every intermediate it used
    (those the server sent among them) and the anchor. Python 3.13 has it as `get_verified_chain()`; 3.10 to
    3.12 have the same method on the `_ssl` object underneath (bpo-18233), returning `_ssl.Certificate`s.
    An empty list when neither is there or the chain is not known (a resumed session keeps no chain)."""
    getter = getattr(ssl_object, "get_verified_chain", None)  # Python 3.13 on
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    if getter is None:
        return []
    try:
        chain = getter() or []
    except (ssl.SSLError, ValueError, AttributeError):
        return []
    return [bytes(c) if isinstance(c, bytes | bytearray) else bytes(c.public_bytes(_ENCODING_DER)) for c in chain]


_ENCODING_DER = 2  # _ssl.ENCODING_DER (X509_FILETYPE_ASN1), the format _ssl.Certificate.public_bytes takes


class CertTimes:
    """The validity-window check OpenSSL skips on a device context, done on the device's time after the
    handshake. The chain checked is every certificate of the chain OpenSSL verified (`peer_chain`: the leaf,
    the intermediates the server sent, the fleet CA); where that is not known, the peer's certificate and the
    issuers above it found in the CA file. `refused` counts refusals."""

    def __init__(self, ca_file: str | Path, own_cert_file: str | Path | None, time: DeviceTime) -> None:
        try:
            self.anchors = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
            own = x509.load_pem_x509_certificate(Path(own_cert_file).read_bytes()) if own_cert_file else None
        except (OSError, ValueError) as e:
            raise TlsError(f"cannot read certificates for the time check ({ca_file}, {own_cert_file}): {e}") from e
        # the device's own certificate was issued at provisioning (or renewal): the true time is not earlier
        self.issued_floor = own.not_valid_before_utc.timestamp() if own is not None else 0.0
        self.time = time
        self.refused = 0

    def chain(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        chain, cur = [leaf], leaf
        while len(chain) < MAX_CHAIN and cur.issuer != cur.subject:
            cur = next((a for a in self.anchors if a.subject == cur.issuer and _issued_by(cur, a)), cur)
            if cur in chain:
                break
            chain.append(cur)
        return chain

    def check(self, der: bytes, presented: Sequence[bytes] = ()) -> None:
        """Raises CertTimeRefused (counted) when the peer's chain is not valid at the device's time. `der`: the
        peer's certificate; `presented`: the verified chain (`peer_chain`), every certificate of it checked."""
        try:
            leaf = x509.load_der_x509_certificate(der)
            chain = [x509.load_der_x509_certificate(c) for c in presented[:MAX_CHAIN]]
            if not chain or chain[0] != leaf:  # not known (or not this peer's): the leaf and the CA file's issuers
                chain = self.chain(leaf)
            _check_windows(chain, self.time.trusted, self.time.wall(), max(self.time.floor, self.issued_floor))
        except CertTimeRefused:
            self.refused += 1
            raise
        except ValueError as e:
            self.refused += 1
            raise CertTimeRefused(f"cert-time: the server's certificate cannot be read: {e}") from e


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_windows(chain: Sequence[x509.Certificate], trusted: bool, now: float, floor: float) -> None:
    for cert in chain:
        name = cert.subject.rfc4514_string()
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if trusted and now < start.timestamp():
            raise CertTimeRefused(f"cert-time: certificate {name!r} is not valid before {start:%Y-%m-%dT%H:%M:%SZ}; "
                                  f"the trusted time is {_iso(now)}")
        if trusted and now > end.timestamp():
            raise CertTimeRefused(f"cert-time: certificate {name!r} expired at {end:%Y-%m-%dT%H:%M:%SZ}; "
                                  f"the trusted time is {_iso(now)}")
        if not trusted and end.timestamp() < floor:
            raise CertTimeRefused(f"cert-time: certificate {name!r} expired at {end:%Y-%m-%dT%H:%M:%SZ}, before "
                                  f"the last trusted time {_iso(floor)} (wall time not trusted yet)")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_context(ca_file: str | Path, cert_file: str | Path, key_file: str | Path, min_version: str,
                   time: DeviceTime) -> tuple[ssl.SSLContext, CertTimes]:
    """A device's client context whose certificate times are judged on `time`, not the system clock: OpenSSL
    checks everything but time, and the returned CertTimes (hand it to the connector) checks time."""
    ctx = client_context(ca_file, cert_file, key_file, min_version)
    ctx.verify_flags |= NO_CHECK_TIME
    return ctx, CertTimes(ca_file, cert_file, time)


def needs_time_check(ctx: ssl.SSLContext, times: CertTimes | None) -> None:
    """TlsError when `ctx` skips OpenSSL's time check and nothing is given to do it instead."""
    if ctx.verify_flags & NO_CHECK_TIME and times is None:
        raise TlsError("a context that skips OpenSSL's certificate time check needs a CertTimes to check time")


def server_context(cert_file: str | Path, key_file: str | Path, ca_file: str | Path,
                   min_version: str = "1.2", max_version: str | None = None,
                   require_client_cert: bool = True) -> ssl.SSLContext:
    """Server side: its certificate, and (by default) a client certificate from the fleet CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[min_version]
    if max_version is not None:
        ctx.maximum_version = TLS_VERSIONS[max_version]
    try:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
        ctx.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load server TLS files (cert {cert_file}, key {key_file}, CA {ca_file}): {e}") from e
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


# --- pins -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinSet:
    version: int
    pins: frozenset[str]
    issued: int


def verify_pin_message(message: Mapping[str, Any], root: Ed25519PublicKey) -> PinSet:
    """Check a signed pin-set message and return its pins; raises PinUpdateRefused."""
    try:
        payload = message["payload"]
        sig = base64.b64decode(message["signature"], validate=True)
        version, issued, pins = payload["version"], payload["issued"], payload["pins"]
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise PinUpdateRefused(f"malformed pin-set message: {e!r}") from e
    if payload.get("schema") != PINS_SCHEMA or set(payload) != {"schema", "version", "issued", "pins"}:
        raise PinUpdateRefused(f"pin-set payload must be exactly {PINS_SCHEMA} with version, issued, pins")
    try:
        root.verify(sig, canonical(payload))
    except InvalidSignature:
        raise PinUpdateRefused("pin-set signature does not verify with the fleet root key") from None
    if not (isinstance(version, int) and isinstance(issued, int) and isinstance(pins, list)
            and all(isinstance(p, str) and len(p) == 44 for p in pins)):
        raise PinUpdateRefused("pin-set fields have the wrong types (pins are base64 sha256)")
    if len(set(pins)) < MIN_PINS:
        raise PinUpdateRefused(f"a pin set needs at least {MIN_PINS} pins (one in use, one backup)")
    return PinSet(version, frozenset(pins), issued)


class PinStore:
    """The device's current pin set, file-backed. `pins()` is what `PinnedConnector` calls per connection."""

    def __init__(self, path: str | Path, root_public_b64: str) -> None:
        self.path = Path(path)
        self._root = load_root_public(root_public_b64)
        self._current = verify_pin_message(self._read(self.path), self._root)

    @staticmethod
    def _read(path: Path) -> Mapping[str, Any]:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PIN_MESSAGE + 1)
            if len(raw) > MAX_PIN_MESSAGE:
                raise TlsError(f"pin file {path} is larger than {MAX_PIN_MESSAGE} bytes")
            return json.loads(raw)
        except (OSError, ValueError, RecursionError) as e:  # Recursion: nested past the JSON parser
            raise TlsError(f"cannot read the pin file {path}: {e}") from e

    @property
    def current(self) -> PinSet:
        return self._current

    def pins(self) -> frozenset[str]:
        return self._current.pins

    def update(self, message: Mapping[str, Any]) -> PinSet:
        """Replace the pin set with a newer one signed by the fleet root key (atomic on disk)."""
        new = verify_pin_message(message, self._root)
        if new.version <= self._current.version:
            raise PinUpdateRefused(f"pin-set version {new.version} is not newer than {self._current.version}")
        write_atomic(self.path, canonical(dict(message)))
        self._current = new
        log.info("pin set updated", extra={"pin_version": new.version, "pins": len(new.pins)})
        return new


def peer_der(transport: Any) -> bytes:
    """The peer's certificate (DER) on a verified TLS transport; PinMismatch when there is none."""
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise PinMismatch("no server certificate on this connection; refusing to send")
    return bytes(der)


def check_pins(transport: Any, pins: frozenset[str]) -> str:
    """The peer's SPKI pin if it is in `pins`; else PinMismatch. Call only after a verified handshake."""
    der = peer_der(transport)
    got = spki_sha256_der_cert(der)
    if got not in pins:
        peer = transport.get_extra_info("peername")
        raise PinMismatch(f"server {peer} key {got} is not in the pin set; connection closed before sending")
    return got


class PinnedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks SPKI pins right after the (fully verified) TLS handshake.

    The check sits in `_wrap_create_connection`, where aiohttp itself checks `Fingerprint`: the transport
    is connected and verified, and no request byte has been written. Plain (non-TLS) connections are
    refused outright. With `cert_times` (a `device_context`), the chain's validity on the device's time is
    checked there too (CertTimeRefused).

    Both checks are made once, at the handshake, and a kept connection outlives them: `outlived()` says when
    the connections it opened may no longer be used (a server key since dropped from the pin set, a chain
    expired since), so its owner closes them and the next request shakes hands and is checked again."""

    def __init__(self, *, ssl_context: ssl.SSLContext, pins: Callable[[], frozenset[str]],
                 cert_times: CertTimes | None = None, **kwargs: Any) -> None:
        if not ssl_context.check_hostname or ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise TlsError("PinnedConnector needs a verifying context (CERT_REQUIRED, check_hostname)")
        needs_time_check(ssl_context, cert_times)
        super().__init__(ssl=ssl_context, **kwargs)
        self._pins = pins
        self._times = cert_times
        self.pin_failures = 0
        self._peer_keys: set[str] = set()  # the SPKI pins of the servers its connections were opened to
        self._valid_until = float("inf")  # the earliest not-after of the chains those connections verified

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, proto = await super()._wrap_create_connection(*args, **kwargs)
        try:
            if not kwargs.get("ssl"):
                raise PinMismatch("plain-text connection refused: only https with pinning is allowed")
            key = check_pins(transport, self._pins())
        except PinMismatch:
            self.pin_failures += 1
            transport.abort()
            raise
        der, chain = peer_der(transport), peer_chain(transport.get_extra_info("ssl_object"))
        if self._times is not None:
            try:
                self._times.check(der, chain)
            except CertTimeRefused:
                transport.abort()
                raise
        try:
            ends = [x509.load_der_x509_certificate(c).not_valid_after_utc.timestamp() for c in chain or [der]]
        except ValueError as e:  # verified by OpenSSL a moment ago: not expected
            transport.abort()
            raise PinMismatch(f"the server's certificate cannot be read: {e}") from e
        self._peer_keys.add(key)
        self._valid_until = min(self._valid_until, *ends)
        return transport, proto

    def outlived(self) -> str | None:
        """Why the connections this connector opened may no longer be used, or None: a server key no longer in
        the pin set, or a verified chain expired since its handshake (on the device's time with `cert_times`:
        while that time is untrusted, only a chain that expired before the last trusted time; else on the
        system clock, as OpenSSL judged it)."""
        dropped = self._peer_keys - self._pins()
        if dropped:
            return f"server key {sorted(dropped)[0]} is no longer in the pin set"
        if self._times is None:
            now: float | None = _time.time()
        else:
            t = self._times.time
            now = t.wall() if t.trusted else max(t.floor, self._times.issued_floor) or None
        if now is not None and now > self._valid_until:
            return f"the server's certificate chain expired at {_iso(self._valid_until)}"
        return None
