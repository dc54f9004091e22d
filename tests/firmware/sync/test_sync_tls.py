"""Only the real cloud: mutual TLS to the fleet CA, hostname, version floor, and SPKI pins checked after
verification. A recording TLS server shows, for each refusal, that not one byte of the request arrived."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trust import pki
from trust.errors import PinMismatch, PinUpdateRefused
from trust.tls import PinnedConnector, PinStore, client_context, server_context


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> pki.DevPkiPaths:
    return pki.ensure_dev_pki(tmp_path_factory.mktemp("pki"))


class RecordingServer:
    """A TLS server that records every application byte it receives, then answers 200."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.received = b""
        self.connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.received += data
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            if isinstance(e, asyncio.IncompleteReadError):
                self.received += e.partial
        finally:
            writer.close()

    async def run(self, client: ssl.SSLContext, pins: frozenset[str], host: str = "localhost") -> str:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx, ssl_handshake_timeout=5)
        port = server.sockets[0].getsockname()[1]
        try:
            conn = PinnedConnector(ssl_context=client, pins=lambda: pins)
            async with aiohttp.ClientSession(connector=conn) as s:
                # the URL names 127.0.0.1 only through the resolver: the hostname checked is `host`
                async with s.get(f"https://{host}:{port}/v1/ping", server_hostname=host,
                                 timeout=aiohttp.ClientTimeout(total=5)) as r:
                    return await r.text()
        finally:
            server.close()
            await server.wait_closed()


def _client(dev: pki.DevPkiPaths, min_version: str = "1.3") -> ssl.SSLContext:
    return client_context(dev.ca_cert, dev.device_cert, dev.device_key, min_version)


def _pins(dev: pki.DevPkiPaths) -> frozenset[str]:
    return PinStore(dev.pins, pki.root_public_b64(pki.load_root_key(dev.root_key))).pins()


def _server_with(tmp: Path, dev: pki.DevPkiPaths, *, key: pki.PrivateKey | None = None, names=("localhost",),
                 ca: tuple | None = None, now: dt.datetime | None = None, days: int = 30,
                 max_version: str | None = None) -> RecordingServer:
    ca_key, ca_cert = ca or (pki.load_key(dev.ca_key), pki.load_cert(dev.ca_cert))
    key = key or pki.make_key()
    cert = pki.issue_cert(ca_key, ca_cert, key.public_key(), "srv", now or pki.utcnow(), days, server_names=names)
    (tmp / "s.pem").write_bytes(pki.cert_pem(cert))
    (tmp / "s.key").write_bytes(pki.key_pem(key))
    return RecordingServer(server_context(tmp / "s.pem", tmp / "s.key", dev.ca_cert, max_version=max_version))


def test_pinned_server_receives_the_request(dev: pki.DevPkiPaths) -> None:
    srv = RecordingServer(server_context(dev.server_cert, dev.server_key, dev.ca_cert))
    assert asyncio.run(srv.run(_client(dev), _pins(dev))) == "ok"
    assert srv.received.startswith(b"GET /v1/ping")


def test_backup_pin_accepts_the_rotated_server_key(tmp_path: Path, dev: pki.DevPkiPaths) -> None:
    srv = _server_with(tmp_path, dev, key=pki.load_key(dev.server_backup_key))
    assert asyncio.run(srv.run(_client(dev), _pins(dev))) == "ok"


def test_fleet_signed_but_unpinned_key_is_closed_before_any_byte(tmp_path: Path, dev: pki.DevPkiPaths) -> None:
    srv = _server_with(tmp_path, dev)  # valid chain, valid hostname, fresh key not in the pin set
    with pytest.raises(PinMismatch):
        asyncio.run(srv.run(_client(dev), _pins(dev)))
    assert srv.connections == 1  # the handshake completed: the pin check came after normal verification
    assert srv.received == b""


@pytest.mark.parametrize("case", ["wrong_hostname", "unknown_ca", "expired", "below_floor"])
def test_refused_and_nothing_sent(case: str, tmp_path: Path, dev: pki.DevPkiPaths) -> None:
    key = pki.load_key(dev.server_key)  # a pinned key throughout: only the named defect is wrong
    if case == "wrong_hostname":
        srv = _server_with(tmp_path, dev, key=key, names=("cloud.other.example",))
    elif case == "unknown_ca":
        srv = _server_with(tmp_path, dev, key=key, ca=pki.make_ca("rogue CA", pki.utcnow()))
    elif case == "expired":
        srv = _server_with(tmp_path, dev, key=key, now=pki.utcnow() - dt.timedelta(days=40), days=30)
    else:
        srv = _server_with(tmp_path, dev, key=key, max_version="1.2")
    with pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(srv.run(_client(dev), _pins(dev)))
    assert srv.received == b""


def test_tls12_floor_is_configurable(tmp_path: Path, dev: pki.DevPkiPaths) -> None:
    srv = _server_with(tmp_path, dev, key=pki.load_key(dev.server_key), max_version="1.2")
    assert asyncio.run(srv.run(_client(dev, "1.2"), _pins(dev))) == "ok"


def test_pin_set_updates_only_from_the_fleet_root(tmp_path: Path, dev: pki.DevPkiPaths) -> None:
    root = pki.load_root_key(dev.root_key)
    path = tmp_path / "pins.json"
    path.write_bytes(dev.pins.read_bytes())
    store = PinStore(path, pki.root_public_b64(root))
    new_pins = [pki.spki_sha256(pki.make_key().public_key()) for _ in range(2)]
    with pytest.raises(PinUpdateRefused, match="signature"):
        store.update(pki.sign_pin_update(Ed25519PrivateKey.generate(), new_pins, 2, 0))
    with pytest.raises(PinUpdateRefused, match="not newer"):
        store.update(pki.sign_pin_update(root, new_pins, 1, 0))
    with pytest.raises(PinUpdateRefused, match="at least 2"):
        store.update(pki.sign_pin_update(root, new_pins[:1], 2, 0))
    edited = pki.sign_pin_update(root, new_pins, 2, 0)
    edited["payload"]["pins"] = sorted(new_pins[:1] + [pki.spki_sha256(pki.make_key().public_key())])
    with pytest.raises(PinUpdateRefused, match="signature"):
        store.update(edited)
    store.update(pki.sign_pin_update(root, new_pins, 2, 0))
    assert store.pins() == frozenset(new_pins)
    assert PinStore(path, pki.root_public_b64(root)).current.version == 2  # survived on disk


def test_device_csr_renewal_checks_subject(dev: pki.DevPkiPaths) -> None:
    ca_key, ca = pki.load_key(dev.ca_key), pki.load_cert(dev.ca_cert)
    key = pki.make_key()
    csr = pki.make_csr(key, "umbra-dev-0001")
    from cryptography.hazmat.primitives import serialization

    pem = csr.public_bytes(serialization.Encoding.PEM)
    cert = pki.sign_csr(ca_key, ca, pem, pki.utcnow(), expect_common_name="umbra-dev-0001")
    assert pki.spki_sha256(cert) == pki.spki_sha256(key.public_key())
    with pytest.raises(pki.PkiError, match="not for the authenticated device"):
        pki.sign_csr(ca_key, ca, pem, pki.utcnow(), expect_common_name="umbra-dev-0002")
