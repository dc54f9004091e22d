"""Batch-signing keys: the device's key ring, and the HMAC-SHA256 signature both sides compute.

A batch request carries `X-Umbra-Key-Id`, `X-Umbra-Timestamp` (whole Unix seconds), `X-Umbra-Nonce` (fresh
random per send) and `X-Umbra-Signature`: hex HMAC-SHA256, with the key named by the id, over the canonical
string

    umbra-batch/1 \\n METHOD \\n PATH \\n device id \\n key id \\n timestamp \\n nonce \\n sha256-hex(body as sent)

The cloud refuses an unknown or expired key, a timestamp outside its replay window, a nonce it has seen in
that window (a replay) and any edit of the body (the digest changes). A device resending an unacknowledged
batch signs it afresh (new timestamp and nonce); the cloud then drops it as a duplicate by batch id.

Keys rotate: the cloud sends the next key over the mutually authenticated channel before the current one
expires; the ring keeps both during the overlap, signs with the newest valid key, and forgets expired ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trust.errors import NoUsableKey, SigningKeyError
from trust.files import write_atomic

log = logging.getLogger(__name__)

SIG_VERSION = "umbra-batch/1"
H_KEY, H_TS, H_NONCE, H_SIG = "X-Umbra-Key-Id", "X-Umbra-Timestamp", "X-Umbra-Nonce", "X-Umbra-Signature"
MAX_RING_FILE = 65_536


@dataclass(frozen=True, slots=True)
class BatchKey:
    key_id: str
    secret: bytes
    not_before: int
    expires: int

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now < self.expires

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "secret": base64.b64encode(self.secret).decode("ascii"),
                "not_before": self.not_before, "expires": self.expires}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchKey:
        try:
            key = cls(str(d["key_id"]), base64.b64decode(d["secret"], validate=True), int(d["not_before"]),
                      int(d["expires"]))
        except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as e:  # Overflow: an infinite time
            raise SigningKeyError(f"malformed key message: {e!r}") from e
        if len(key.secret) < 32 or not 1 <= len(key.key_id) <= 64 or key.expires <= key.not_before:
            raise SigningKeyError("key message: secret under 32 bytes, bad key id, or expires before not_before")
        return key

    @classmethod
    def generate(cls, now: float, lifetime_s: int) -> BatchKey:
        return cls(secrets.token_hex(8), secrets.token_bytes(32), int(now), int(now) + int(lifetime_s))

    def __repr__(self) -> str:  # never print the secret
        return f"BatchKey({self.key_id!r}, not_before={self.not_before}, expires={self.expires})"


def string_to_sign(method: str, path: str, device_id: str, key_id: str, ts: int, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((SIG_VERSION, method.upper(), path, device_id, key_id, str(ts), nonce, digest)).encode()


def signature(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_headers(key: BatchKey, method: str, path: str, device_id: str, body: bytes, now: float,
                 nonce: str | None = None) -> dict[str, str]:
    ts = int(now)
    nonce = nonce or secrets.token_hex(16)
    sig = signature(key.secret, string_to_sign(method, path, device_id, key.key_id, ts, nonce, body))
    return {H_KEY: key.key_id, H_TS: str(ts), H_NONCE: nonce, H_SIG: sig}


def signature_ok(key: BatchKey, headers: Mapping[str, str], method: str, path: str, device_id: str,
                 body: bytes) -> bool:
    try:
        ts = int(headers[H_TS])
        msg = string_to_sign(method, path, device_id, key.key_id, ts, headers[H_NONCE], body)
        return hmac.compare_digest(signature(key.secret, msg), headers[H_SIG])
    except (KeyError, ValueError, TypeError):
        return False


class KeyRing:
    """The device's signing keys, file-backed (atomic replace, mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._keys: dict[str, BatchKey] = {}
        if self.path.exists():
            try:
                with open(self.path, "rb") as f:
                    raw = f.read(MAX_RING_FILE + 1)
                if len(raw) > MAX_RING_FILE:
                    raise SigningKeyError(f"key ring {self.path} is too large")
                for d in json.loads(raw)["keys"]:
                    k = BatchKey.from_json(d)
                    self._keys[k.key_id] = k
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # Recursion: nested past json
                raise SigningKeyError(f"cannot read the key ring {self.path}: {e!r}") from e

    def keys(self) -> list[BatchKey]:
        return sorted(self._keys.values(), key=lambda k: (k.not_before, k.expires))

    def add(self, key: BatchKey, now: float) -> None:
        """Keep `key` (a rotation); forget keys that have expired. Persisted before returning."""
        self._keys[key.key_id] = key
        self._keys = {k.key_id: k for k in self._keys.values() if k.expires > now}
        write_atomic(self.path, json.dumps({"keys": [k.to_json() for k in self.keys()]}).encode(), private=True)
        log.info("signing key added", extra={"key_id": key.key_id, "expires": key.expires})

    def current(self, now: float) -> BatchKey:
        """The newest key valid now; raises NoUsableKey when none is (ask the cloud for one)."""
        valid = [k for k in self.keys() if k.valid_at(now)]
        if not valid:
            raise NoUsableKey("no valid signing key: fetch one from the cloud (/v1/keys/next)")
        return valid[-1]

    def needs_next(self, now: float, lead_s: float) -> bool:
        """True when no key will still be valid `lead_s` seconds from now."""
        return not any(k.valid_at(now) and k.expires > now + lead_s for k in self._keys.values())


def ed25519_public_key(b64: str) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key from its base64; ValueError says what is wrong."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)
