"""The IMM filter's maths (firmware.sensing.imm) against filterpy's IMMEstimator and plain Kalman filters, and
the tracker's IMM and lost-track recovery options."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import IMMEstimator, KalmanFilter
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config.sensing import TrackerConfig
from firmware.sensing import imm
from firmware.sensing.tracker import Tracker


def _kf(a: float, b: float, q: tuple[float, float], r: float, x: np.ndarray, p: np.ndarray) -> KalmanFilter:
    kf = KalmanFilter(dim_x=2, dim_z=1)
    kf.F = np.array([[1.0, a], [0.0, b]])
    kf.H = np.array([[1.0, 0.0]])
    kf.Q = np.diag(q)
    kf.R = np.array([[r]])
    kf.x = x.reshape(2, 1).copy()
    kf.P = p.copy()
    return kf


def _cov(t: np.ndarray) -> np.ndarray:
    return np.array([[t[0], t[1]], [t[1], t[2]]])


@settings(max_examples=40, deadline=None, database=None)  # (no example database: tests write only in tmp)
@given(st.integers(0, 2**32 - 1), st.floats(0.03, 1.0), st.floats(0.0, 3.0))
def test_imm_matches_filterpy_on_random_inputs(seed: int, dt: float, rate: float):
    """One coordinate, two models (walking, standing), several steps of random measurements: the models'
    states and covariances, the model probabilities and the estimate equal filterpy's IMMEstimator's."""
    rng = np.random.default_rng(seed)
    a, b = np.array([dt, 0.0]), np.array([1.0, 0.0])
    q = np.array([[0.5, 0.2], [0.5, 0.01]]) * dt
    r = float(rng.uniform(0.1, 2.0))
    x = np.zeros((1, 2, 1, 2))
    x[0, :, 0] = rng.normal(0, 3, (2, 2))
    p = np.zeros((1, 2, 1, 3))
    for j in range(2):
        m = rng.normal(0, 1, (2, 2))
        c = m @ m.T + 0.1 * np.eye(2)
        p[0, j, 0] = c[0, 0], c[0, 1], c[1, 1]
    mu = np.array([[0.3, 0.7]])
    trans = imm.switches(2, rate, dt)
    filters = [_kf(a[j], b[j], tuple(q[j]), r, x[0, j, 0], _cov(p[0, j, 0])) for j in range(2)]
    ref = IMMEstimator(filters, mu[0].copy(), trans)
    for _ in range(5):
        x0, p0, cbar = imm.mix(x, p, mu, trans)
        x, p = imm.predict(x0, p0, a, b, np.repeat(q[None, :, None], 1, 0))
        ref.predict()
        for j in range(2):
            np.testing.assert_allclose(x[0, j, 0], ref.filters[j].x.ravel(), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(_cov(p[0, j, 0]), ref.filters[j].P, rtol=1e-9, atol=1e-9)
        zz = float(rng.normal(x[0, 0, 0, 0], 2.0))
        x, p, mu = imm.update(x, p, cbar, np.array([[zz]]), np.array([[r]]))
        ref.update(np.array([[zz]]))
        np.testing.assert_allclose(mu[0], ref.mu, rtol=1e-9, atol=1e-12)
        xc, pc = imm.combine(x, p, mu)
        np.testing.assert_allclose(xc[0, 0], ref.x.ravel(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(_cov(pc[0, 0]), ref.P, rtol=1e-9, atol=1e-9)
        assert mu.sum() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None, database=None)  # (no example database: tests write only in tmp)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.floats(0.01, 2.0), st.floats(0.0, 5.0))
def test_model_probabilities_stay_a_distribution(seed: int, n: int, dt: float, rate: float):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 50, (n, 2, 2, 2))
    p = np.abs(rng.normal(0, 5, (n, 2, 2, 3)))
    p[..., 1] = 0.0
    mu = rng.dirichlet([1.0, 1.0], n)
    for _ in range(4):
        x0, p0, cbar = imm.mix(x, p, mu, imm.switches(2, rate, dt))
        np.testing.assert_allclose(cbar.sum(1), 1.0)
        x, p = imm.predict(x0, p0, np.array([dt, 0.0]), np.array([1.0, 0.0]), np.full((n, 2, 2, 2), 0.3))
        x, p, mu = imm.update(x, p, cbar, rng.normal(0, 500, (n, 2)), np.full((n, 2), 1.0))
        assert np.all(mu >= 0) and np.all(np.isfinite(mu))
        np.testing.assert_allclose(mu.sum(1), 1.0)
        assert np.all(p[..., 0] > 0) and np.all(p[..., 2] >= 0)


def test_one_model_is_the_plain_kalman_filter():
    """With one (constant-velocity) model the IMM is the Kalman filter, step by step against filterpy's."""
    rng = np.random.default_rng(3)
    dt, r = 0.25, 1.5
    q = np.array([0.2, 0.1])
    x = np.array([[[[10.0, 1.0], [-4.0, 0.5]]]])  # (1, 1, 2, 2): one track, one model, x and y
    p = np.array([[[[4.0, 0.5, 2.0], [3.0, -0.2, 1.0]]]])
    mu = np.ones((1, 1))
    kfs = [_kf(dt, 1.0, tuple(q), r, x[0, 0, c], _cov(p[0, 0, c])) for c in range(2)]
    for _ in range(6):
        x0, p0, cbar = imm.mix(x, p, mu, imm.switches(1, 1.0, dt))
        x, p = imm.predict(x0, p0, np.array([dt]), np.array([1.0]), np.broadcast_to(q, (1, 1, 2, 2)).copy())
        zz = rng.normal(0, 3, 2)
        x, p, mu = imm.update(x, p, cbar, zz[None], np.full((1, 2), r))
        for c, kf in enumerate(kfs):
            kf.predict()
            kf.update(np.array([[zz[c]]]))
            np.testing.assert_allclose(x[0, 0, c], kf.x.ravel(), rtol=1e-12)
            np.testing.assert_allclose(_cov(p[0, 0, c]), kf.P, rtol=1e-12, atol=1e-12)
        assert mu[0, 0] == 1.0


def test_standing_model_takes_over_when_a_walker_stops():
    """A track that walks, then stands: its standing model's probability rises, and the IMM's velocity falls
    to near zero faster than the constant-velocity filter's."""
    fps = 4.0
    plain, withimm = Tracker(), Tracker(TrackerConfig(imm_switch_hz=0.5))
    for f in range(40):
        x = 100 + 30 * min(f, 20) / fps  # 30 px/s for 5 s, then still
        box = np.array([[x, 100, x + 40, 200]])
        a = plain.update(box, np.array([0.9]), 1 / fps)
        b = withimm.update(box, np.array([0.9]), 1 / fps)
        if f == 19:
            assert withimm._imm_mu[0, 0] > 0.5  # walking is the likelier model
        if f == 23:
            assert withimm._imm_mu[0, 1] > 0.5  # standing, a second after the stop
            assert abs(b[0].velocity[0]) < 0.5 * abs(a[0].velocity[0])
    assert np.allclose(withimm._imm_mu.sum(1), 1.0)


def test_recovery_refinds_a_lost_walker_beyond_iou_reach():
    """A walker missed for a second at 2 fps comes back where IoU with its prediction is zero (it sped up):
    with recover_sigma the track takes it under its own id; without, it is a new id."""
    fps = 2.0

    def run(cfg: TrackerConfig) -> set[int]:
        tr, ids = Tracker(cfg), set()
        for f in range(16):
            if f in (6, 7):
                continue  # missed for a second (the clock still runs: dt below spans the gap)
            x = 100 + 40 * f / fps if f < 6 else 100 + 40 * 6 / fps + 90 * (f - 6) / fps
            dt = 1 / fps if f != 8 else 3 / fps
            out = tr.update(np.array([[x, 100, x + 40, 200]]), np.array([0.9]), dt)
            ids |= {t.track_id for t in out}
        return ids

    assert len(run(TrackerConfig())) == 2
    assert len(run(TrackerConfig(recover_sigma=3.0))) == 1


def test_recovery_does_not_take_a_far_box():
    tr = Tracker(TrackerConfig(recover_sigma=3.0))
    for f in range(6):
        tr.update(np.array([[100 + 10 * f, 100, 140 + 10 * f, 200]]), np.array([0.9]), 0.25)
    tr.update(np.zeros((0, 4)), np.zeros(0), 0.25)
    out = tr.update(np.array([[600, 100, 640, 200]]), np.array([0.9]), 0.25)
    assert all(t.track_id != 1 for t in out if t.unseen_s == 0)


def test_imm_config_is_checked():
    with pytest.raises(ValueError, match="imm_switch_hz"):
        TrackerConfig(imm_switch_hz=-1).validate()
    with pytest.raises(ValueError, match="recover_sigma"):
        TrackerConfig(recover_sigma=-1).validate()
