"""Exact discrete noise for differential privacy: the discrete Laplace (two-sided geometric) and discrete
Gaussian samplers of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (2020),
Algorithms 1-3. Integer and rational arithmetic only: no floating point touches the noise, so its low bits
cannot leak the value (Mironov, CCS 2012). Randomness comes from the operating system's CSPRNG
(`secrets.SystemRandom`) unless a source with the same `randrange` is injected (tests use a seeded one).
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from math import exp, isqrt
from typing import Protocol


class RandomSource(Protocol):
    def randrange(self, stop: int, /) -> int: ...


SYSTEM = secrets.SystemRandom()


def exact(x: float | int | Fraction | str) -> Fraction:
    """A config number as an exact fraction: 0.1 is 1/10, not 3602879701896397/2**55."""
    return x if isinstance(x, Fraction) else Fraction(str(x))


def bernoulli(p: Fraction, rng: RandomSource = SYSTEM) -> bool:
    """True with probability p (0 <= p <= 1), exactly."""
    if not 0 <= p <= 1:
        raise ValueError(f"probability {p} outside [0, 1]")
    return rng.randrange(p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, rng: RandomSource = SYSTEM) -> bool:
    """True with probability exp(-gamma), gamma >= 0 rational (CKS Algorithm 1)."""
    gamma = exact(gamma)
    if gamma < 0:
        raise ValueError(f"gamma {gamma} < 0")
    return _bernoulli_exp(gamma.numerator, gamma.denominator, rng)


def _bernoulli_exp(n: int, d: int, rng: RandomSource) -> bool:
    """exp(-n/d) for integers n >= 0, d >= 1, in integer arithmetic (the samplers' inner loop)."""
    while n > d:  # exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma)))
        if not _bernoulli_exp(1, 1, rng):
            return False
        n -= d
    k = 1
    while rng.randrange(d * k) < n:  # Bernoulli(gamma / k)
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, rng: RandomSource = SYSTEM) -> int:
    """Z with P[Z = z] proportional to exp(-|z| / scale) (CKS Algorithm 2, with scale = t/s)."""
    scale = exact(scale)
    if scale <= 0:
        raise ValueError(f"scale {scale} must be positive")
    t, s = scale.numerator, scale.denominator
    while True:
        u = rng.randrange(t)
        if not _bernoulli_exp(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp(1, 1, rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction, rng: RandomSource = SYSTEM) -> int:
    """Z with P[Z = z] proportional to exp(-z^2 / (2 sigma^2)) (CKS Algorithm 3)."""
    sigma2 = exact(sigma2)
    if sigma2 <= 0:
        raise ValueError(f"variance {sigma2} must be positive")
    t = _isqrt_floor(sigma2) + 1
    while True:
        y = discrete_laplace(Fraction(t), rng)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if bernoulli_exp(gamma, rng):
            return y


def _isqrt_floor(x: Fraction) -> int:
    """floor(sqrt(x)) exactly for a non-negative rational."""

    r = isqrt(x.numerator // x.denominator)
    while (r + 1) ** 2 <= x:
        r += 1
    return r


def laplace_pmf(z, scale: Fraction | float):
    """The exact distribution, for tests and accuracy bounds: (1 - q) / (1 + q) * q^|z| with q = exp(-1/scale).
    `z` an integer or a NumPy array of them (then an array of probabilities)."""

    q = exp(-1 / float(scale))
    return (1 - q) / (1 + q) * q ** abs(z)


def laplace_var(scale: Fraction) -> float:
    """The variance of the discrete Laplace distribution: 2q / (1 - q)^2 with q = exp(-1/scale)."""

    q = exp(-1 / float(scale))
    return 2 * q / (1 - q) ** 2


def laplace_tail(threshold: int, scale: Fraction) -> float:
    """P[Z >= threshold] for threshold >= 1: q^threshold / (1 + q)."""

    q = exp(-1 / float(scale))
    return q**threshold / (1 + q)


def geometric_mechanism(value: int, sensitivity: int, epsilon: Fraction, rng: RandomSource = SYSTEM) -> int:
    """value + discrete Laplace noise of scale sensitivity/epsilon: epsilon-DP for an integer query whose
    L1 sensitivity is `sensitivity`."""
    if sensitivity < 1:
        raise ValueError("sensitivity must be a positive integer")
    return int(value) + discrete_laplace(Fraction(sensitivity) / exact(epsilon), rng)


def gaussian_mechanism(value: int, sensitivity: int, rho: Fraction, rng: RandomSource = SYSTEM) -> int:
    """value + discrete Gaussian noise with sigma^2 = sensitivity^2 / (2 rho): rho-zCDP for an integer query
    whose L2 sensitivity is `sensitivity`."""
    if sensitivity < 1:
        raise ValueError("sensitivity must be a positive integer")
    return int(value) + discrete_gaussian(Fraction(sensitivity**2) / (2 * exact(rho)), rng)
