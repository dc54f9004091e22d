"""Garbage on the serial line: framing round trips and damage detection (hypothesis), 10,000+ random,
truncated, bit-flipped and oversized frames at the agent, and a recorded session replayed after lock: no
crash, an error answer for each, the device's state unchanged."""

from __future__ import annotations

import hashlib
import random
import time

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.agent import DeviceAgent
from provisioning.fakepty import FakeDevice
from provisioning.framing import MAX_BODY, Deframer, FrameError, decode, encode
from provisioning.protocol import pack, unpack
from provisioning.station import FileCA, FleetSettings, Station, StationLog
from trust import pki
from trust.keys import BatchKey


@given(st.binary(max_size=MAX_BODY))
def test_any_body_round_trips_and_carries_no_zero_inside(body):
    frame = encode(body)
    assert frame[0] == 0 and frame[-1] == 0 and 0 not in frame[1:-1]
    assert decode(frame[1:-1]) == body


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_a_flipped_bit_is_caught_and_the_next_frame_still_arrives(body, data):
    frame = bytearray(encode(body))
    i = data.draw(st.integers(1, len(frame) - 2))
    frame[i] ^= 1 << data.draw(st.integers(0, 7))
    out = list(Deframer().feed(bytes(frame) + encode(b"next")))
    assert out[-1] == b"next"
    assert all(isinstance(x, FrameError) for x in out[:-1])  # damage is reported, never delivered as data


def snapshot(agent: DeviceAgent) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(agent.dir.iterdir())}


def garbage(rng: random.Random, valid: list[bytes]):
    """Random bytes, truncated and bit-flipped valid frames, oversized frames, well-framed nonsense."""
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    frame = rng.choice(valid)
    if kind == 1:
        return frame[: rng.randrange(1, len(frame) - 1)] + b"\x00"  # cut short of its last byte
    if kind == 2:
        b = bytearray(frame)
        b[rng.randrange(1, len(b) - 1)] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 3:
        return b"\x00" + bytes(rng.randrange(1, 256) for _ in range(MAX_BODY + 100)) + b"\x00"
    if kind == 4:
        return encode(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))))
    return encode(cbor2.dumps({"v": 1, "seq": rng.randrange(10**6), "op": rng.choice(["lock", "x", 3, None]),
                               "args": rng.choice([{}, [], "a", {"chain": [b"x"]}, {"device_id": "../../etc"}])}))


def test_ten_thousand_bad_frames_change_nothing(tmp_path):
    ca = FileCA.create(tmp_path / "ca")
    agent = DeviceAgent(tmp_path / "dev", hardware_id="feed", model="m", firmware="0.1", trusted_ca_pem=ca.cert_pem())
    agent._op_generate_key({"device_id": "umbra-feed"})  # a device mid-provisioning: keyed
    before = snapshot(agent)
    valid = [pack({"v": 1, "seq": i, "op": "hello", "args": {}}) for i in range(5)]
    rng = random.Random(7)
    answers = 0
    for _ in range(10_000):
        for frame in agent.feed(garbage(rng, valid)):
            msg = unpack(decode(frame[1:-1]))
            answers += 1
            assert msg["ok"] is False and msg["error"]["code"] and msg["error"]["message"]
    assert answers >= 8_000  # nearly every bad frame got its own error answer
    assert agent.state["state"] == "keyed" and snapshot(agent) == before
    # and the line still works
    ok = unpack(decode(agent.feed(pack({"v": 1, "seq": 99, "op": "hello", "args": {}}))[0][1:-1]))
    assert ok["ok"] and ok["result"]["state"] == "keyed"


def test_a_recorded_session_replayed_after_lock_is_refused_over_the_pty(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ca = FileCA.create(tmp_path / "ca")
    root = Ed25519PrivateKey.generate()
    fleet = FleetSettings("https://cloud:8443", pki.sign_pin_update(root, ["A" * 43 + "=", "B" * 43 + "="], 1, 1),
                          pki.root_public_b64(root), b"{}", lambda d: BatchKey.generate(time.time(), 3600).to_json())
    agent = DeviceAgent(tmp_path / "dev", hardware_id="cafe", model="m", firmware="0.1", trusted_ca_pem=ca.cert_pem())
    dev = FakeDevice(agent)
    Station(ca, StationLog(tmp_path / "log.sqlite"), fleet).provision(dev.port)
    dev.close()
    recorded = [data for way, data in dev.wire if way == "to_device"]
    before = snapshot(agent)
    replay = FakeDevice(agent)
    try:
        import serial

        with serial.Serial(replay.port, 115200, timeout=0.2) as line:
            for data in recorded:
                line.write(data)
            deadline, got = time.monotonic() + 3, b""
            while time.monotonic() < deadline and got.count(b"\x00") < 2 * len(recorded):
                got += line.read(4096)
    finally:
        replay.close()
    answers = [unpack(b) for b in Deframer().feed(got) if isinstance(b, bytes)]
    refused = [a for a in answers if not a["ok"]]
    assert len(answers) == len(recorded)
    assert all(a["error"]["code"] == "locked" for a in refused)
    assert {a["result"].get("state") for a in answers if a["ok"] and "state" in a["result"]} <= {"locked"}
    assert len(refused) >= len(recorded) - 2  # only hello and verify, which change nothing, may answer
    assert snapshot(agent) == before
