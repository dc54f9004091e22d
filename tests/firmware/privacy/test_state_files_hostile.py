"""State files the device reads at start, as a bad sector or an attacker leaves them: nested past the JSON
parser, or holding numbers that are not numbers (Infinity, 1e400) where a whole number belongs. Each is the
loader's own refusal (a TrustError naming the file, or "unusable: starting empty" for the continual-release
state), never a RecursionError or OverflowError out of it. The same key message comes from the cloud too, so a
hostile `next_key` with an infinite expiry must be the uploader's counted error. All seen failing on the old
code (RecursionError, OverflowError)."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.privacy import PrivacyConfig
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.privacy.accountant import DAY_S, Accountant
from firmware.privacy.continual import ContinualRelease, Tree
from firmware.sensing.geometry import Geometry
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
