"""Every certificate of the chain a server presents is judged on the device's trusted time, the intermediates
too: a real TLS server on 127.0.0.1 serves leaf + intermediate under a root that is the device's only anchor,
and the intermediate alone is expired (or not yet valid) at the trusted time. Before, only the leaf and the
CA file's issuers were checked (Python 3.11 has no public get_verified_chain), so such a chain was accepted."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from trust import pki
from trust.errors import CertTimeRefused
from trust.tls import PinnedConnector, device_context, peer_chain

DAY = 86_400.0


class Time:
    def __init__(self, wall: float, trusted: bool, floor: float = 0.0) -> None:
        self._wall, self.trusted, self.floor = wall, trusted, floor

    def wall(self) -> float:
        return self._wall


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _ca(name: str, not_before: float, not_after: float, issuer=None, issuer_key=None, path_length=None):
    """A CA certificate: self-signed (a root) without `issuer`, else issued by it."""
    key = pki.make_key()
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    signer = issuer_key if issuer_key is not None else key
    cert = (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(issuer.subject if issuer is not None else subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_utc(not_before))
            .not_valid_after(_utc(not_after))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
            .sign(signer, hashes.SHA256()))
    return key, cert


def _server_files(tmp: Path, inter_from: float, inter_to: float) -> tuple[Path, Path, Path, str]:
    """A root (the device's CA file), an intermediate valid from `inter_from` to `inter_to`, and a leaf for
    127.0.0.1 valid for a year around now; returns (CA file, chain file: leaf then intermediate, key, pin)."""
    now = time.time()
    root_key, root = _ca("Umbra test root", now - 400 * DAY, now + 4000 * DAY)
    inter_key, inter = _ca("Umbra test intermediate", inter_from, inter_to, root, root_key, path_length=0)
    leaf_key = pki.make_key()
    leaf = pki.issue_cert(inter_key, inter, leaf_key.public_key(), "umbra-cloud", _utc(now + 180 * DAY), 0,
                          server_names=("127.0.0.1", "localhost"), not_before=_utc(now - 180 * DAY))
    ca, chain, key = tmp / "ca.pem", tmp / "chain.pem", tmp / "server.key"
    ca.write_bytes(pki.cert_pem(root))
    chain.write_bytes(pki.cert_pem(leaf) + pki.cert_pem(inter))
    key.write_bytes(pki.key_pem(leaf_key))
    return ca, chain, key, pki.spki_sha256(leaf)


def _device(tmp: Path, ca: Path, t: Time):
    dev = pki.ensure_dev_pki(tmp / "dev")  # the device's own certificate and key (the server asks for none)
    return device_context(ca, dev.device_cert, dev.device_key, "1.2", t)


async def _get(tmp: Path, inter_from: float, inter_to: float, t: Time) -> tuple[str | None, int]:
    ca, chain, key, pin = _server_files(tmp, inter_from, inter_to)
    server_ctx = pki_server_context(chain, key)
    app = web.Application()
    app.router.add_get("/", _ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ctx, times = _device(tmp, ca, t)
    conn = PinnedConnector(ssl_context=ctx, pins=lambda: frozenset({pin}), cert_times=times)
    try:
        async with aiohttp.ClientSession(connector=conn) as s, s.get(f"https://127.0.0.1:{port}/") as r:
            return await r.text(), times.refused
    except CertTimeRefused as e:
        return f"refused: {e}", times.refused
    finally:
        await runner.cleanup()


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def pki_server_context(chain: Path, key: Path):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    return ctx


def test_a_valid_chain_with_an_intermediate_is_used(tmp_path: Path) -> None:
    now = time.time()
    text, refused = asyncio.run(_get(tmp_path, now - 100 * DAY, now + 100 * DAY, Time(now, True)))
    assert text == "ok" and refused == 0


def test_an_intermediate_expired_at_the_trusted_time_is_refused(tmp_path: Path) -> None:
    now = time.time()
    text, refused = asyncio.run(_get(tmp_path, now - 300 * DAY, now - DAY, Time(now, True)))
    assert text is not None and text.startswith("refused") and "intermediate" in text and "expired" in text
    assert refused == 1


def test_an_intermediate_not_yet_valid_at_the_trusted_time_is_refused(tmp_path: Path) -> None:
    """The system clock (OpenSSL's) would call it valid: the device's trusted time is two days behind it."""
    now = time.time()
    text, refused = asyncio.run(_get(tmp_path, now - DAY, now + 300 * DAY, Time(now - 2 * DAY, True)))
    assert text is not None and text.startswith("refused") and "intermediate" in text and "not valid before" in text
    assert refused == 1


def test_untrusted_an_intermediate_dead_before_the_last_trusted_time_is_refused(tmp_path: Path) -> None:
    now = time.time()
    text, _ = asyncio.run(_get(tmp_path, now - 300 * DAY, now - 10 * DAY, Time(now - 30 * DAY, False, floor=now)))
    assert text is not None and "intermediate" in text and "before the last trusted time" in text


def test_the_ota_client_side_sees_the_same_chain(tmp_path: Path) -> None:
    """http.client's SSLSocket (the OTA fetcher's) gives the whole verified chain too."""
    now = time.time()
    ca, chain, key, _ = _server_files(tmp_path, now - 300 * DAY, now - DAY)

    async def main() -> list[bytes]:
        app = web.Application()
        app.router.add_get("/", _ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki_server_context(chain, key))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ctx, times = _device(tmp_path, ca, Time(now, True))

        def connect() -> list[bytes]:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            c.connect()
            try:
                got = peer_chain(c.sock)
                with pytest.raises(CertTimeRefused, match="intermediate.*expired"):
                    times.check(c.sock.getpeercert(binary_form=True), got)  # type: ignore[union-attr]
                return got
            finally:
                c.close()

        try:
            return await asyncio.to_thread(connect)
        finally:
            await runner.cleanup()

    got = asyncio.run(main())
    subjects = [x509.load_der_x509_certificate(d).subject.rfc4514_string() for d in got]
    assert len(got) == 3 and "intermediate" in subjects[1] and "root" in subjects[2]
    assert got[0] == x509.load_pem_x509_certificates(chain.read_bytes())[0].public_bytes(Encoding.DER)
