"""Sample scheduling (uniform instant per hour, rate raised only by a valid authorization), the record,
the taker's audit trail and the 30-day retention rule."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scipy import stats

from firmware.config.samples import AuthorizationConfig, SamplesConfig
from firmware.errors import AuthorizationRefused
from firmware.privacy import audit
from firmware.samples.authorization import Authorizer, public_key_b64, sign_token
from firmware.samples.taking import SampleScheduler, SampleTaker, purge_expired, sample_record
from hal.detections import Detections

T0 = 1_800_000_000 - (1_800_000_000 % 3600)  # an hour boundary


def _taken(sched: SampleScheduler, start: float, hours: int, step: float = 10.0) -> list[float]:
    out = []
    for i in range(int(hours * 3600 / step)):
        slot = sched.due(start + i * step)
        if slot is not None:
            out.append(start + i * step)
    return out


def test_one_sample_per_hour_at_a_uniform_instant() -> None:
    sched = SampleScheduler(SamplesConfig(), random.Random(7))
    offsets = [sched.instants_for_hour(T0, 1)[0] - T0 for _ in range(3000)]
    assert all(0 <= o < 3600 for o in offsets)
    assert stats.kstest(np.array(offsets) / 3600, "uniform").pvalue > 0.01
    taken = _taken(SampleScheduler(SamplesConfig(), random.Random(1)), T0, 24)
    hours = [int(t // 3600) for t in taken]
    assert len(taken) == 24 and len(set(hours)) == 24


def test_instants_differ_between_hours_and_runs_replay_with_the_same_seed() -> None:
    a = _taken(SampleScheduler(SamplesConfig(), random.Random(3)), T0, 5)
    b = _taken(SampleScheduler(SamplesConfig(), random.Random(3)), T0, 5)
    assert a == b and len({t % 3600 for t in a}) > 1


@pytest.fixture()
def auth_setup(tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    cfg = AuthorizationConfig(customer_public_key=public_key_b64(key))
    return key, log, Authorizer(cfg, "dev-1", log), tmp_path / "audit.jsonl"


def test_rate_rises_only_with_a_valid_token_and_each_extra_use_is_audited(auth_setup) -> None:
    key, log, auth, path = auth_setup
    sched = SampleScheduler(SamplesConfig(), random.Random(5), auth)
    with pytest.raises(AuthorizationRefused):
        sched.authorize(sign_token(Ed25519PrivateKey.generate(), device_id="dev-1", rate_per_hour=6,
                                   not_before=T0, expires=T0 + 7200, token_id="forged"), T0)
    assert len(_taken(sched, T0, 1)) == 1
    token = sign_token(key, device_id="dev-1", rate_per_hour=6, not_before=T0, expires=T0 + 3 * 3600,
                       token_id="tok-6")
    sched.authorize(token, T0 + 3600)
    taken = _taken(sched, T0 + 3600, 3)  # two authorized hours, then the grant has expired
    per_hour = [sum(1 for t in taken if int((t - T0) // 3600) == h) for h in (1, 2, 3)]
    assert per_hour == [6, 6, 1]
    text = path.read_text()
    assert text.count('"authorization_used"') == 10  # 5 extra per authorized hour
    assert text.count('"authorization_refused"') == 1 and audit.verify(path).ok


def test_grant_expiring_mid_hour_drops_the_extra_instants(auth_setup) -> None:
    key, _, auth, _ = auth_setup
    sched = SampleScheduler(SamplesConfig(), random.Random(9), auth)
    sched.authorize(sign_token(key, device_id="dev-1", rate_per_hour=4, not_before=T0 - 10,
                               expires=T0 + 1800, token_id="half"), T0)
    taken = _taken(sched, T0, 1, step=1.0)
    assert 1 <= len(taken) <= 3
    assert all(t < T0 + 1800 for t in taken[1:])


def test_scheduler_without_authorizer_refuses_tokens() -> None:
    sched = SampleScheduler(SamplesConfig(), random.Random(0))
    with pytest.raises(AuthorizationRefused, match="no-authorizer"):
        sched.authorize("x.y", T0)


def test_taker_puts_a_deidentified_record_and_audits_it(tmp_path: Path) -> None:
    class NoFaces:
        def detect(self, rgb):
            return Detections.empty()

    log = audit.AuditLog(tmp_path / "a.jsonl")
    put: list[dict] = []
    taker = SampleTaker(SamplesConfig(), SampleScheduler(SamplesConfig(), random.Random(2)), NoFaces(),
                        put.append, log)
    rng = np.random.default_rng(0)
    main = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    box = np.array([[0.25, 0.25, 0.5, 0.75]])
    assert taker.maybe_take(None, box, T0 + 3599) is None  # no main image: the slot waits
    records = [r for t in range(T0, T0 + 3600, 30) if (r := taker.maybe_take(main, box, t))]
    assert len(records) == 1 and put == records
    rec = records[0]
    assert set(rec) == {"schema", "taken_at", "width", "height", "jpeg_b64", "authorization"}
    assert rec["schema"] == "umbra.sample/1" and (rec["width"], rec["height"]) == (640, 480)
    assert base64.b64decode(rec["jpeg_b64"])[:2] == b"\xff\xd8" and rec["authorization"] is None
    assert '"sample_taken"' in (tmp_path / "a.jsonl").read_text()


def test_record_names_the_authorization_it_was_taken_under() -> None:
    from firmware.samples.authorization import Grant

    rec = sample_record(b"\xff\xd8x", T0 + 5.7, Grant("tok-9", "dev-1", 4, T0, T0 + 10))
    assert rec["authorization"] == "tok-9" and rec["taken_at"] == T0 + 5


def test_retention_purges_samples_older_than_30_days(tmp_path: Path) -> None:
    class Store:
        def __init__(self) -> None:
            self.taken = [T0 - d * 86400 for d in (0, 10, 29, 31, 45)]

        def purge_samples(self, before: float) -> int:
            old = [t for t in self.taken if t < before]
            self.taken = [t for t in self.taken if t >= before]
            return len(old)

    store, log = Store(), audit.AuditLog(tmp_path / "a.jsonl")
    assert purge_expired(store, T0, 30, log) == 2
    assert purge_expired(store, T0, 400, log) == 0  # never longer than 30 days, whatever is asked
    assert len(store.taken) == 3 and '"samples_purged"' in (tmp_path / "a.jsonl").read_text()


def test_config_validation() -> None:
    SamplesConfig().validate()
    for bad, field in [(dict(retention_days=31), "retention_days"), (dict(rate_per_hour=2), "rate_per_hour"),
                       (dict(jpeg_quality=0), "jpeg_quality"), (dict(width=1280), "width")]:
        with pytest.raises(ValueError, match=field):
            SamplesConfig(**bad).validate()


def test_sample_record_validates_against_its_schema() -> None:
    import jsonschema

    from firmware.samples.taking import RECORD_SCHEMA, encode_sample

    jpeg = encode_sample(np.zeros((480, 640, 3), np.uint8))
    jsonschema.validate(sample_record(jpeg, T0), RECORD_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sample_record(jpeg, T0) | {"faces": 1}, RECORD_SCHEMA)
