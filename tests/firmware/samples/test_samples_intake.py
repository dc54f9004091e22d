"""Customer sampling tokens from the customer's key to the running sensor: `umbra samples keygen`,
`sign-token`, `authorize` (verified, stored atomically, refused with a reason and nothing changed), `list`,
`revoke`; the stored grants re-verified on load (expired dropped, audited) and used by the scheduler."""

from __future__ import annotations

import json
import random
import stat
from dataclasses import asdict
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli.main import main
from firmware.cli.samples import load_customer_key
from firmware.config import load, to_toml
from firmware.config.samples import AuthorizationConfig, SamplesConfig
from firmware.errors import AuthorizationRefused
from firmware.privacy import audit
from firmware.samples.authorization import public_key_b64, sign_token
from firmware.samples.grantstore import (
    GrantRefresher,
    TokenStore,
    accept,
    authorizer_for,
    load_grants,
    revoke,
    store_for,
)
from firmware.samples.taking import SampleScheduler

T0 = 1_800_000_000 - (1_800_000_000 % 3600)  # an hour boundary
DEV = "shop-7"


def _config(tmp_path: Path, customer_key: str, **auth) -> Path:
    table = {
        "device": {"id": DEV, "state_dir": str(tmp_path / "state")},
        "privacy": {"audit_file": str(tmp_path / "audit.jsonl"), "budget_file": str(tmp_path / "budget.sqlite")},
        "authorization": {"customer_public_key": customer_key, **auth},
    }
    path = tmp_path / "umbra.toml"
    path.write_text(to_toml(table))
    return path


def _events(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_customer_to_device_through_the_commands(tmp_path: Path, capsys) -> None:
    assert main(["samples", "keygen", "--out", str(tmp_path / "customer.pem")]) == 0
    out = capsys.readouterr().out
    pub = out.split('customer_public_key = "')[1].split('"')[0]
    assert pub == public_key_b64(load_customer_key(tmp_path / "customer.pem"))
    assert stat.S_IMODE((tmp_path / "customer.pem").stat().st_mode) == 0o600
    assert main(["samples", "keygen", "--out", str(tmp_path / "customer.pem")]) == 2  # never overwritten
    cfg = _config(tmp_path, pub)
    assert main(["samples", "sign-token", "--key", str(tmp_path / "customer.pem"), "--device", DEV, "--rate", "4",
                 "--days", "7", "--token-id", "campaign-1", "--out", str(tmp_path / "token.txt")]) == 0
    capsys.readouterr()
    assert main(["samples", "authorize", "--config", str(cfg), str(tmp_path / "token.txt")]) == 0
    assert "accepted campaign-1: 4 samples per hour, in force now" in capsys.readouterr().out
    store = tmp_path / "state" / "sampling_tokens.json"
    assert json.loads(store.read_text())["tokens"] == [(tmp_path / "token.txt").read_text().strip()]
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert main(["samples", "list", "--config", str(cfg)]) == 0
    listed = capsys.readouterr().out
    assert "campaign-1: 4/h" in listed and "in force" in listed
    assert main(["samples", "revoke", "--config", str(cfg), "campaign-1"]) == 0
    assert json.loads(store.read_text()) == {"schema": "umbra.sampling-tokens/1", "tokens": [],
                                              "revoked": ["campaign-1"]}
    capsys.readouterr()
    # a revoked id is refused when it comes back
    assert main(["samples", "authorize", "--config", str(cfg), str(tmp_path / "token.txt")]) == 1
    assert "refused (revoked)" in capsys.readouterr().out
    events = [e["event"] for e in _events(tmp_path)]
    assert events == ["authorization_accepted", "authorization_revoked", "authorization_refused"]
    assert audit.verify(tmp_path / "audit.jsonl").ok


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda k: sign_token(Ed25519PrivateKey.generate(), device_id=DEV, rate_per_hour=4, not_before=T0,
                          expires=T0 + 86400, token_id="foreign"), "bad-signature"),
    (lambda k: sign_token(k, device_id="shop-8", rate_per_hour=4, not_before=T0, expires=T0 + 86400,
                          token_id="other-shop"), "wrong-device"),
    (lambda k: sign_token(k, device_id=DEV, rate_per_hour=40, not_before=T0, expires=T0 + 86400,
                          token_id="greedy"), "rate-out-of-range"),
    (lambda k: sign_token(k, device_id=DEV, rate_per_hour=4, not_before=T0 - 86400, expires=T0 - 1,
                          token_id="old"), "expired"),
    (lambda k: "not-a-token", "malformed"),
])
def test_a_bad_token_is_refused_with_its_reason_and_the_stored_ones_stay(tmp_path: Path, mutate, reason) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key), max_rate_per_hour=6))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    good = sign_token(key, device_id=DEV, rate_per_hour=3, not_before=T0, expires=T0 + 86400, token_id="good")
    accept(store, authorizer_for(cfg, store, log), good, T0 + 10)
    before = store.path.read_bytes()
    with pytest.raises(AuthorizationRefused) as info:
        accept(store, authorizer_for(cfg, store, log), mutate(key), T0 + 10)
    assert info.value.reason == reason
    assert store.path.read_bytes() == before
    assert _events(tmp_path)[-1]["event"] == "authorization_refused"
    assert _events(tmp_path)[-1]["fields"]["reason"] == reason


def test_a_revoke_that_lands_while_a_token_is_taken_in_is_not_undone(tmp_path: Path) -> None:
    """`umbra samples authorize` (or the cloud relay) builds its Authorizer from the store, then another process
    revokes the token before it is stored: the store's revocation, read under its lock, still refuses it."""
    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    token = sign_token(key, device_id=DEV, rate_per_hour=3, not_before=T0, expires=T0 + 86400, token_id="late")
    auth = authorizer_for(cfg, store, log)  # knows of no revocation yet
    revoke(store, "late", T0 + 5, log)  # the customer withdraws it meanwhile
    before = store.path.read_bytes()
    with pytest.raises(AuthorizationRefused) as info:
        accept(store, auth, token, T0 + 10)
    assert info.value.reason == "revoked"
    assert store.path.read_bytes() == before and store.read().tokens == ()
    assert [e["event"] for e in _events(tmp_path)] == ["authorization_revoked", "authorization_refused"]


def test_load_drops_expired_tokens_audited_and_keeps_future_ones(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    auth = authorizer_for(cfg, store, log)
    for tid, nb, exp in (("week", T0, T0 + 7 * 86400), ("day", T0, T0 + 86400), ("later", T0 + 3 * 86400,
                                                                                  T0 + 4 * 86400)):
        accept(store, auth, sign_token(key, device_id=DEV, rate_per_hour=2, not_before=nb, expires=exp,
                                       token_id=tid), T0)
    grants = load_grants(store, authorizer_for(cfg, store, log), T0 + 2 * 86400, log)  # "day" has expired
    assert sorted(g.token_id for g in grants) == ["later", "week"]
    assert len(store.read().tokens) == 2
    dropped = [e["fields"] for e in _events(tmp_path) if e["event"] == "authorization_dropped"]
    assert dropped == [{"reason": "expired", "token_id": "day"}]
    # a new customer key in the config: the old tokens fail but are kept on disk, unused
    other = load(_config(tmp_path, public_key_b64(Ed25519PrivateKey.generate())))
    assert load_grants(store, authorizer_for(other, store, log), T0 + 2 * 86400, log) == []
    assert len(store.read().tokens) == 2


def test_a_damaged_token_file_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    from firmware.errors import TokenStoreError

    store = TokenStore(tmp_path / "sampling_tokens.json")
    store.path.write_text('{"tokens": ["x"]')
    with pytest.raises(TokenStoreError, match="not a sampling-token file"):
        store.read()


def _per_hour(sched: SampleScheduler, start: float, hours: int, hook=None) -> list[int]:
    counts = [0] * hours
    for i in range(hours * 360):
        t = start + i * 10.0
        if hook is not None:
            hook(None, None, t)
        if sched.due(t) is not None:
            counts[int((t - start) // 3600)] += 1
    return counts


def test_the_scheduler_uses_stored_grants_and_drops_a_revoked_one_at_once(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    accept(store, authorizer_for(cfg, store, log), sign_token(
        key, device_id=DEV, rate_per_hour=5, not_before=T0 + 3600, expires=T0 + 3 * 3600, token_id="five"), T0)
    sched = SampleScheduler(SamplesConfig(), random.Random(4), authorizer_for(cfg, store, log))
    refresher = GrantRefresher(store, lambda: authorizer_for(cfg, store, log), sched, log)
    refresher.refresh(T0)
    # hour 0 before the grant, hours 1-2 under it, hour 3 after its expiry
    assert _per_hour(sched, T0, 4, refresher) == [1, 5, 5, 1]
    uses = [e for e in _events(tmp_path) if e["event"] == "authorization_used"]
    assert len(uses) == 8 and {e["fields"]["token_id"] for e in uses} == {"five"}

    # revoked while the sensor runs: the refresher sees the file change and the extra samples stop
    accept(store, authorizer_for(cfg, store, log), sign_token(
        key, device_id=DEV, rate_per_hour=6, not_before=T0, expires=T0 + 30 * 3600, token_id="six"), T0)
    sched2 = SampleScheduler(SamplesConfig(), random.Random(5), authorizer_for(cfg, store, log))
    refresher2 = GrantRefresher(store, lambda: authorizer_for(cfg, store, log), sched2, log)
    refresher2.refresh(T0 + 10 * 3600)
    start = T0 + 10 * 3600
    taken = []
    for i in range(360):
        t = start + i * 10.0
        if i == 180:  # half way through the hour
            assert sched2.grant is not None and sched2.grant.token_id == "six"
            revoke(store, "six", t, log)
        refresher2(None, None, t)
        if sched2.due(t) is not None:
            taken.append(t)
    after = [t for t in taken if t >= start + 1800 + 60]  # the refresher looks once a minute
    assert len(taken) >= 1 and sched2.grant is None
    assert len(after) <= 1  # at most the default sample of the hour after the revocation
    assert _per_hour(sched2, start + 3600, 1, refresher2) == [1]


def test_umbra_run_loads_the_stored_grants_and_signs_the_audit_head(tmp_path, shared_data, monkeypatch):
    """`umbra run` with a device key and a stored token: the token is re-verified at start (audited), the
    audit log names the device key, and its head verifies against the device certificate."""
    from cloud.app import DEV_DEVICE
    from cloud.harness import CloudThread, device_setup
    from hal.clock import SystemClock

    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    key = Ed25519PrivateKey.generate()
    base = load(Path(__file__).resolve().parents[3] / "bench/configs/pets09.toml")
    cloud = CloudThread(tmp_path / "cloud", SystemClock())
    try:
        dev = device_setup(cloud.cloud, tmp_path / "device", cloud.port)
        table = {
            "device": {"id": DEV_DEVICE, "state_dir": str(tmp_path / "state")},
            "camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0},
            "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
            "geometry": asdict(base.geometry),
            "privacy": {"budget_file": str(tmp_path / "budget.sqlite"), "audit_file": str(tmp_path / "audit.jsonl")},
            "authorization": {"customer_public_key": public_key_b64(key)},
            "sync": dev.sync_table(),
        }
        cfg_path = tmp_path / "sensor.toml"
        cfg_path.write_text(to_toml(table))
        import time

        now = int(time.time())
        token = sign_token(key, device_id=dev.uploader.device_id, rate_per_hour=3, not_before=now - 60,
                           expires=now + 86400, token_id="run-1")
        assert main(["samples", "authorize", "--config", str(cfg_path), token]) == 0
        assert main(["run", "--config", str(cfg_path), "--max-frames", "10"]) == 0
    finally:
        cloud.close()
    entries = _events(tmp_path)
    events = [e["event"] for e in entries]
    assert events[0] == "audit_signing"  # the first writer (the intake command) named the device key
    accepted = [e["fields"]["token_id"] for e in entries if e["event"] == "authorization_accepted"]
    assert accepted == ["run-1", "run-1"]  # at intake, and re-verified when umbra run started
    assert events.count("audit_signing") == 1 and "audit_tamper_found" not in events
    assert audit.verify(tmp_path / "audit.jsonl", cert=dev.tls.cert_file).ok
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl"), "--cert", dev.tls.cert_file]) == 0


def test_authorization_config_keys_are_checked(tmp_path: Path) -> None:
    from firmware.errors import ConfigError

    with pytest.raises(ConfigError, match="customer_public_key"):
        load(_config(tmp_path, "AAAA"))
    assert load(_config(tmp_path, "")).authorization == AuthorizationConfig()


def test_the_dpia_states_the_authorized_rates_in_force(tmp_path: Path, capsys) -> None:
    import time

    key = Ed25519PrivateKey.generate()
    cfg_path = _config(tmp_path, public_key_b64(key))
    now = int(time.time())
    token = sign_token(key, device_id=DEV, rate_per_hour=4, not_before=now - 60, expires=now + 86400,
                       token_id="dpia-4")
    assert main(["samples", "authorize", "--config", str(cfg_path), token]) == 0
    capsys.readouterr()
    assert main(["privacy", "dpia", "--config", str(cfg_path)]) == 0
    dpia = capsys.readouterr().out
    assert "- token dpia-4: 4 per hour" in dpia and "none in force" not in dpia
    assert main(["samples", "revoke", "--config", str(cfg_path), "dpia-4"]) == 0
    capsys.readouterr()
    assert main(["privacy", "dpia", "--config", str(cfg_path)]) == 0
    assert "none in force" in capsys.readouterr().out


def test_tokens_relayed_by_the_cloud_reach_the_sensor_and_a_withdrawal_too(tmp_path: Path) -> None:
    """The reference cloud relays a customer's tokens over the mutual-TLS channel; the uploader fetches them on
    its cycle into the inbox file; the sensor's refresher verifies, stores and audits each (a foreign one is
    refused once, not on every fetch), and a withdrawal at the cloud revokes the grant on the device."""
    import asyncio
    import time

    from cloud.app import DEV_DEVICE
    from cloud.harness import CloudThread, device_setup
    from firmware.config.sync import OutboxConfig
    from firmware.sync.outbox import Outbox
    from firmware.sync.uploader import Uploader
    from hal.clock import FakeClock

    clock = FakeClock(start_wall=time.time())
    now = int(clock.wall())
    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    sched = SampleScheduler(SamplesConfig(), random.Random(1))
    inbox = tmp_path / "device" / "sampling_tokens.inbox.json"
    cloud = CloudThread(tmp_path / "cloud", clock)
    events = asyncio.new_event_loop()
    try:
        dev = device_setup(cloud.cloud, tmp_path / "device", cloud.port, authorizations_file=str(inbox))
        up = Uploader(dev.uploader, dev.tls, Outbox(OutboxConfig(path=dev.outbox_path)), clock, random.Random(0))
        cloud.cloud.authorize(DEV_DEVICE, sign_token(key, device_id=DEV, rate_per_hour=4, not_before=now - 60,
                                                     expires=now + 86400, token_id="relayed"))
        cloud.cloud.authorize(DEV_DEVICE, sign_token(key, device_id="shop-9", rate_per_hour=4, not_before=now,
                                                     expires=now + 86400, token_id="misrouted"))
        assert events.run_until_complete(up.cycle()).error is None
        assert len(json.loads(inbox.read_text())["tokens"]) == 2
        refresher = GrantRefresher(store, lambda: authorizer_for(cfg, store, log), sched, log,
                                   inbox=TokenStore(inbox))
        refresher(None, None, now)
        assert [g.token_id for g in sched.grants] == ["relayed"]
        assert list(store.read().tokens) == json.loads(inbox.read_text())["tokens"][1:]  # the relayed one
        refresher(None, None, now + 61)  # the same inbox again: nothing new, nothing audited again
        cloud.cloud.revoke_authorization(DEV_DEVICE, "relayed")
        clock.advance(dev.uploader.authorizations_refresh_s)
        assert events.run_until_complete(up.cycle()).error is None
        refresher(None, None, now + 400)
        events.run_until_complete(up.close())
    finally:
        events.close()
        cloud.close()
    assert sched.grants == () and store.read().tokens == () and store.read().revoked == ("relayed",)
    kinds = [(e["event"], e["fields"].get("token_id") or e["fields"].get("claimed_token_id"))
             for e in _events(tmp_path)]
    assert kinds == [("authorization_refused", "misrouted"),  # the cloud lists tokens by id
                     ("authorization_accepted", "relayed"),  # taken in from the inbox and stored
                     ("authorization_accepted", "relayed"),  # the store re-loaded into the scheduler
                     ("authorization_revoked", "relayed")]


def test_the_store_holds_at_most_its_limit_and_refuses_the_next_before_auditing_it(tmp_path: Path) -> None:
    from firmware.errors import TokenStoreError
    from firmware.samples.grantstore import MAX_TOKENS

    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store, log = store_for(cfg, tmp_path), audit.AuditLog(tmp_path / "audit.jsonl")
    for i in range(MAX_TOKENS):
        accept(store, authorizer_for(cfg, store, log), sign_token(
            key, device_id=DEV, rate_per_hour=2, not_before=T0, expires=T0 + 86400, token_id=f"t{i}"), T0)
    with pytest.raises(TokenStoreError, match="revoke old ones"):
        accept(store, authorizer_for(cfg, store, log), sign_token(
            key, device_id=DEV, rate_per_hour=2, not_before=T0, expires=T0 + 86400, token_id="one-more"), T0)
    assert len(store.read().tokens) == MAX_TOKENS
    assert "one-more" not in (tmp_path / "audit.jsonl").read_text()  # not audited as accepted, never stored
    # the same id again replaces, even when full
    accept(store, authorizer_for(cfg, store, log), sign_token(
        key, device_id=DEV, rate_per_hour=3, not_before=T0, expires=T0 + 86400, token_id="t0"), T0)
    assert len(store.read().tokens) == MAX_TOKENS
    store.path.write_text('{"schema": "umbra.sampling-tokens/1", "tokens": "abc", "revoked": []}')
    with pytest.raises(TokenStoreError):
        store.read()


def test_a_damaged_token_file_does_not_stop_the_sensor(tmp_path: Path, caplog) -> None:
    from firmware.samples.grantstore import sensor_grants

    key = Ed25519PrivateKey.generate()
    cfg = load(_config(tmp_path, public_key_b64(key)))
    store = store_for(cfg, tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{ not json")
    sched = SampleScheduler(SamplesConfig(), random.Random(0))
    refresher = sensor_grants(cfg, tmp_path, sched, None, T0)
    assert refresher is not None and sched.grants == ()
    assert "default rate" in caplog.text
    assert store.path.read_text() == "{ not json"  # left for a person to look at, not "repaired" to empty
