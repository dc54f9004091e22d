"""The demographics' contribution bound: one person may form several chains in a window (the device cannot tell
people apart across a gap), so the release's noise is scaled to `max_chains_per_person` m. Adding one person who
forms up to m chains (a chain shared with another person, an identity switch, counted twice) moves the window's
pre-noise histograms by at most m in L1, and the noise is discrete Laplace of scale m / epsilon in every cell,
so the two windows' outputs are within exp(epsilon) of each other."""

from __future__ import annotations

import importlib
import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import parse, to_toml
from firmware.config.demographics import DemographicsConfig
from firmware.demographics.release import DemographicWindow, noise_scale, release, sensitivity
from firmware.errors import ConfigError
from firmware.privacy.dp import laplace_pmf

rel = importlib.import_module("firmware.demographics.release")  # the module (the package exports the function)
ZONES = ("door", "till")
AGE = st.floats(0, 90)
P_MALE = st.floats(0, 1)
CROP = st.tuples(st.sampled_from(ZONES), AGE, P_MALE)


def _window(cfg: DemographicsConfig, slots: dict[int, list[tuple[str, float, float]]]) -> dict[str, np.ndarray]:
    w = DemographicWindow(cfg, 0)
    for slot, crops in slots.items():
        for zone, age, p in crops:
            w.add(slot, zone, age, p)
    return w.close(ZONES)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 6), others=st.lists(st.lists(CROP, min_size=1, max_size=3), max_size=12),
       person=st.data())
def test_one_person_of_up_to_m_chains_moves_the_histograms_by_at_most_m(m, others, person):
    cfg = DemographicsConfig(k=5, epsilon=1.0, max_chains_per_person=m)
    assert sensitivity(cfg) == m
    base = dict(enumerate(others))
    # the person: some chains of their own (new slots) and some shared with another person's chain (their crops
    # average into it, which may move its count to another cell); own + 2 * shared <= m
    shared = person.draw(st.integers(0, min(m // 2, len(base))))
    own = person.draw(st.integers(0 if shared else 1, m - 2 * shared))
    with_person = {s: list(c) for s, c in base.items()}
    for s in person.draw(st.permutations(list(base)))[:shared]:
        # the chain was the person's first (their crops taken first, the other's later ones refused past
        # crops_per_track): the slot may take another zone and cell
        with_person[s] = person.draw(st.lists(CROP, min_size=1, max_size=3)) + with_person[s]
    for j in range(own):
        with_person[1000 + j] = person.draw(st.lists(CROP, min_size=1, max_size=3))
    a, b = _window(cfg, base), _window(cfg, with_person)
    l1 = sum(int(np.abs(a[z] - b[z]).sum()) for z in ZONES)
    assert l1 <= own + 2 * shared <= m
    # the noise (discrete Laplace of scale m / epsilon a cell) makes any output within exp(epsilon) as likely
    scale = float(noise_scale(cfg))
    rng = np.random.default_rng(len(others))
    out = {z: b[z] + rng.integers(-8, 9, size=b[z].shape) for z in ZONES}
    log_ratio = sum(float(np.log(laplace_pmf(out[z] - a[z], scale)).sum()
                          - np.log(laplace_pmf(out[z] - b[z], scale)).sum()) for z in ZONES)
    assert abs(log_ratio) <= cfg.epsilon + 1e-9


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 8), eps=st.sampled_from([0.5, 1.0, 2.0, 10.0]), seed=st.integers(0, 2**32))
def test_the_noise_scale_and_the_stated_sensitivity_follow_m(m, eps, seed):
    cfg = DemographicsConfig(k=5, epsilon=eps, max_chains_per_person=m)
    seen: list[Fraction] = []
    real = rel.discrete_laplace

    def spy(scale: Fraction, rng: random.Random) -> int:
        seen.append(scale)
        return real(scale, rng)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rel, "discrete_laplace", spy)
        recs = release({"door": np.full((6, 2), 400)}, cfg, 0, rng=random.Random(seed))
    assert seen == [Fraction(m) / Fraction(str(eps))] * 12
    assert all(r["sensitivity"] == m for r in recs)


def test_the_noise_spread_is_that_of_scale_m_over_epsilon():
    cfg = DemographicsConfig(epsilon=1.0, max_chains_per_person=3)
    rng = random.Random(7)
    diffs = [c - 200 for _ in range(300) for row in release({"z": np.full((6, 2), 200)}, cfg, 0, rng=rng)[0]["counts"]
             for c in row]
    q = math.exp(-1 / 3)
    assert abs(float(np.var(diffs)) - 2 * q / (1 - q) ** 2) < 0.15 * 2 * q / (1 - q) ** 2  # variance 17.5


def test_the_bound_is_validated_by_name():
    assert DemographicsConfig().max_chains_per_person >= 1
    for bad in (0, -1, 21, 2.5, True, "4", float("nan"), None):
        with pytest.raises(ValueError, match="max_chains_per_person"):
            DemographicsConfig(max_chains_per_person=bad).validate()  # type: ignore[arg-type]
    DemographicsConfig(max_chains_per_person=20).validate()
    for bad in ("0", "21", "2.5", '"four"', "inf"):
        with pytest.raises(ConfigError) as e:
            parse(f"[demographics]\nmax_chains_per_person = {bad}\n")
        assert "max_chains_per_person" in str(e.value) and "\n" not in str(e.value)
    assert parse(to_toml({"demographics": {"max_chains_per_person": 7}})).demographics.max_chains_per_person == 7


def test_the_dpia_states_the_bound_and_what_it_does_not_cover():
    from dataclasses import replace as with_

    from firmware.config import load
    from firmware.privacy.dpia import generate_dpia
    cfg = load(Path(__file__).resolve().parents[3] / "bench/configs/pets09.toml")
    md = generate_dpia(with_(cfg, demographics=DemographicsConfig(enabled=True, epsilon=0.5)), now=0.0)
    assert "at most 6 chains a person (max_chains_per_person, L1 sensitivity 6)" in md
    assert "protected at epsilon m'/6" in md and "0 to 1.6% of a left-out sequence's person-windows went past 6" in md
    assert "noise of scale 6 / epsilon a cell" in md
    assert "who forms at most 6 chains of tracks (sensitivity 6)" in md  # the composition table's unit
    md3 = generate_dpia(with_(cfg, demographics=DemographicsConfig(enabled=True, max_chains_per_person=3)), now=0.0)
    assert "at most 3 chains a person" in md3 and "measured against 6" in md3 and "1.6%" not in md3
