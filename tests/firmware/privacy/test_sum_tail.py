"""The k-threshold's and the continual error bound's tail of a sum of discrete Laplace draws: direct convolution
for small sums, one FFT for large ones (a small epsilon, many parts), and the two agree."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.privacy import analytics
from firmware.privacy.analytics import sum_tail, threshold


@pytest.mark.parametrize(("scale", "parts"), [(1.0, 2), (2.5, 5), (6.0, 12), (9.0, 7)])
def test_the_fft_sum_agrees_with_direct_convolution(monkeypatch, scale, parts) -> None:
    direct = sum_tail.__wrapped__(scale, parts)
    monkeypatch.setattr(analytics, "DIRECT_MAX", 0)
    fft = sum_tail.__wrapped__(scale, parts)
    assert fft.shape == direct.shape
    assert np.max(np.abs(fft - direct)) < 1e-13
    assert direct[0] > 0.5 and np.all(np.diff(fft) <= 1e-15)  # a tail: from above one half, never rising


def test_a_small_epsilon_takes_the_fft_and_gives_the_threshold_the_direct_sum_would(monkeypatch) -> None:
    """At a scale of 100 with 12 parts the direct sum is some 1.7e9 multiplications (44 s in the loop); the
    threshold there must be the same as the direct one's at a scale where both are cheap, scaled alike."""
    assert int(60 * 100) + 1 > analytics.DIRECT_MAX // 12
    t_big = threshold(5, analytics.Fraction(100), 0.05, parts=12)
    tail = sum_tail(100.0, 12)
    assert tail[t_big - 4] <= 0.05 < tail[t_big - 5]  # the least t past beta, by the returned tail itself
    q = np.exp(-1 / 100)
    sd = np.sqrt(12 * 2 * q) / (1 - q)  # the sum's standard deviation (a draw's variance is 2q / (1 - q)^2)
    assert 1.0 * sd < t_big - 4 < 2.5 * sd  # a 5% one-sided tail of a near-normal sum: about 1.6 sd
