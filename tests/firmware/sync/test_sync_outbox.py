"""The durable outbox: order, resend-identical batches, caps, drop policy by kind, survival of SIGKILL;
and the record schemas (fast checker agrees with jsonschema)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import schemas
from firmware.config.sync import OutboxConfig
from firmware.errors import OutboxError
from firmware.sensing.loop import TickResult
from firmware.sensing.records import QuantizedTrack
from firmware.sync.outbox import DROP_ORDER, Outbox, kind_of

ROOT = Path(__file__).resolve().parents[3]


def track(i: int) -> dict:
    return QuantizedTrack(f"{i:016x}", 0, 1_700_000_000 + i, (i % 7, -3), 0.5, "M", i % 8, "door", "person").to_json()


def audit(i: int) -> dict:
    return {"schema": "umbra.audit/1", "seq": i, "t": 1.0 * i, "event": "records_released", "fields": {"n": i},
            "prev_hash": "0" * 64, "hash": "a" * 64}


def test_batches_in_order_resent_identically_until_acked(tmp_path: Path) -> None:
    cfg = OutboxConfig(path=str(tmp_path / "o.sqlite"), batch_records=4)
    with Outbox(cfg) as ob:
        with pytest.raises(OutboxError, match="nothing of this transaction stored"):
            ob.enqueue([track(0), {**track(1), "size": "XXL"}])
        assert len(ob) == 0
        for k in range(3):
            ob.enqueue([track(3 * k + j) for j in range(3)])
        b1 = ob.take_batch()
        assert b1 is not None and len(b1) == 4 and b1.seq == 1
        assert ob.take_batch() == b1  # not acked: the same batch again
    with Outbox(cfg) as ob:  # and after a restart
        assert ob.take_batch() == b1
        assert ob.ack(b1.batch_id) == 4
        b2 = ob.take_batch()
        assert b2 is not None and b2.seq == 2 and b2.seqs[0] > b1.seqs[-1]
        assert [json.loads(x)["t"] for x in b2.bodies] == [1_700_000_000 + i for i in range(4, 8)]
        doc = json.loads(b2.payload("dev-1"))
        schemas.validate(doc)
        assert doc["seqs"] == list(b2.seqs) and len(doc["records"]) == 4
        ob.ack(b2.batch_id)
        b3 = ob.take_batch()
        assert b3 is not None and len(b3) == 1
        ob.ack(b3.batch_id)
        assert ob.take_batch() is None
        assert ob.stats().acked_total == 9 == ob.stats().enqueued_total


def test_batch_byte_cap(tmp_path: Path) -> None:
    with Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite"), batch_bytes=1024)) as ob:
        ob.enqueue([track(i) for i in range(50)])
        b = ob.take_batch()
        assert b is not None and 1 <= len(b) < 50
        assert sum(len(x) for x in b.bodies) <= 1024


def test_full_outbox_drops_tracks_first_and_audit_last(tmp_path: Path) -> None:
    with Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite"), max_records=13)) as ob:
        ob.enqueue([audit(i) for i in range(4)])
        ob.enqueue([track(i) for i in range(5)])
        inflight = ob.take_batch()  # 4 audit + 5 tracks now in flight: never dropped
        ob.enqueue([track(100 + i) for i in range(5)])
        ob.enqueue([audit(100 + i) for i in range(3)])
        st_ = ob.stats()
        assert st_.records == 13 and st_.dropped == {"track": 4}
        ob.ack(inflight.batch_id)
        rest = ob.take_batch()
        kinds = [json.loads(x)["schema"] for x in rest.bodies]
        assert kinds == ["umbra.track/2"] + ["umbra.audit/1"] * 3
    with Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite"), max_records=13)) as ob:
        assert ob.stats().dropped == {"track": 4}  # counted durably


def test_sink_writes_one_tick(tmp_path: Path) -> None:
    from firmware.sensing.quantize import GroundState

    with Outbox(OutboxConfig(path=str(tmp_path / "o.sqlite"))) as ob:
        recs = [QuantizedTrack("0" * 16, 0, 10, (0, 0), 0.5, "S", None, None)]
        ground = GroundState(np.zeros(0, int), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        ob.sink(TickResult(10.0, recs, [], ground))
        ob.sink(TickResult(10.1, [], [], ground))
        assert len(ob) == 1


CHILD = """
import sys
from firmware.sync.outbox import Outbox, OutboxConfig, OutboxError
ob = Outbox(OutboxConfig(path=sys.argv[1], validate_records=False))
i = 0
while True:
    ob.enqueue([{"schema": "umbra.track/1", "n": i + j} for j in range(10)])
    i += 10
    print(i, flush=True)
"""


def test_committed_records_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    committed = 0
    assert p.stdout is not None
    while committed < 300:
        line = p.stdout.readline()
        assert line, "child died"
        committed = int(line)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    with Outbox(OutboxConfig(path=str(db), validate_records=False)) as ob:
        assert len(ob) >= committed
        ns = []
        while (b := ob.take_batch()) is not None:
            ns += [json.loads(x)["n"] for x in b.bodies]
            ob.ack(b.batch_id)
        assert ns == list(range(len(ns))) and len(ns) % 10 == 0  # whole transactions, in order, no gaps


records = st.fixed_dictionaries({
    "schema": st.just("umbra.track/1"),
    "pseudonym": st.one_of(st.text("0123456789abcdef", min_size=15, max_size=17), st.integers()),
    "epoch": st.one_of(st.integers(-2, 3), st.floats(allow_nan=False), st.booleans()),
    "t": st.integers(0, 2**40),
    "cell": st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3),
    "grid_m": st.one_of(st.floats(-1, 2, allow_nan=False), st.none()),
    "size": st.sampled_from(["S", "M", "L", "XL", 1]),
    "heading": st.one_of(st.none(), st.integers(-1, 9)),
    "zone": st.one_of(st.none(), st.text(max_size=70)),
    "cls": st.sampled_from(["person", "car"]),
}, optional={"extra": st.integers()})


@settings(max_examples=300, deadline=None)
@given(records)
def test_fast_schema_check_agrees_with_jsonschema(rec: dict) -> None:
    _, slow = schemas._validators("umbra.track/1")
    assert schemas.is_valid(rec) == slow.is_valid(rec)


def test_every_record_schema_loads_and_refuses_junk() -> None:
    for sid in schemas.RECORD_SCHEMAS:
        assert schemas.schema(sid)["$id"] == sid
        assert not schemas.is_valid({"schema": sid})
    schemas.validate(track(1))
    schemas.validate(audit(1))


def test_samples_past_retention_are_purged_but_not_from_a_batch_in_flight(tmp_path: Path) -> None:
    from firmware.samples.taking import purge_expired, sample_record

    day = 86400
    now = 1_700_000_000 + 40 * day
    cfg = OutboxConfig(path=str(tmp_path / "o.sqlite"), batch_records=2)
    with Outbox(cfg) as ob:
        ob.enqueue([sample_record(b"\xff\xd8\xff\xe0old-in-flight", now - 35 * day), track(1)])
        batch = ob.take_batch()  # the oldest sample is on its way: it stays until acknowledged
        assert batch is not None and len(batch) == 2
        ob.enqueue([sample_record(b"\xff\xd8\xff\xe0old", now - 31 * day),
                    sample_record(b"\xff\xd8\xff\xe0new", now - 29 * day), track(2)])
        audits: list = []

        class Sink:
            def append(self, event, t, **fields):  # noqa: ANN001, ANN201
                audits.append((event, fields))

        assert purge_expired(ob, now, 30, Sink()) == 1
        assert len(ob) == 4  # the batch's two, the newer sample and the track
        assert audits == [("samples_purged", {"count": 1, "before": now - 30 * day, "reason": "retention"})]
        assert purge_expired(ob, now, 30, Sink()) == 0
        ob.ack(batch.batch_id)
        left = ob.take_batch()
        assert [json.loads(b).get("taken_at") for b in left.bodies] == [now - 29 * day, None]


def test_an_outbox_deleted_while_running_is_written_back_with_every_record(tmp_path) -> None:
    """An operator (or a cleaner) deletes the database, its WAL and even its folder mid-run: SQLite would go
    on writing to the unlinked file, lost at the next start. Every record is kept and the loss is counted."""
    import shutil

    from firmware.config.sync import OutboxConfig
    from firmware.sync.outbox import Outbox

    path = tmp_path / "box" / "outbox.sqlite"
    rec = {"schema": "umbra.status/1"}
    ob = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    ob.enqueue([dict(rec, n=i) for i in range(10)])
    shutil.rmtree(tmp_path / "box")
    ob.enqueue([dict(rec, n=i) for i in range(10, 15)])
    assert ob.recreated == 1 and path.exists()
    batch = ob.take_batch()
    assert batch is not None and len(batch) == 15
    for f in path.parent.glob("outbox.sqlite*"):
        f.unlink()
    ob.ack(batch.batch_id)  # the ack lands in the file at the path, not in an unlinked one
    ob.enqueue([dict(rec, n=99)])
    ob.close()
    assert ob.recreated == 2
    again = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    assert len(again) == 1 and again.take_batch() is not None
    again.close()


def test_every_record_schema_that_leaves_the_device_has_a_drop_priority() -> None:
    """An alert queued for upload was refused ('record kind has no drop priority') before alert joined the order."""
    for schema_id in schemas.RECORD_SCHEMAS:
        assert kind_of({"schema": schema_id}) in DROP_ORDER, schema_id
