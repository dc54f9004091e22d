"""The device key as the audit log's head signer, and the checks that go with it.

The device's private key is made on the device (provisioning) and never leaves it; the running sensor holds
it as its mutual-TLS client key (`[sync.tls] key_file`, ECDSA P-256 in PKCS#8 PEM; an Ed25519 key works the
same). `KeyFileSigner` signs the audit head with it and reloads it when the file is replaced, because
certificate renewal rotates the key (`firmware.sync.uploader.install_renewal`). The public half travels as base64
of its DER SubjectPublicKeyInfo (`key_b64`), and a verifier gets it from the device certificate
(`public_key_from_cert`) or as base64 (`public_key_from_b64`: that SPKI form, or the raw 32 bytes of an
Ed25519 key).

Signature algorithms: `ecdsa-p256-sha256` (DER signature) and `ed25519`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trust.errors import DeviceKeyError

log = logging.getLogger(__name__)
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey  # the kinds of device key

ALG_ECDSA = "ecdsa-p256-sha256"
ALG_ED25519 = "ed25519"


def key_b64(public_key: PublicKey) -> str:
    """Base64 of the DER SubjectPublicKeyInfo of a public key (how the audit log names a signing key)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def alg_of(public_key: PublicKey) -> str:
    if isinstance(public_key, Ed25519PublicKey):
        return ALG_ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        return ALG_ECDSA
    raise DeviceKeyError(f"unsupported key type {type(public_key).__name__}: use ECDSA P-256 or Ed25519")


def _supported(key: PublicKeyTypes) -> PublicKey:
    if isinstance(key, Ed25519PublicKey) or (isinstance(key, ec.EllipticCurvePublicKey)
                                             and key.curve.name == "secp256r1"):
        return key
    raise DeviceKeyError(f"unsupported key type {type(key).__name__}: use ECDSA P-256 or Ed25519")


def public_key_from_b64(b64: str) -> PublicKey:
    """A public key from base64: the raw 32 bytes of an Ed25519 key, or a DER SubjectPublicKeyInfo."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DeviceKeyError("the public key is not base64") from None
    try:
        key = Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else serialization.load_der_public_key(raw)
    except ValueError as e:
        raise DeviceKeyError(f"the public key is neither raw Ed25519 nor DER SubjectPublicKeyInfo: {e}") from None
    return _supported(key)


def public_key_from_cert(path: str | os.PathLike[str]) -> PublicKey:
    """The public key of a PEM certificate (the device certificate)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise DeviceKeyError(f"cannot read the certificate {path}: {e}") from None
    return _supported(cert.public_key())


def signature_ok(public_key: PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` over `message` verifies with `public_key` (ECDSA P-256/SHA-256 or Ed25519)."""
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, message)
        else:
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class KeyFileSigner:
    """Signs with the private key in a PEM file, re-read whenever the file is replaced (a renewal). The key
    is read on the device and used there; nothing here writes or sends it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._key: Any = None
        self._public_b64 = ""
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            if self._key is not None:  # mid-renewal or gone: keep signing with the key we hold
                log.warning("device key %s unreadable (%s); signing with the one loaded before", self.path, e)
                return
            raise DeviceKeyError(f"cannot read the device key {self.path}: {e}") from None
        if not isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise DeviceKeyError(f"{self.path}: the device key must be ECDSA P-256 or Ed25519")
        alg_of(key.public_key())
        self._key, self._stamp, self._public_b64 = key, stamp, key_b64(key.public_key())

    @property
    def alg(self) -> str:
        return alg_of(self._key.public_key())

    def public_key_b64(self) -> str:
        """The current key's public half (base64 DER SPKI), after a check that the file was not replaced."""
        self._load()
        return self._public_b64

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, Ed25519PrivateKey):
            return self._key.sign(message)
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))


def device_signer(key_file: str, audit_path: Any = None) -> KeyFileSigner | None:
    """The head signer of a running sensor: its TLS client key when that file exists, else None (the log then
    runs unsigned, and this says so once)."""
    if key_file and Path(key_file).is_file():
        return KeyFileSigner(key_file)
    log.warning("audit log %s: no device key at %r, so its head is NOT signed (truncation or a rewritten log "
                "cannot be proven against the device certificate)", audit_path or "", key_file)
    return None
