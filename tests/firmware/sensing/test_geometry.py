from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.sensing.calibrate import fit_homography_from_mot
from firmware.sensing.geometry import Geometry, segment_crossings


def test_homography_maps_points_and_scale():
    h = ((2.0, 0.0, 1.0), (0.0, 2.0, -1.0), (0.0, 0.0, 1.0))
    g = Geometry(GeometryConfig(homography=h))
    out = g.to_ground(np.array([[0.0, 0.0], [1.0, 2.0]]))
    assert np.allclose(out, [[1.0, -1.0], [3.0, 3.0]])
    assert np.allclose(g.metres_per_pixel(np.array([[5.0, 5.0]])), [2.0])


def test_zones_first_match_and_outside():
    cfg = GeometryConfig(zones=(
        ZoneConfig("a", ((0, 0), (2, 0), (2, 2), (0, 2))),
        ZoneConfig("b", ((1, 1), (4, 1), (4, 4), (1, 4))),
    ))
    g = Geometry(cfg)
    assert g.zone_of(np.array([[0.5, 0.5], [1.5, 1.5], [3, 3], [9, 9]])) == ["a", "a", "b", None]


def test_line_crossing_directions():
    a, b = np.array([0.0, 0.0]), np.array([0.0, 10.0])
    p = np.array([[1, 5], [-1, 5], [1, 15], [1, 5], [1, 5]], dtype=float)
    q = np.array([[-1, 5], [1, 5], [-1, 15], [2, 5], [0, 5]], dtype=float)
    assert segment_crossings(p, q, a, b).tolist() == [1, -1, 0, 0, 1]


@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=2, max_size=30))
def test_a_path_crosses_net_once_per_side_change(path):
    """Along any path, the +/- crossings of a long line sum to the net change of side."""
    pts = np.array(path)
    a, b = np.array([0.0, -100.0]), np.array([0.0, 100.0])
    s = segment_crossings(pts[:-1], pts[1:], a, b)
    left = lambda x: x <= 0  # noqa: E731 (left of an upward line is x <= 0)
    assert s.sum() == int(left(pts[-1, 0])) - int(left(pts[0, 0]))


def test_calibration_on_pets09_is_centimetre_accurate(shared_data):
    fit = fit_homography_from_mot(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")
    assert fit.points > 4000
    assert fit.median_error_m < 0.05
    g = Geometry(GeometryConfig(homography=fit.homography,
                                lines=(LineConfig("x", (-8, -20), (-8, 10)),)))
    assert g.to_ground(np.array([[499 + 15.5, 158 + 75.17]]))[0] == pytest_approx((-4.1554, -7.3591), 0.15)


def pytest_approx(v, tol):
    import pytest

    return pytest.approx(np.array(v), abs=tol)


@given(st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20)), max_size=6),
       st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20), st.floats(0, 3)), max_size=6))
def test_the_join_rule_pairs_each_track_once_within_reach_nearest_first(born, ended):
    from firmware.sensing.geometry import JOIN_M, WALK_MPS, join_pairs

    b = np.array(born, np.float64).reshape(-1, 2)
    e = np.array([x[:2] for x in ended], np.float64).reshape(-1, 2)
    gap = np.array([x[2] for x in ended], np.float64)
    pairs = join_pairs(b, e, gap)
    assert len({j for j, _ in pairs}) == len(pairs) == len({m for _, m in pairs})
    dist = {(j, m): float(np.hypot(*(e[m] - b[j]))) for j in range(len(b)) for m in range(len(e))}
    reach = JOIN_M + WALK_MPS * gap
    assert all(dist[p] <= reach[p[1]] for p in pairs)
    # greedy nearest first: no unpaired newborn and unpaired ended track within reach of each other are left
    free_b = set(range(len(b))) - {j for j, _ in pairs}
    free_e = set(range(len(e))) - {m for _, m in pairs}
    assert not any(dist[(j, m)] <= reach[m] for j in free_b for m in free_e)
