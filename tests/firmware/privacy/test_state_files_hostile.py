"""State files the device reads at start, as a bad sector or an attacker leaves them: nested past the JSON
parser, or holding numbers that are not numbers (Infinity, 1e400) where a whole number belongs. Each is the
loader's own refusal (a TrustError naming the file, or "unusable: starting empty" for the continual-release
state), never a RecursionError or OverflowError out of it. The same key message comes from the cloud too, so a
hostile `next_key` with an infinite expiry must be the uploader's counted error. All seen failing on the old
code (RecursionError, OverflowError). A continual-release state zeroed, garbled, deleted or rolled back
between runs (alone or with the budget store) suspends the day's running totals: no step released again, no
block re-noised, nothing charged or refunded, the damage audited (before, the tree was refilled with fresh
noise for steps already released and an unreadable state was not audited: seen failing on the old code)."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.privacy.accountant import DAY_S, Accountant
from firmware.privacy.audit import AuditLog
from firmware.privacy.continual import ContinualRelease, Tree
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState
from trust.errors import TrustError
from trust.keys import BatchKey, KeyRing
from trust.tls import PinStore

DEEP = b"[" * 5000
SECRET = base64.b64encode(bytes(32)).decode()
NOT_WHOLE = st.one_of(st.sampled_from([float("inf"), float("-inf"), float("nan")]),
                      st.floats(min_value=1e300, allow_infinity=False), st.sampled_from(["", "x", "1e3", "0x10"]),
                      st.none())


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["not_before", "expires"]), NOT_WHOLE)
def test_a_key_message_with_a_number_that_is_not_one_is_refused(field: str, value: object) -> None:
    d = {"key_id": "k1", "secret": SECRET, "not_before": 0, "expires": 3600, field: value}
    try:
        BatchKey.from_json(d)
    except TrustError:
        return
    assert isinstance(value, float) and value >= 1e300  # a huge whole number of seconds is a key, if a silly one


@pytest.mark.parametrize("body", [DEEP, b'{"keys": [{"key_id": "k", "secret": "%s", "not_before": 0, '
                                        b'"expires": Infinity}]}' % SECRET.encode()])
def test_a_corrupt_key_ring_is_a_trust_error(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "keys.json").write_bytes(body)
    with pytest.raises(TrustError):
        KeyRing(tmp_path / "keys.json")


def test_a_pin_file_nested_past_the_parser_is_a_trust_error(tmp_path: Path) -> None:
    root = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (tmp_path / "pins.json").write_bytes(DEEP)
    with pytest.raises(TrustError):
        PinStore(tmp_path / "pins.json", base64.b64encode(root).decode())


GEO = Geometry(GeometryConfig(zones=(ZoneConfig("west", ((-10, -10), (0, -10), (0, 10), (-10, 10))),),
                              lines=(LineConfig("mid", (0, -10), (0, 10)),)))
CFG = PrivacyConfig(tree_enabled=True, tree_step_s=60, tree_epsilon=1.0, k=5)


def _continual(tmp_path: Path) -> ContinualRelease:
    acc = Accountant(tmp_path / "budget.sqlite", CFG.budgets())
    return ContinualRelease(CFG, GEO, acc, lambda recs: None, tmp_path / "tree.json", rng=random.Random(0))


def _good_state(tmp_path: Path) -> dict:
    s = _continual(tmp_path)
    s.state.day, s.state.last_step, s.state.dims = 20_000, 20_000 * DAY_S // 60, dict(s.dims)
    s.state.trees = {st: Tree(s.dims[st], s.scale(st), s.steps) for st in s.streams}
    s._save()
    again = _continual(tmp_path)  # the undamaged state loads as it was
    assert again.state.day == 20_000 and set(again.state.trees) == set(s.streams)
    return json.loads((tmp_path / "tree.json").read_text())


@pytest.mark.parametrize("damage", ["deep", "day", "last_step", "spent"])
def test_a_corrupt_continual_state_starts_empty(tmp_path: Path, damage: str) -> None:
    doc = _good_state(tmp_path)
    if damage == "deep":
        raw = DEEP
    else:
        if damage == "spent":
            doc["spent"] = {"flow_total": 1.0}
        text = json.dumps(doc)
        raw = text.replace(json.dumps({damage: doc[damage]})[1:-1], f'"{damage}": Infinity').encode()
        assert b"Infinity" in raw
    (tmp_path / "tree.json").write_bytes(raw)
    s = _continual(tmp_path)
    assert s.state.day == -1 and s.state.trees == {}  # started empty
    s.close()


# -- the continual-release state broken between runs: nothing released today is released again ---------------

DAY = 20_000


def _tick(wall: float, crossing: int | None) -> TickResult:
    ids = np.array([7], np.int64)
    xy = np.array([[-1.0, 0.0]])
    cross = [Crossing(crossing, "mid", "+")] if crossing is not None else []
    return TickResult(wall, [], cross, GroundState(ids, xy, np.zeros_like(xy), np.full(1, 1.7)))


def _run(tmp: Path, minutes: range, seed: int) -> tuple[ContinualRelease, list[dict], Accountant]:
    """One `umbra run` as it wires the stream: one audit log for the budget's ledger, the stream's entries and
    its history of releases."""
    log = AuditLog(tmp / "audit.jsonl")
    acc = Accountant(tmp / "budget.sqlite", CFG.budgets(), ledger=log)
    out: list[dict] = []
    s = ContinualRelease(CFG, GEO, acc, out.extend, tmp / "tree.json", rng=random.Random(seed), audit=log.append,
                         history=log.path)
    for m in minutes:
        for sec in range(0, 60, 15):
            s(_tick(DAY * DAY_S + m * 60 + sec, 100 * m + sec if sec == 30 else None))
    s.close()
    return s, out, acc  # the caller closes the accountant


def _events(tmp: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp / "audit.jsonl").read_bytes().split(b"\n") if x.startswith(b"{")]


def _keys(out: list[dict]) -> list[tuple]:
    return [(r["metric"], r["zone"], r["window_start"]) for r in out]


DAMAGES = ["zeros", "garbage", "deep", "deleted", "rolled back", "deleted with the budget store",
           "rolled back with the budget store"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_broken_continual_state_never_releases_a_step_again(tmp_path: Path, damage: str) -> None:
    _, out1, _ = _run(tmp_path, range(0, 3), seed=1)
    snap = {n: (tmp_path / n).read_bytes() for n in ("tree.json", "budget.sqlite")}
    _, more, acc1 = _run(tmp_path, range(3, 6), seed=2)
    out1 += more
    spent = {name: acc1.spent(name, DAY * DAY_S) for name in ("flow_total", "visitors_total")}
    acc1.close()
    assert spent["flow_total"] == 6 and len({r["window_start"] for r in out1}) == 6
    state = tmp_path / "tree.json"
    if damage == "zeros":
        state.write_bytes(b"\0" * state.stat().st_size)
    elif damage == "garbage":
        state.write_bytes(b"not json at all")
    elif damage == "deep":
        state.write_bytes(DEEP)
    elif damage.startswith("deleted"):
        state.unlink()
    else:
        state.write_bytes(snap["tree.json"])
    if damage.endswith("the budget store"):
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"budget.sqlite{suffix}").unlink(missing_ok=True)
        if damage.startswith("rolled"):
            (tmp_path / "budget.sqlite").write_bytes(snap["budget.sqlite"])
    s2, out2, acc2 = _run(tmp_path, range(3, 10), seed=3)  # the clock stepped back 3 minutes, then on
    keys = _keys(out1 + out2)
    assert len(keys) == len(set(keys)), "a step released twice"
    assert out2 == []  # the day is suspended: its blocks cannot be rebuilt, and are never re-noised
    assert s2.state.trees == {} and s2.state.suspended
    for name, eps in spent.items():  # no refund, and nothing charged for what was not released
        assert acc2.spent(name, DAY * DAY_S) == eps
    acc2.close()
    events = _events(tmp_path)
    withheld = {e["fields"]["reason"] for e in events if e["event"] == "continual_withheld"}
    assert withheld & {"state behind audit log", "state behind budget"}
    if damage in ("zeros", "garbage", "deep"):
        assert any(e["event"] == "continual_state_unusable" for e in events)
    # a restart the same day keeps the suspension; the next day starts a fresh tree
    _, out3, _ = _run(tmp_path, range(10, 12), seed=4)
    assert out3 == []
    _, out4, _ = _run(tmp_path, range(1440, 1442), seed=5)
    assert {r["window_start"] for r in out4} == {(DAY + 1) * DAY_S, (DAY + 1) * DAY_S + 60}


def test_the_audit_log_alone_stops_a_step_released_again(tmp_path: Path) -> None:
    """Even a state and a budget store both from before the releases (no ledger to repair the store) cannot
    release again a step the audit log records as released."""
    _run(tmp_path, range(0, 4), seed=1)
    (tmp_path / "tree.json").unlink()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"budget.sqlite{suffix}").unlink(missing_ok=True)
    log = AuditLog(tmp_path / "audit.jsonl")
    acc = Accountant(tmp_path / "budget2.sqlite", CFG.budgets())  # no ledger: the store knows nothing
    out: list[dict] = []
    s = ContinualRelease(CFG, GEO, acc, out.extend, tmp_path / "tree.json", rng=random.Random(9),
                         audit=log.append, history=log.path)
    for m in range(2, 6):
        s(_tick(DAY * DAY_S + m * 60, None))
    s.close()
    assert out == [] and s.state.suspended == "state behind audit log"
