"""Customer-signed sampling authorizations: the only way to raise the sample-image rate above the default.

A token is `<payload>.<signature>`, both base64url without padding. The payload is canonical JSON
(sorted keys, no spaces, UTF-8) of exactly
`{"device_id", "expires", "not_before", "rate_per_hour", "schema", "token_id"}` (times in whole Unix
seconds), and the signature is Ed25519 by the customer's key over those payload bytes. The device holds only
the customer's public key (config `authorization.customer_public_key`, base64 of the raw 32 bytes).

`Authorizer.verify(token, now)` returns a `Grant` or raises `AuthorizationRefused` whose `reason` says why
(malformed, bad signature, wrong device, not yet valid, expired, empty, too long, rate out of range,
revoked). Every check,
accepted or refused, is written to the privacy audit log; so is every use (`Authorizer.record_use`).
Tokens are never logged: only their `token_id`. Intake, storage on the device and the `umbra samples`
commands are in `firmware.samples.grantstore` and `firmware.cli.samples`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware.config.samples import AuthorizationConfig
from firmware.errors import AuthorizationRefused
from firmware.privacy.audit import AuditSink
from trust.files import b64url, canonical, unb64url
from trust.keys import ed25519_public_key

log = logging.getLogger(__name__)

SCHEMA = "umbra.sampling-authorization/1"
FIELDS = frozenset({"device_id", "expires", "not_before", "rate_per_hour", "schema", "token_id"})
MAX_TOKEN_CHARS = 2048
TOKEN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class Grant:
    """A verified authorization: `rate_per_hour` samples per hour in [not_before, expires)."""

    token_id: str
    device_id: str
    rate_per_hour: int
    not_before: int
    expires: int

    def valid_at(self, t: float) -> bool:
        return self.not_before <= t < self.expires


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    """The config value for a customer's key pair (for the customer's tooling and tests)."""

    return base64.b64encode(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def sign_token(private_key: Ed25519PrivateKey, *, device_id: str, rate_per_hour: int, not_before: int,
               expires: int, token_id: str) -> str:
    """Customer side: make a token. The device never holds a private key of the customer's."""
    payload = canonical({
        "schema": SCHEMA, "device_id": device_id, "rate_per_hour": int(rate_per_hour),
        "not_before": int(not_before), "expires": int(expires), "token_id": token_id,
    })
    return f"{b64url(payload)}.{b64url(private_key.sign(payload))}"


class Authorizer:
    """Verifies tokens for one device and audits every check and use."""

    def __init__(self, config: AuthorizationConfig, device_id: str, audit: AuditSink,
                 revoked: Collection[str] = ()) -> None:
        """`revoked`: token ids withdrawn on the device (`umbra samples revoke`), beside the config's."""
        config.validate()
        self.config = config
        self.device_id = device_id
        self._audit = audit
        self._revoked = frozenset(config.revoked_token_ids) | frozenset(revoked)
        self._key = ed25519_public_key(config.customer_public_key) if config.customer_public_key else None

    def verify(self, token: str, now: float, *, accept_future: bool = False, revoked: Collection[str] = ()) -> Grant:
        """The grant a token carries, valid at `now` (or, with `accept_future`, from a later not_before: a
        customer may authorize ahead); raises AuthorizationRefused (audited) otherwise. `revoked`: ids withdrawn
        since this Authorizer was made (the token store's, read under its lock), refused as well."""
        try:
            grant = self._check(token, now, accept_future, frozenset(revoked))
        except AuthorizationRefused as e:
            self._audit.append("authorization_refused", now, reason=e.reason, detail=e.detail,
                               claimed_token_id=_token_id_or_none(token))
            log.warning("sampling authorization refused: %s", e.reason)
            raise
        self._audit.append("authorization_accepted", now, token_id=grant.token_id,
                           rate_per_hour=grant.rate_per_hour, not_before=grant.not_before,
                           expires=grant.expires)
        return grant

    def record_use(self, grant: Grant, now: float, purpose: str = "sample") -> None:
        """Audits one use of a grant (each sample taken above the default rate)."""
        self._audit.append("authorization_used", now, token_id=grant.token_id, purpose=purpose,
                           rate_per_hour=grant.rate_per_hour, expires=grant.expires)

    def _check(self, token: str, now: float, accept_future: bool, revoked: frozenset[str]) -> Grant:
        payload, fields = _parse(token)
        if self._key is None:
            raise AuthorizationRefused("no-customer-key", "no customer public key is configured on this device")
        try:
            self._key.verify(unb64url(token.split(".")[1]), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            raise AuthorizationRefused(
                "bad-signature", "the signature does not match the customer's key (altered or foreign token)"
            ) from None
        return self._check_fields(fields, now, accept_future, revoked)

    def _check_fields(self, f: Mapping[str, Any], now: float, accept_future: bool,
                      revoked: frozenset[str]) -> Grant:
        if f["device_id"] != self.device_id:
            raise AuthorizationRefused("wrong-device", f"issued for device {f['device_id']!r}, not this one")
        if f["token_id"] in self._revoked or f["token_id"] in revoked:
            raise AuthorizationRefused("revoked", f"token {f['token_id']!r} was revoked by the customer")
        if f["expires"] <= f["not_before"]:
            raise AuthorizationRefused("empty", f"expires ({f['expires']}) is not after not_before ({f['not_before']})")
        if now < f["not_before"] and not accept_future:
            raise AuthorizationRefused("not-yet-valid", f"valid from {f['not_before']}, now is {int(now)}")
        if now >= f["expires"]:
            raise AuthorizationRefused("expired", f"expired at {f['expires']}, now is {int(now)}")
        if f["expires"] - f["not_before"] > self.config.max_validity_days * 86400:
            raise AuthorizationRefused("too-long", f"valid longer than {self.config.max_validity_days} days")
        if not 1 <= f["rate_per_hour"] <= self.config.max_rate_per_hour:
            raise AuthorizationRefused(
                "rate-out-of-range", f"rate {f['rate_per_hour']} outside 1 to {self.config.max_rate_per_hour}"
            )
        return Grant(f["token_id"], f["device_id"], f["rate_per_hour"], f["not_before"], f["expires"])


def _parse(token: str) -> tuple[bytes, dict[str, Any]]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise AuthorizationRefused("malformed", "a token is '<payload>.<signature>' in base64url")
    try:
        payload = unb64url(token.split(".")[0])
        fields = json.loads(payload.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthorizationRefused("malformed", "the payload is not base64url JSON") from None
    if not isinstance(fields, dict) or set(fields) != FIELDS or fields.get("schema") != SCHEMA:
        raise AuthorizationRefused("malformed", f"the payload must hold exactly {sorted(FIELDS)} ({SCHEMA})")
    types_ok = (
        isinstance(fields["device_id"], str) and isinstance(fields["token_id"], str)
        and all(type(fields[k]) is int for k in ("rate_per_hour", "not_before", "expires"))
    )
    if not types_ok:
        raise AuthorizationRefused("malformed", "device_id and token_id are strings; rate and times integers")
    if not TOKEN_ID.fullmatch(fields["token_id"]):
        raise AuthorizationRefused("malformed", "token_id: 1 to 64 letters, digits, '.', '_' or '-'")
    if canonical(fields) != payload:
        raise AuthorizationRefused("malformed", "the payload is not in canonical form")
    return payload, fields


def _token_id_or_none(token: str) -> str | None:
    try:
        return _parse(token)[1]["token_id"]
    except AuthorizationRefused:
        return None
