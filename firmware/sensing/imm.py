"""An interacting-multiple-model (IMM) filter over many tracks at once, for the tracker's box centre: each track
has M motion models, each a Kalman filter of independent coordinates, every coordinate a (position, velocity)
pair with its 2x2 covariance kept as its three distinct terms (p11, p12, p22). The models share the
measurement (the position) and are mixed by a Markov chain of switches between them (Blom and Bar-Shalom,
1988; the equations as filterpy's `IMMEstimator` writes them, vectorized over tracks in numpy).

A model's step is x' = x + a v, v' = b v with process noise (q11, q22): constant velocity is (a, b) = (dt, 1),
a person standing still (0, 0) (the velocity forgotten, the position a random walk). The tracker's use: walkers
who stop, wait and walk on (`TrackerConfig.imm_switch_hz`).

Shapes: x (N, M, D, 2) position and velocity; p (N, M, D, 3) p11, p12, p22; mu (N, M) model probabilities.
Mixing keeps each coordinate's block apart (the spread of the models' means adds its outer product within a
block only; the cross-coordinate terms a full covariance would gain are left out, as the tracker keeps
coordinates independent)."""

from __future__ import annotations

import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))


def switches(m: int, rate_hz: float, dt: float) -> np.ndarray:
    """The (M, M) Markov matrix of model switches over `dt` seconds: each model is left at `rate_hz` (for the
    others alike), so a row is 1 - p on its diagonal and p / (M - 1) elsewhere, p = 1 - exp(-rate dt)."""
    if m == 1:
        return np.ones((1, 1))
    p = 1.0 - float(np.exp(-rate_hz * max(dt, 0.0)))
    out = np.full((m, m), p / (m - 1))
    np.fill_diagonal(out, 1.0 - p)
    return out


def mix(x: np.ndarray, p: np.ndarray, mu: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """The IMM's interaction step: each model's starting state and covariance, mixed from all models' by the
    chance that the track was in model i given that it is now in model j; and the predicted model
    probabilities cbar = mu @ trans. Returns (x0, p0, cbar)."""
    cbar = mu @ trans  # (N, M)
    omega = mu[:, :, None] * trans[None]  # (N, i, j)
    omega /= np.maximum(cbar, 1e-300)[:, None, :]
    x0 = np.einsum("nij,nidk->njdk", omega, x)
    d = x[:, :, None] - x0[:, None]  # (N, i, j, D, 2): model i's mean less model j's mixed one
    spread = np.stack((d[..., 0] * d[..., 0], d[..., 0] * d[..., 1], d[..., 1] * d[..., 1]), -1)
    spread += p[:, :, None]
    p0 = np.einsum("nij,nijdk->njdk", omega, spread)
    return x0, p0, cbar


def predict(x: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray, q: np.ndarray) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Each model's prediction: x' = x + a v, v' = b v (a, b: (M,) per model), covariance F P F' + Q with Q the
    (N, M, D, 3) noise terms (q11, q12, q22), or (N, M, D, 2) diagonal noise (q11, q22)."""
    if q.shape[-1] == 2:
        q = np.stack((q[..., 0], np.zeros_like(q[..., 0]), q[..., 1]), -1)
    a = a[None, :, None]
    b = b[None, :, None]
    pos, vel = x[..., 0], x[..., 1]
    p11, p12, p22 = p[..., 0], p[..., 1], p[..., 2]
    xn = np.stack((pos + a * vel, b * vel), -1)
    pn = np.stack((p11 + 2.0 * a * p12 + a * a * p22 + q[..., 0], b * (p12 + a * p22) + q[..., 1],
                   b * b * p22 + q[..., 2]), -1)
    return xn, pn


def update(x: np.ndarray, p: np.ndarray, cbar: np.ndarray, z: np.ndarray, r: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray,
                                                                                                 np.ndarray]:
    """Each model takes the measured positions `z` (N, D) of variance `r` (N, D); the model probabilities become
    cbar times each model's likelihood of its innovation, normalized. Returns (x, p, mu)."""
    p11, p12, p22 = p[..., 0], p[..., 1], p[..., 2]
    s = p11 + r[:, None]
    innov = z[:, None] - x[..., 0]
    k1, k2 = p11 / s, p12 / s
    xn = np.stack((x[..., 0] + k1 * innov, x[..., 1] + k2 * innov), -1)
    keep = r[:, None] / s  # 1 - k1
    pn = np.stack((p11 * keep, p12 * keep, p22 - k2 * p12), -1)
    # (in logs, so a measurement far from every model still leaves the likeliest one its weight)
    logw = -0.5 * (innov * innov / s + np.log(s) + _LOG_2PI).sum(-1)  # (N, M) log likelihoods
    logw += np.log(np.maximum(cbar, 1e-300))
    logw -= logw.max(1, keepdims=True)
    mu = np.exp(logw)
    mu /= mu.sum(1, keepdims=True)
    return xn, pn, mu


def combine(x: np.ndarray, p: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The IMM's estimate: the models' means weighted by `mu`, and their covariances plus the spread of their
    means. Returns x (N, D, 2) and p (N, D, 3)."""
    w = mu[:, :, None, None]
    xc = (w * x).sum(1)
    d = x - xc[:, None]
    spread = np.stack((d[..., 0] * d[..., 0], d[..., 0] * d[..., 1], d[..., 1] * d[..., 1]), -1)
    spread += p
    return xc, (w * spread).sum(1)
