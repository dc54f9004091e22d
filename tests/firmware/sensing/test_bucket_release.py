"""Issue 16, point 3: in the `tracks` profile the records of one pseudonym carry nothing finer than the time
bucket. Property test on the loop's real emission path (loop -> quantizer -> bucket release -> the tracks file
and the frame audit's release to the outbox): for any script of tracks over the ticks, at most one record per
pseudonym per bucket, every time a bucket start, each bucket released only after it ended, sorted by
pseudonym, the audit counting what was released; and the ticks inside each bucket put in any other order give
byte-identical output.

With a count line (issue 17): each record carries exactly the crossings the loop's line counter confirmed for its
pseudonym in its bucket (so the records' counts equal the loop's, bucket by bucket), a pseudonym the counter
credits with a crossing in a bucket gets a record there even if it was seen only before (its crossing confirmed
after the hold), and reordering the ticks inside a bucket changes the output only where it changes what the
counter counts: with the same confirmed crossings per pseudonym and bucket the output is byte-identical."""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.cli.assemble import JsonlSink
from firmware.config.sensing import GeometryConfig, LineConfig, LoopConfig, QuantizeConfig
from firmware.privacy.frameaudit import FrameAuditSink
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Buckets, Quantizer
from firmware.sensing.records import QuantizedTrack
from hal.clock import FakeClock
from hal.errors import EndOfStream

START = 1_700_000_000.0  # a bucket start
BUCKET_S = 5
HZ = 2.0  # detect and emit at 2 Hz: every tick is quantized, ten to a bucket
PER_BUCKET = int(BUCKET_S * HZ)
XS = (10.0, 20.0, 30.0, 40.0)  # pixels; at 0.02 m/px and a 0.5 m grid the first two share a cell
# upright at x = 0.5 m (25 px), band 0.05 m: every step between the first two XS and the last two crosses it
LINE = LineConfig("door", (0.5, -10.0), (0.5, 10.0))


@dataclass(frozen=True)
class FakeTrack:
    track_id: int
    box: tuple[float, float, float, float]
    velocity: tuple[float, float]
    unseen_s: float = 0.0


class ScriptTracker:
    """Reports the script's tracks for each tick, whatever was detected."""

    def __init__(self, script: list[list[FakeTrack]]) -> None:
        self.script, self.k = script, 0

    def update(self, boxes, scores, dt, frame_size=None):
        self.k += 1
        return self.script[self.k - 1] if self.k <= len(self.script) else []


class NoFrames:
    """A camera that yields `n` empty ticks, then ends."""

    def __init__(self, n: int) -> None:
        self.n = n

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def capture(self):
        self.n -= 1
        if self.n < 0:
            raise EndOfStream("script done")
        return None


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, float, dict]] = []

    def append(self, event: str, t: float, **fields) -> None:
        self.entries.append((event, t, fields))


track = st.builds(lambda x, y, vx, vy: (x, y, vx, vy), st.sampled_from(XS), st.sampled_from(XS),
                  st.sampled_from((0.0, 40.0, -40.0)), st.sampled_from((0.0, 40.0)))
tick = st.dictionaries(st.integers(1, 5), track, max_size=4)  # track id -> (x, y, vx, vy) at that tick


def _tracks(t: dict[int, tuple[float, float, float, float]]) -> list[FakeTrack]:
    return [FakeTrack(i, (x - 4.0, y - 30.0, x + 4.0, y), (vx, vy)) for i, (x, y, vx, vy) in sorted(t.items())]


Run = tuple[str, list[tuple[float, list]], "Audit", SensorLoop, list[tuple[float, int, str, str]]]


def _run(ticks: list[dict], lines: tuple[LineConfig, ...] = ()) -> Run:
    clock = FakeClock(start_wall=START)
    quant = Quantizer(QuantizeConfig(grid_m=0.5, time_bucket_s=BUCKET_S, min_speed_mps=0.3),
                      Geometry(GeometryConfig(homography=((0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)), lines=lines,
                                              count_band_m=0.05, count_hold_s=0.5)),
                      Pseudonymizer(3600, lambda n: bytes(range(n))))
    out = io.StringIO()
    crossed: list[tuple[float, int, str, str]] = []  # the loop's own crossings: (wall, track id, line, way)

    def counted(r) -> None:
        crossed.extend((r.wall, c.track_id, c.line, c.direction) for c in r.crossings)

    loop = SensorLoop(LoopConfig(detect_hz=HZ, emit_hz=HZ), NoFrames(len(ticks)), object(),  # type: ignore[arg-type]
                      ScriptTracker([_tracks(t) for t in ticks]), quant, clock, sinks=[JsonlSink(out), counted])
    released: list[tuple[float, list]] = []
    audit = Audit()
    frames = FrameAuditSink(loop, audit, release=lambda recs: released.append((clock.wall(), list(recs))))
    loop.sinks.append(frames)
    loop.run()
    frames.flush(clock.wall())
    return out.getvalue(), released, audit, loop, crossed


def _by_bucket(loop: SensorLoop, crossed: list[tuple[float, int, str, str]]) -> Counter:
    """The loop's crossings per (bucket start, epoch, pseudonym, line, way)."""
    out: Counter = Counter()
    for wall, tid, line, d in crossed:
        epoch, pseud = loop.quantizer.pseudonyms.pseudonym(tid, wall)
        out[(int(wall // BUCKET_S) * BUCKET_S, epoch, pseud, line, d)] += 1
    return out


def _in_records(records: list[dict]) -> Counter:
    return Counter({(r["t"], r["epoch"], r["pseudonym"], line, d): n for r in records for line, d, n in r["crossings"]})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(tick, min_size=PER_BUCKET, max_size=PER_BUCKET), min_size=1, max_size=3),
       st.data())
def test_a_pseudonyms_records_carry_nothing_finer_than_the_bucket(buckets: list[list[dict]], data) -> None:
    ticks = [t for b in buckets for t in b]
    text, released, audit, loop, crossed = _run(ticks)
    assert not crossed
    records = [json.loads(x) for x in text.splitlines()]
    assert all(r["schema"] == "umbra.track/2" and r["crossings"] == [] for r in records)  # no lines: none
    seen = {(r["pseudonym"], r["t"]) for r in records}
    assert len(seen) == len(records)  # at most one record per pseudonym per bucket
    starts = {START + BUCKET_S * b for b in range(len(buckets))}
    assert {r["t"] for r in records} <= starts  # the time of a record is its bucket's start
    present = {(i, START + BUCKET_S * b) for b, bt in enumerate(buckets) for t in bt for i in t}
    assert len(records) == len(present)  # one for each track seen in a bucket, none for one not seen
    for t in sorted(starts):  # a bucket's records leave together, sorted by pseudonym, never by time
        block = [r["pseudonym"] for r in records if r["t"] == t]
        assert block == sorted(block)
    assert [r for _, recs in released for r in recs] == records  # the outbox gets what the tracks file does
    for wall, recs in released[:-1]:  # released once their bucket ended (the last: at the stop)
        assert wall >= max(r["t"] for r in recs) + BUCKET_S
    counted = sum(f["count"] for e, _, f in audit.entries if e == "records_released")
    assert counted == len(records) == loop.stats.records

    shuffled = []  # the same ticks, put in another order inside each bucket
    for b in buckets:
        order = data.draw(st.permutations(range(PER_BUCKET)))
        shuffled += [b[k] for k in order]
    text2, released2, audit2, _, _ = _run(shuffled)
    assert text2 == text
    assert json.dumps(released2) == json.dumps(released)
    assert audit2.entries == audit.entries


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(tick, min_size=PER_BUCKET, max_size=PER_BUCKET), min_size=1, max_size=3),
       st.data())
def test_records_carry_the_loops_own_crossings_and_nothing_of_their_order(buckets: list[list[dict]], data) -> None:
    ticks = [t for b in buckets for t in b]
    text, released, _, loop, crossed = _run(ticks, (LINE,))
    records = [json.loads(x) for x in text.splitlines()]
    assert len({(r["pseudonym"], r["t"]) for r in records}) == len(records)  # still one per pseudonym per bucket
    assert _in_records(records) == _by_bucket(loop, crossed)  # each record: its pseudonym's crossings, exactly
    for r in records:  # sorted by line and way, each count at least 1: an order-free summary
        assert r["crossings"] == sorted(r["crossings"]) and all(n >= 1 for _, _, n in r["crossings"])
    seen = {(START + BUCKET_S * b, loop.quantizer.pseudonyms.pseudonym(i, START + BUCKET_S * b)[1])
            for b, bt in enumerate(buckets) for t in bt for i in t}
    credited = {(k[0], k[2]) for k in _by_bucket(loop, crossed)}
    assert {(r["t"], r["pseudonym"]) for r in records} == seen | credited
    assert [r for _, recs in released for r in recs] == records

    shuffled = []
    for b in buckets:
        order = data.draw(st.permutations(range(PER_BUCKET)))
        shuffled += [b[k] for k in order]
    text2, released2, _, loop2, crossed2 = _run(shuffled, (LINE,))
    if _by_bucket(loop2, crossed2) == _by_bucket(loop, crossed):  # the same counts: not a byte of the order
        assert text2 == text
        assert json.dumps(released2) == json.dumps(released)
    else:  # the counter counted otherwise (a crossing is an order); what the tracks seen say is unchanged
        def plain(t: str) -> list[dict]:
            return [{k: v for k, v in r.items() if k != "crossings"} for r in map(json.loads, t.splitlines())
                    if (r["t"], r["pseudonym"]) in seen]
        assert plain(text2) == plain(text)


def _rec(pseud: str, cell: tuple[int, int]) -> QuantizedTrack:
    return QuantizedTrack(pseud, 0, 1000, cell, 0.5, "M", None, None)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(((0, 0), (0, 1), (1, 1))),
                          st.sampled_from(("sampled", "crossed", "both")), st.sampled_from(("door", "gate")),
                          st.sampled_from("+-")),
                min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_a_buckets_release_is_the_same_whatever_order_its_ticks_came_in(ticks, rnd) -> None:
    """quantize.Buckets alone: each tick a sampled record, a crossing (with the record at it) or both; any
    order of the same ticks within a bucket releases the same records, crossings as sorted counts."""
    def release(order: list) -> list[QuantizedTrack]:
        b = Buckets(BUCKET_S)
        for k, (p, cell, what, line, d) in enumerate(order):
            r = _rec(f"{p * 16}", cell)
            b.add([r] if what != "crossed" else [], 1000.0 + k * 0.1, [(r, line, d)] if what != "sampled" else [])
        return b.flush()

    first = release(ticks)
    again = list(ticks)
    rnd.shuffle(again)
    assert release(again) == first
    for r in first:
        assert list(r.crossings) == sorted(r.crossings)
