"""Installer authorizations: signed, short-lived tokens that unlock installer mode on one device.

The same form as the customer's sampling tokens (firmware.samples.authorization): `<payload>.<signature>`,
base64url without padding, the payload canonical JSON, Ed25519-signed. The payload is exactly
`{"device_id", "expires", "not_before", "schema", "token_id"}` with schema `umbra.installer-authorization/1`:
another schema than a sampling token's, so neither kind of token can stand in for the other. The signer is
the operator's installer authority (config `installer.authority_public_key`); a token is valid for at most
`installer.max_validity_s` (4 h at most). Every check, accepted or refused, is audited; the token itself is
never logged, only its id. Tokens are judged on the sensor's wall time, and refused (`time-untrusted`,
audited) while that time is not trusted (`trusted`, from hal.trustedtime): a clock a day behind would
otherwise take an expired token; the installer retries once NTP or the cloud gave the time."""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config.installer import InstallerConfig
from firmware.errors import InstallerRefused
from firmware.privacy.audit import AuditSink
from firmware.samples.authorization import MAX_TOKEN_CHARS, TOKEN_ID
from firmware.samples.authorization import SCHEMA as SAMPLING_SCHEMA
from trust.files import b64url, canonical, unb64url
from trust.keys import ed25519_public_key

SCHEMA = "umbra.installer-authorization/1"
FIELDS = frozenset({"device_id", "expires", "not_before", "schema", "token_id"})


@dataclass(frozen=True, slots=True)
class InstallerGrant:
    token_id: str
    device_id: str
    not_before: int
    expires: int

    def valid_at(self, t: float) -> bool:
        return self.not_before <= t < self.expires


def sign_installer_token(private_key: Ed25519PrivateKey, *, device_id: str, not_before: int, expires: int,
                         token_id: str) -> str:
    """Operator side: make an installer token (the device holds only the public key)."""
    payload = canonical({"schema": SCHEMA, "device_id": device_id, "not_before": int(not_before),
                         "expires": int(expires), "token_id": token_id})
    return f"{b64url(payload)}.{b64url(private_key.sign(payload))}"


class InstallerAuthorizer:
    """Verifies installer tokens for one device; audits every check (`installer_refused`,
    `installer_token_accepted`)."""

    def __init__(self, config: InstallerConfig, device_id: str, audit: AuditSink,
                 trusted: Callable[[], bool] | None = None) -> None:
        """`trusted`: whether the sensor's wall time may be relied on (None: always)."""
        config.validate()
        self.config, self.device_id, self._audit = config, device_id, audit
        self._trusted = trusted
        key = config.authority_public_key
        self._key = ed25519_public_key(key) if key else None

    def verify(self, token: str, now: float, remote: str = "") -> InstallerGrant:
        try:
            grant = self._check(token, now)
        except InstallerRefused as e:
            self.refuse(now, e.reason, e.detail, remote, _token_id_or_none(token))
            raise
        self._audit.append("installer_token_accepted", now, token_id=grant.token_id, expires=grant.expires,
                           remote=remote)
        return grant

    def refuse(self, now: float, reason: str, detail: str, remote: str = "", token_id: str | None = None) -> None:
        """Audits one refusal (a bad token, or a request without a valid session)."""
        self._audit.append("installer_refused", now, reason=reason, detail=detail, remote=remote,
                           claimed_token_id=token_id)

    def _check(self, token: str, now: float) -> InstallerGrant:
        payload, f = _parse(token)
        if self._trusted is not None and not self._trusted():
            raise InstallerRefused("time-untrusted", "the device's clock is not trusted yet (no NTP sync, no signed "
                                   "time from the cloud), so a token's validity cannot be judged; try again shortly")
        if self._key is None:
            raise InstallerRefused("no-authority-key", "no installer authority key is configured on this device")
        try:
            self._key.verify(unb64url(token.split(".")[1]), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            raise InstallerRefused("bad-signature", "the signature does not match the installer authority's "
                                   "key (altered or foreign token)") from None
        if f["device_id"] != self.device_id:
            raise InstallerRefused("wrong-device", f"issued for device {f['device_id']!r}, not this one")
        if f["expires"] <= f["not_before"]:
            raise InstallerRefused("empty", "expires is not after not_before")
        if f["expires"] - f["not_before"] > self.config.max_validity_s:
            raise InstallerRefused("too-long", f"valid longer than {self.config.max_validity_s} s")
        if now < f["not_before"]:
            raise InstallerRefused("not-yet-valid", f"valid from {f['not_before']}, now is {int(now)}")
        if now >= f["expires"]:
            raise InstallerRefused("expired", f"expired at {f['expires']}, now is {int(now)}")
        return InstallerGrant(f["token_id"], f["device_id"], f["not_before"], f["expires"])


def _parse(token: str) -> tuple[bytes, dict[str, Any]]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise InstallerRefused("malformed", "a token is '<payload>.<signature>' in base64url")
    try:
        payload = unb64url(token.split(".")[0])
        fields = json.loads(payload.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InstallerRefused("malformed", "the payload is not base64url JSON") from None
    if isinstance(fields, dict) and fields.get("schema") == SAMPLING_SCHEMA:
        raise InstallerRefused("wrong-purpose", "this is a sampling authorization; installer mode needs an "
                               "installer authorization")
    if not isinstance(fields, dict) or set(fields) != FIELDS or fields.get("schema") != SCHEMA:
        raise InstallerRefused("malformed", f"the payload must hold exactly {sorted(FIELDS)} ({SCHEMA})")
    ok = (isinstance(fields["device_id"], str) and isinstance(fields["token_id"], str)
          and all(type(fields[k]) is int for k in ("not_before", "expires")))
    if not ok or not TOKEN_ID.fullmatch(fields["token_id"]):
        raise InstallerRefused("malformed", "device_id and token_id are strings (token_id 1 to 64 of A-Z a-z "
                               "0-9 . _ -), times whole seconds")
    if canonical(fields) != payload:
        raise InstallerRefused("malformed", "the payload is not in canonical form")
    return payload, fields


def _token_id_or_none(token: str) -> str | None:
    try:
        return _parse(token)[1]["token_id"]
    except InstallerRefused:
        return None
