"""The exact samplers against their exact distributions (chi-square, seeded so the test is deterministic),
and against OpenDP's discrete Laplace as an independent oracle."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from firmware.privacy.dp import (
    bernoulli_exp,
    discrete_gaussian,
    discrete_laplace,
    exact,
    geometric_mechanism,
    laplace_pmf,
    laplace_tail,
    laplace_var,
)

N = 20_000


def chi_square_p(samples: list[int], pmf) -> float:
    """p-value of a chi-square test of `samples` against `pmf`, tails pooled so every cell expects >= 5."""
    c = Counter(samples)
    lo, hi = min(samples), max(samples)
    support = range(lo - 1, hi + 2)
    probs = np.array([pmf(z) for z in support])
    probs = probs / probs.sum()
    obs = np.array([c[z] for z in support], float)
    exp = probs * len(samples)
    keep = exp >= 5
    obs_k = np.append(obs[keep], obs[~keep].sum())
    exp_k = np.append(exp[keep], exp[~keep].sum())
    if exp_k[-1] < 5:
        obs_k[-2] += obs_k[-1]
        exp_k[-2] += exp_k[-1]
        obs_k, exp_k = obs_k[:-1], exp_k[:-1]
    return float(stats.chisquare(obs_k, exp_k).pvalue)


@pytest.mark.parametrize("scale", [Fraction(1, 3), Fraction(2), Fraction(7, 2), Fraction(25)])
def test_discrete_laplace_has_the_exact_distribution(scale):
    rng = random.Random(f"lap-{scale}")
    xs = [discrete_laplace(scale, rng) for _ in range(N)]
    assert chi_square_p(xs, lambda z: laplace_pmf(z, scale)) > 0.001
    assert abs(np.mean(xs)) < 5 * math.sqrt(np.var(xs) / N)  # symmetric


@pytest.mark.parametrize("sigma2", [Fraction(1, 2), Fraction(4), Fraction(30)])
def test_discrete_gaussian_has_the_exact_distribution(sigma2):
    rng = random.Random(f"gauss-{sigma2}")
    xs = [discrete_gaussian(sigma2, rng) for _ in range(N)]
    assert chi_square_p(xs, lambda z: math.exp(-(z**2) / (2 * float(sigma2)))) > 0.001
    # the discrete Gaussian's variance is a little below sigma^2 (CKS Prop. 19), never above
    assert np.var(xs) == pytest.approx(float(sigma2), rel=0.05)


def test_a_wrong_distribution_fails_the_same_check():
    rng = random.Random("wrong")
    xs = [discrete_laplace(Fraction(2), rng) for _ in range(N)]
    assert chi_square_p(xs, lambda z: laplace_pmf(z, Fraction(5, 2))) < 0.001  # the test has teeth


def test_bernoulli_exp_is_exact_in_probability():
    rng = random.Random("bexp")
    for gamma in (Fraction(0), Fraction(1, 4), Fraction(1), Fraction(5, 2)):
        hits = sum(bernoulli_exp(gamma, rng) for _ in range(N))
        p = math.exp(-float(gamma))
        assert abs(hits / N - p) < 5 * math.sqrt(p * (1 - p) / N) + 1e-9


ORACLE_N = 40_000
ORACLE_ALPHA = 1e-6


def test_agrees_with_opendp_discrete_laplace():
    """OpenDP draws from the OS's randomness and cannot be seeded, so this test alone is random: it fails on a
    correct sampler with probability ORACLE_ALPHA (it was 1e-3 at N draws). Twice the draws keep its power:
    told apart from scale 3.15 in a third of runs, as before (a scratch run of 400 trials each with numpy's
    discrete Laplace in both roles); scale 3.3 always."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=3.0)
    theirs = meas([0] * ORACLE_N)  # independent draws, one call
    rng = random.Random("opendp")
    ours = [discrete_laplace(Fraction(3), rng) for _ in range(ORACLE_N)]
    support = range(-15, 16)
    a = np.array([sum(1 for x in theirs if x == z) for z in support] + [sum(1 for x in theirs if abs(x) > 15)])
    b = np.array([sum(1 for x in ours if x == z) for z in support] + [sum(1 for x in ours if abs(x) > 15)])
    table = np.vstack((a, b))
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table).pvalue > ORACLE_ALPHA


def test_mechanism_and_helpers():
    rng = random.Random(3)
    assert exact(0.1) == Fraction(1, 10)
    noisy = [geometric_mechanism(100, 1, exact(1.0), rng) for _ in range(2000)]
    assert abs(np.mean(noisy) - 100) < 0.2
    # the tail formula agrees with the pmf
    assert laplace_tail(3, Fraction(2)) == pytest.approx(sum(laplace_pmf(z, Fraction(2)) for z in range(3, 200)))
    with pytest.raises(ValueError):
        discrete_laplace(Fraction(0))
    with pytest.raises(ValueError):
        geometric_mechanism(1, 0, Fraction(1))


def test_default_randomness_is_the_os_csprng():
    import secrets

    from firmware.privacy import dp

    assert isinstance(dp.SYSTEM, secrets.SystemRandom)


def test_empirical_privacy_neighbouring_counts_stay_within_e_to_the_epsilon():
    """Datasets differing in one person (counts 20 and 21): for every output seen often enough, the observed
    likelihood ratio of the released value stays within e^eps plus sampling error."""
    eps = Fraction(1)
    n = 60_000
    rng = random.Random("neighbours")
    a = Counter(geometric_mechanism(20, 1, eps, rng) for _ in range(n))
    b = Counter(geometric_mechanism(21, 1, eps, rng) for _ in range(n))
    worst = 0.0
    for z in set(a) | set(b):
        if a[z] >= 500 and b[z] >= 500:  # enough draws for the ratio to mean something
            worst = max(worst, a[z] / b[z], b[z] / a[z])
            slack = 4 * math.sqrt(1 / a[z] + 1 / b[z])  # ~4 sigma of the log-ratio estimate
            assert math.log(a[z] / b[z]) <= float(eps) + slack
            assert math.log(b[z] / a[z]) <= float(eps) + slack
    assert worst > math.exp(0.8)  # the bound is nearly tight: the test would see a leak


@pytest.mark.parametrize("scale", [Fraction(1), Fraction(2), Fraction(10, 3)])
def test_laplace_variance_is_the_distributions(scale):
    zs = range(-int(80 * scale), int(80 * scale) + 1)
    assert laplace_var(scale) == pytest.approx(sum(z * z * laplace_pmf(z, scale) for z in zs), rel=1e-9)
