"""Property tests: released track records carry only grid cells, bucketed times and the listed fields, and
nothing finer than the configured quantization can be read from them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.sensing import GeometryConfig, QuantizeConfig, ZoneConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import GroundState, Quantizer
from firmware.sensing.records import QuantizedTrack

FIELDS = {"schema", "pseudonym", "epoch", "t", "cell", "grid_m", "size", "heading", "zone", "cls", "crossings"}
PETS_H = ((0.0534514045, -0.6041246, 88.5765506), (-0.139303754, -0.399810678, 120.417519),
          (0.000917480166, 0.0196253016, 1.0))


@dataclass(frozen=True)
class T:
    track_id: int
    box: tuple[float, float, float, float]
    velocity: tuple[float, float]


def quantizer(grid=0.5, bucket=5):
    rng = random.Random(0)
    geo = Geometry(GeometryConfig(homography=PETS_H, zones=(ZoneConfig("west", ((-21, -17), (-8, -17),
                                                                            (-8, 9), (-21, 9))),)))
    return Quantizer(QuantizeConfig(grid_m=grid, time_bucket_s=bucket), geo,
                     Pseudonymizer(3600, lambda n: rng.randbytes(n)))


tracks_st = st.lists(
    st.builds(
        T,
        st.integers(0, 10**6),
        st.tuples(st.floats(0, 700), st.floats(0, 500), st.floats(5, 60), st.floats(20, 150)).map(
            lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])),
        st.tuples(st.floats(-200, 200), st.floats(-200, 200)),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(tracks_st, st.floats(1.6e9, 1.9e9), st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([1, 5, 60]))
def test_records_carry_only_coarse_fields(tracks, wall, grid, bucket):
    q = quantizer(grid, bucket)
    recs = q.quantize(q.ground(tracks), wall)
    assert len(recs) == len(tracks)
    for r in recs:
        j = json.loads(json.dumps(r.to_json()))
        assert set(j) == FIELDS
        assert j["schema"] == QuantizedTrack.SCHEMA
        assert isinstance(j["t"], int) and j["t"] % bucket == 0 and 0 <= wall - j["t"] < bucket
        assert all(isinstance(c, int) for c in j["cell"])
        assert j["grid_m"] == grid
        assert j["size"] in ("S", "M", "L")
        assert j["heading"] is None or j["heading"] in range(8)
        assert j["zone"] in (None, "west")
        assert len(j["pseudonym"]) == 16 and int(j["pseudonym"], 16) >= 0
        assert j["cls"] == "person"
        assert j["crossings"] == []  # a tick's record: crossings are the bucket's (quantize.Buckets)


@settings(max_examples=200, deadline=None)
@given(st.floats(-19, 6), st.floats(-15, 7), st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.999))
def test_positions_within_one_cell_and_times_within_one_bucket_are_indistinguishable(x, y, fx, fy, ft):
    """Two states that differ only inside one grid cell and one time bucket give identical records."""
    q = quantizer()
    cell = np.floor(np.array([x, y]) / 0.5)
    a = (cell + 0.5) * 0.5
    b = (cell + np.array([fx, fy]) * 0.999) * 0.5
    wall0 = 1_700_000_000.0  # a multiple of 5
    def state(xy):
        return GroundState(np.array([3]), np.array([xy]), np.array([[1.0, 0.0]]), np.array([1.7]))
    ra = q.quantize(state(a), wall0)
    rb = q.quantize(state(b), wall0 + ft * 5)
    assert ra == rb


def test_heading_sectors_and_stillness():
    q = quantizer()
    vel = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.7, 0.7], [0.05, 0.0]])
    st_ = GroundState(np.arange(6), np.zeros((6, 2)), vel, np.full(6, 1.7))
    assert [r.heading for r in q.quantize(st_, 0.0)] == [0, 2, 4, 6, 1, None]


def test_size_classes():
    q = quantizer()
    st_ = GroundState(np.arange(3), np.zeros((3, 2)), np.zeros((3, 2)), np.array([1.0, 1.7, 2.5]))
    assert [r.size for r in q.quantize(st_, 0.0)] == ["S", "M", "L"]


def test_ground_state_from_pets_boxes():
    q = quantizer()
    # gt row: frame 1, id 9: x=499, y=158, w=31.03, h=75.17, world (-4.1554, -7.3591)
    gs = q.ground([T(9, (499, 158, 530.03, 233.17), (0.0, 0.0))])
    assert np.allclose(gs.xy[0], (-4.1554, -7.3591), atol=0.2)
    assert 1.3 < gs.height_m[0] < 2.2  # an adult


# ---------------------------------------------------------------- nothing finer than the bucket

from firmware.sensing.quantize import Buckets  # noqa: E402


def _rec(p: str, t: int, cell: tuple[int, int], heading: int | None = 0) -> QuantizedTrack:
    return QuantizedTrack(p, 0, t, cell, 0.5, "M", heading, None)


sightings_st = st.lists(st.tuples(st.sampled_from(["a" * 16, "b" * 16, "c" * 16]), st.integers(0, 3),
                                  st.integers(0, 3), st.sampled_from([None, 0, 4])), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(sightings_st, st.randoms(use_true_random=False), st.integers(0, 10**6))
def test_tracks_records_carry_no_sub_bucket_order_count_or_timing(sightings, rnd, t_bucket):
    """One bucket's sightings, at any instants within it, in any order, as many times as the ticks saw them:
    what leaves is one record per pseudonym, the same records in the same order."""
    bucket = 5
    t0 = t_bucket * bucket

    def released(order, instants):
        b = Buckets(bucket)
        for (p, x, y, h), wall in zip(order, instants, strict=True):
            assert b.add([_rec(p, t0, (x, y), h)], wall) == []  # nothing leaves before the bucket ends
        return b.add([], t0 + bucket + 0.1)

    base = released(sightings, sorted(t0 + rnd.random() * (bucket - 0.01) for _ in sightings))
    shuffled = list(sightings)
    rnd.shuffle(shuffled)
    other = released(shuffled, sorted(t0 + rnd.random() * (bucket - 0.01) for _ in shuffled))
    assert other == base
    assert len(base) == len({p for p, *_ in sightings})  # one per pseudonym, however often it was seen
    assert [r.pseudonym for r in base] == sorted(r.pseudonym for r in base)  # ordered by value, not by time
    assert all(r.t == t0 for r in base)


def test_the_dominant_cell_leaves_and_a_tie_is_broken_by_value() -> None:
    b = Buckets(5)
    b.add([_rec("a" * 16, 0, (2, 2)), _rec("b" * 16, 0, (7, 1))], 0.0)
    b.add([_rec("a" * 16, 0, (1, 1)), _rec("b" * 16, 0, (3, 1))], 2.0)
    b.add([_rec("a" * 16, 0, (1, 1))], 4.5)
    out = b.add([_rec("a" * 16, 5, (9, 9))], 5.0)
    assert [(r.pseudonym[0], r.cell) for r in out] == [("a", (1, 1)), ("b", (3, 1))]
    assert [r.cell for r in b.flush()] == [(9, 9)]
