"""The exact samplers over a million draws each: chi-square agreement with the exact discrete Laplace and
discrete Gaussian distributions (the unit tests use 20,000 draws to stay fast), and the draw rate.

`python -m bench.dp_samplers [--draws 1000000]`"""

from __future__ import annotations

import argparse
import math
import random
import time
from fractions import Fraction

from firmware.privacy.dp import discrete_gaussian, discrete_laplace, laplace_pmf


def chi_square_p(samples, pmf) -> float:
    from collections import Counter

    import numpy as np
    from scipy import stats

    c = Counter(samples)
    support = range(min(samples) - 1, max(samples) + 2)
    probs = np.array([pmf(z) for z in support])
    probs /= probs.sum()
    obs = np.array([c[z] for z in support], float)
    exp = probs * len(samples)
    keep = exp >= 5
    obs_k = np.append(obs[keep], obs[~keep].sum())
    exp_k = np.append(exp[keep], exp[~keep].sum())
    return float(stats.chisquare(obs_k, exp_k).pvalue)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dp_samplers", description=__doc__)
    ap.add_argument("--draws", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    rng = random.Random(2026)  # seeded for a reproducible report; the device draws from the OS CSPRNG
    cases = [("discrete Laplace, scale 1", lambda: discrete_laplace(Fraction(1), rng),
              lambda z: laplace_pmf(z, Fraction(1))),
             ("discrete Laplace, scale 10/3", lambda: discrete_laplace(Fraction(10, 3), rng),
              lambda z: laplace_pmf(z, Fraction(10, 3))),
             ("discrete Gaussian, sigma^2 9", lambda: discrete_gaussian(Fraction(9), rng),
              lambda z: math.exp(-z * z / 18))]
    for name, draw, pmf in cases:
        t0 = time.perf_counter()
        xs = [draw() for _ in range(args.draws)]
        dt = time.perf_counter() - t0
        print(f"{name:30s} {args.draws:,} draws  chi-square p = {chi_square_p(xs, pmf):.3f}  "
              f"({args.draws / dt:,.0f} draws/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
