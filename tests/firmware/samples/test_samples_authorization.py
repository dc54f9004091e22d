"""Customer-signed sampling authorizations: accepted only when genuine, for this device, in time; audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config.samples import AuthorizationConfig
from firmware.errors import AuthorizationRefused
from firmware.privacy import audit
from firmware.samples.authorization import Authorizer, public_key_b64, sign_token
from trust.files import b64url as _b64e
from trust.files import unb64url as _b64d

NOW = 1_800_000_000


@pytest.fixture()
def setup(tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    cfg = AuthorizationConfig(customer_public_key=public_key_b64(key), revoked_token_ids=("tok-revoked",))
    return key, log, Authorizer(cfg, "dev-1", log), tmp_path / "audit.jsonl"


def _token(key, **over) -> str:
    fields = dict(device_id="dev-1", rate_per_hour=6, not_before=NOW - 60, expires=NOW + 86400, token_id="tok-1")
    fields.update(over)
    return sign_token(key, **fields)


def test_valid_token_is_accepted_and_audited(setup) -> None:
    key, log, auth, path = setup
    grant = auth.verify(_token(key), NOW)
    assert grant.rate_per_hour == 6 and grant.valid_at(NOW) and not grant.valid_at(NOW + 86400)
    auth.record_use(grant, NOW + 5)
    events = [e for e in path.read_text().splitlines()]
    assert '"authorization_accepted"' in events[0] and '"authorization_used"' in events[1]
    assert audit.verify(path).ok


def _tampered(key) -> str:
    payload, sig = _token(key).split(".")
    raw = _b64d(payload).replace(b'"rate_per_hour":6', b'"rate_per_hour":9')
    return f"{_b64e(raw)}.{sig}"


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda k: _token(k, device_id="dev-2"), "wrong-device"),
        (lambda k: _token(k, expires=NOW - 1, not_before=NOW - 100), "expired"),
        (lambda k: _token(k, not_before=NOW + 10), "not-yet-valid"),
        (lambda k: _token(Ed25519PrivateKey.generate()), "bad-signature"),
        (_tampered, "bad-signature"),
        (lambda k: _token(k, rate_per_hour=100), "rate-out-of-range"),
        (lambda k: _token(k, token_id="tok-revoked"), "revoked"),
        (lambda k: _token(k, expires=NOW + 400 * 86400), "too-long"),
        (lambda k: "not-a-token", "malformed"),
        (lambda k: _token(k) + "x.y", "malformed"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason_and_audited(setup, make, reason: str) -> None:
    key, log, auth, path = setup
    with pytest.raises(AuthorizationRefused) as info:
        auth.verify(make(key), NOW)
    assert info.value.reason == reason
    text = path.read_text()
    assert '"authorization_refused"' in text and f'"reason":"{reason}"' in text
    assert _token(key) not in text  # the token itself is never written


def test_device_without_customer_key_refuses_everything(tmp_path: Path) -> None:
    auth = Authorizer(AuthorizationConfig(), "dev-1", audit.AuditLog(tmp_path / "a.jsonl"))
    with pytest.raises(AuthorizationRefused) as info:
        auth.verify(_token(Ed25519PrivateKey.generate()), NOW)
    assert info.value.reason == "no-customer-key"


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="customer_public_key"):
        AuthorizationConfig(customer_public_key="AAAA").validate()
    with pytest.raises(ValueError, match="max_rate_per_hour"):
        AuthorizationConfig(max_rate_per_hour=0).validate()
