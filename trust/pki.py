"""Certificates for the fleet, on `cryptography`: a private CA, server and device certificates, CSRs made on
the device, SPKI pins, and the Ed25519 fleet root key that signs pin-set updates.

Everything takes `now` (a timezone-aware datetime) so tests make expired or not-yet-valid certificates
without touching a clock. Keys are ECDSA P-256 (small, fast on a Pi); PEM files are written atomically and
private keys with mode 0600. Reused by provisioning (device certificate at the factory) and OTA (the same
CA and pins for the repository server).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trust.errors import PkiError
from trust.files import canonical, write_atomic

PrivateKey = ec.EllipticCurvePrivateKey


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key (made where it is used: it never leaves that machine)."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, org: str = "Umbra fleet") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str, now: dt.datetime, days: int = 3650) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed CA (path length 0: it signs leaves only)."""
    key = make_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def issue_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: Any,
    common_name: str,
    now: dt.datetime,
    days: int = 90,
    *,
    server_names: Iterable[str] = (),
    client: bool = False,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A leaf certificate for `public_key`: a server one (with `server_names` as SANs) or a client one."""
    names = list(server_names)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if names else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if not usages:
        raise PkiError("issue_cert: give server_names for a server certificate or client=True for a device one")
    start = not_before if not_before is not None else now - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        b = b.add_extension(_san(names), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def make_csr(key: PrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    """A CSR for the device's own key (the renewal path: the key is made on the device)."""
    return x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(key, hashes.SHA256())


def sign_csr(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    now: dt.datetime,
    days: int = 90,
    *,
    expect_common_name: str | None = None,
) -> x509.Certificate:
    """Issue a client certificate from a PEM CSR, after checking its self-signature (and its subject)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PkiError(f"CSR is not a PEM certificate request: {e}") from e
    if not csr.is_signature_valid:
        raise PkiError("CSR signature does not verify (it was not made with the key it carries)")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if expect_common_name is not None and cn != expect_common_name:
        raise PkiError(f"CSR is for {cn!r}, not for the authenticated device {expect_common_name!r}")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise PkiError("CSR key must be an EC key")
    return issue_cert(ca_key, ca_cert, csr.public_key(), cn, now, days, client=True)


def spki_sha256(obj: x509.Certificate | Any) -> str:
    """The pin of a certificate or public key: base64(sha256(DER SubjectPublicKeyInfo)), as in HPKP/curl."""
    pub = obj.public_key() if isinstance(obj, x509.Certificate) else obj
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def spki_sha256_der_cert(der: bytes) -> str:
    return spki_sha256(x509.load_der_x509_certificate(der))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise PkiError(f"cannot read certificate {path}: {e}") from e


def load_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise PkiError(f"cannot read private key {path}: {e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: expected an EC private key")
    return key


# --- the fleet root key and signed pin sets ------------------------------------------------------------------

PINS_SCHEMA = "umbra.pins/1"


def sign_pin_update(root_key: Ed25519PrivateKey, pins: Iterable[str], version: int, issued: int) -> dict[str, Any]:
    """A pin-set update message `{"payload": {...}, "signature": b64}` signed by the fleet root key."""
    payload = {"schema": PINS_SCHEMA, "version": int(version), "issued": int(issued), "pins": sorted(set(pins))}
    sig = root_key.sign(canonical(payload))
    return {"payload": payload, "signature": base64.b64encode(sig).decode("ascii")}


def root_public_b64(root_key: Ed25519PrivateKey) -> str:
    raw = root_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_root_public(b64: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except ValueError as e:
        raise PkiError(f"fleet root public key is not base64 of 32 raw Ed25519 bytes: {e}") from e


# --- a development PKI on disk (the reference cloud makes one on first start) --------------------------------


@dataclass(frozen=True, slots=True)
class DevPkiPaths:
    """Where `ensure_dev_pki` puts things. `server_backup.key` is the key the backup pin names."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def server_backup_key(self) -> Path:
        return self.root / "server_backup.key"

    @property
    def device_cert(self) -> Path:
        return self.root / "device.pem"

    @property
    def device_key(self) -> Path:
        return self.root / "device.key"

    @property
    def root_key(self) -> Path:
        return self.root / "fleet_root.key"

    @property
    def pins(self) -> Path:
        return self.root / "pins.json"


def ensure_dev_pki(root: Path, hostnames: Iterable[str] = ("localhost", "127.0.0.1"),
                   device_id: str = "umbra-dev-0001", now: dt.datetime | None = None) -> DevPkiPaths:
    """Make (once) a development CA, a server certificate, a backup server key, a device certificate,
    an Ed25519 fleet root key and a signed pin set {server, backup}. Existing files are kept."""
    p = DevPkiPaths(Path(root))
    if p.pins.exists() and p.device_cert.exists():
        return p
    now = now or utcnow()
    ca_key, ca = make_ca("Umbra development fleet CA", now)
    srv_key, backup_key, dev_key = make_key(), make_key(), make_key()
    srv = issue_cert(ca_key, ca, srv_key.public_key(), "umbra-cloud", now, 825, server_names=hostnames)
    dev = issue_cert(ca_key, ca, dev_key.public_key(), device_id, now, 90, client=True)
    root_key = Ed25519PrivateKey.generate()
    pins = sign_pin_update(root_key, [spki_sha256(srv_key.public_key()), spki_sha256(backup_key.public_key())],
                           1, int(now.timestamp()))
    raw_root = root_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    for path, data, private in ((p.ca_key, key_pem(ca_key), True), (p.ca_cert, cert_pem(ca), False),
                                (p.server_key, key_pem(srv_key), True), (p.server_cert, cert_pem(srv), False),
                                (p.server_backup_key, key_pem(backup_key), True),
                                (p.device_key, key_pem(dev_key), True), (p.device_cert, cert_pem(dev), False),
                                (p.root_key, raw_root, True), (p.pins, canonical(pins), False)):
        write_atomic(path, data, private)
    return p


def load_root_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PkiError(f"{path}: expected the Ed25519 fleet root key")
    return key


def pins_message(path: Path) -> Mapping[str, Any]:
    return json.loads(Path(path).read_bytes())
