"""The demographic histograms' release: one count per chain and window, exact discrete noise (here mostly at one
chain a person, L1 sensitivity 1; the bound m in test_demographics_chain_bound), the private k threshold, and
records that carry nothing finer than the zone and the window."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import schemas
from firmware.config.demographics import DemographicsConfig
from firmware.demographics.bands import BANDS, band_of, gender_of
from firmware.demographics.release import (
    DemographicWindow,
    distribution,
    histogram,
    release,
    tv_distance,
)
from firmware.privacy.analytics import threshold

CFG = DemographicsConfig(enabled=True, k=5, epsilon=1.0, window_s=900, max_chains_per_person=1)


def test_bands_and_gender_classes():
    assert [band_of(a) for a in (0.25, 17.9, 18.0, 27.99, 28, 47.5, 57.9, 58, 80)] == [0, 0, 1, 1, 2, 3, 4, 5, 5]
    assert (gender_of(0.5), gender_of(0.51), gender_of(0.1)) == (0, 1, 0)


def test_a_track_counts_once_in_the_zone_it_was_first_estimated_in():
    w = DemographicWindow(CFG, 900)
    assert w.add(7, "door", 30.0, 0.9)
    assert w.add(7, "till", 34.0, 0.7)  # a later crop elsewhere still averages into its one count
    assert w.add(7, "till", 32.0, 0.8)
    assert not w.add(7, "door", 70.0, 0.0)  # beyond crops_per_track: refused, kept nowhere
    w.add(8, "till", 10.0, 0.2)
    h = w.close(["door", "till"])
    assert h["door"].sum() == 1 and h["door"][2, 1] == 1  # mean age 32, mean p_male 0.8
    assert h["till"].sum() == 1 and h["till"][0, 0] == 1
    assert w.held() == 0 and w.estimates(7) == 0


def test_a_track_in_no_configured_zone_is_not_counted():
    w = DemographicWindow(CFG, 0)
    w.add(1, "gone", 40.0, 0.9)
    assert sum(int(h.sum()) for h in w.close(["door"]).values()) == 0


def test_without_noise_the_counts_are_exact_and_the_record_is_valid():
    true = np.arange(12).reshape(6, 2)
    (rec,) = release({"door": true}, CFG, 1800, noise=False)
    schemas.validate(rec)
    assert rec["counts"] == true.tolist() and rec["epsilon"] == 0.0 and rec["mechanism"] == "none"
    assert release({"door": np.zeros((6, 2), int)}, CFG, 1800, noise=False) == []


def test_noise_is_the_exact_sampler_with_scale_one_over_epsilon():
    true = np.full((6, 2), 50)
    rng = random.Random(3)
    diffs = []
    for _ in range(300):
        (rec,) = release({"z": true}, DemographicsConfig(epsilon=0.5, max_chains_per_person=1), 0, rng=rng)
        diffs += [c - 50 for row in rec["counts"] for c in row]
    var = float(np.var(diffs))
    q = np.exp(-0.5)
    assert abs(var - 2 * q / (1 - q) ** 2) < 0.6  # discrete Laplace, scale 2: variance 7.5
    assert all(isinstance(d, int) for d in diffs)


def test_fewer_than_k_people_are_released_at_most_beta_of_the_time():
    rng = random.Random(11)
    true = np.zeros((6, 2), int)
    true[1, 0], true[3, 1] = 2, 2  # 4 people: k - 1
    released = sum(bool(release({"z": true}, CFG, 0, rng=rng)) for _ in range(2000))
    assert released <= 2000 * CFG.beta * 1.3
    many = np.full((6, 2), 3)  # 36 people pass nearly always
    assert sum(bool(release({"z": many}, CFG, 0, rng=rng)) for _ in range(200)) >= 195


def test_per_cell_suppression_withholds_small_cells_as_null():
    cfg = DemographicsConfig(k=5, epsilon=1.0, suppress_cells=True, max_chains_per_person=1)
    true = np.zeros((6, 2), int)
    true[2, 1] = 200
    true[4, 0] = 1
    (rec,) = release({"z": true}, cfg, 0, rng=random.Random(5))
    assert rec["counts"][2][1] >= 190 and rec["counts"][4][0] is None
    assert threshold(5, 1, 0.05) > 5


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=12, max_size=12), start=st.integers(0, 10**6),
       seed=st.integers(0, 2**32), suppress=st.booleans(), m=st.integers(1, 6))
def test_every_released_record_is_valid_and_says_nothing_finer_than_the_window(counts, start, seed, suppress, m):
    cfg = DemographicsConfig(k=5, epsilon=1.0, suppress_cells=suppress, window_s=600, max_chains_per_person=m)
    ws = start // 600 * 600
    for rec in release({"door": np.array(counts).reshape(6, 2)}, cfg, ws, rng=random.Random(seed)):
        schemas.validate(rec)
        assert set(rec) == {"schema", "window_start", "window_s", "zone", "bands", "genders", "counts", "k",
                            "epsilon", "sensitivity", "mechanism", "estimator"}
        assert rec["window_start"] % rec["window_s"] == 0 and rec["sensitivity"] == m
        assert rec["bands"] == list(BANDS)


def test_the_schema_refuses_a_record_with_a_track_or_a_finer_time():
    (rec,) = release({"door": np.full((6, 2), 9)}, CFG, 900, noise=False)
    for extra in ({"track_id": 3}, {"pseudonym": "ab"}, {"group": 4}, {"t": 901.5}):
        with pytest.raises(schemas.SchemaError):
            schemas.validate({**rec, **extra})
    with pytest.raises(schemas.SchemaError):
        schemas.validate({**rec, "counts": [[1, -1]] * 6})


def test_distribution_and_distance():
    assert tv_distance(distribution([[1, 1]] * 6), distribution([[2, 2]] * 6)) == 0.0
    one = np.zeros(12)
    one[0] = 5
    assert tv_distance(distribution(one), distribution(np.eye(12)[1])) == 1.0
    assert histogram([(30.0, 0.9), (70.0, 0.1)])[2, 1] == 1


def test_config_bounds_name_the_key():
    for bad, key in ((dict(k=0), "k"), (dict(epsilon=0), "epsilon"), (dict(crops_per_track=0), "crops_per_track"),
                     (dict(tick_share=1.5), "tick_share")):
        with pytest.raises(ValueError, match=key):
            DemographicsConfig(**bad).validate()
    assert DemographicsConfig(window_s=900).daily_budget() == 96
