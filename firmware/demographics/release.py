"""A window's demographic histograms and their private release. Pure: no clock, no I/O; noise from an injected
random source (the OS CSPRNG in production).

Accumulation (`DemographicWindow`): per contribution slot (a chain of tracks the hook's join rule took for one
walker, `firmware.demographics.hook`; a number that is no track id or pseudonym, reset each window), the sums
of its crops' estimates (expected age, male probability) and the zone it was first estimated in. These sums
are in memory only, for the open window; they are never stored, logged or emitted, and `close()` zeroes and
drops them. At the close each slot becomes one count: the band of its mean age by the class of its mean male
probability, in its zone.

Release (`release`): a slot adds 1 to one cell of one zone's histogram. The device cannot tell people apart
beyond its chains (`firmware.demographics.chains`: a track lost and born again within the join time near where
it ended is the same slot; a person lost for longer, reborn further away, or who leaves and comes back, has one
slot per chain), so one person moves the window's histograms (all zones together) by as many counts as they
form chains, and by 2 for a chain they share with another person (an identity switch: their crops may move
the chain's count to another cell). The bound is configured, not enforced: `max_chains_per_person` m is the
L1 sensitivity (L-inf is m too: all of a person's chains may fall in one cell), and each of a zone's 12 cells
gets discrete Laplace noise of scale m/epsilon (firmware.privacy.dp, the same sampler as the other
aggregates): epsilon-DP for every person who moves the histograms by at most m, and by group privacy epsilon
m'/m for one who moves them by m' > m (bench.demographics_chains measures how often that happens).
Private k-thresholding as firmware.privacy.analytics does it: a zone is released only when the sum of its
noised cells reaches `analytics.threshold(k, m/epsilon, beta, parts=12)`, so a zone with fewer than k slots is
released with probability at most beta and the decision is itself DP (k counts slots, as the histogram does:
fewer than k people may form k slots). With `suppress_cells`, each cell must also reach
`threshold(k, m/epsilon, beta)` alone, or is released as null.
Released values are clipped at 0 (post-processing).

What the record carries: the zone, the window's start and length, the noised counts; no track, pseudonym,
flow group or time finer than the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from firmware.config.demographics import DemographicsConfig
from firmware.demographics.bands import BANDS, CELLS, GENDERS, band_of, gender_of
from firmware.privacy.analytics import threshold
from firmware.privacy.dp import SYSTEM, RandomSource, discrete_laplace, exact

SCHEMA = "umbra.demographics/1"
ESTIMATOR = "dlib_age_v1+dlib_gender_v1"


@dataclass(slots=True)
class _Votes:
    zone: str
    n: int = 0
    age_sum: float = 0.0
    male_sum: float = 0.0

    def clear(self) -> None:
        self.n, self.age_sum, self.male_sum = 0, 0.0, 0.0


class DemographicWindow:
    """One window's estimates, per contribution slot until the close. `add(slot, zone, age, p_male)` returns
    False (and keeps nothing) once the slot has `crops_per_track` estimates."""

    def __init__(self, config: DemographicsConfig, window_start: int) -> None:
        self.config, self.window_start = config, window_start
        self._votes: dict[int, _Votes] = {}

    def add(self, slot: int, zone: str, age: float, p_male: float) -> bool:
        v = self._votes.setdefault(slot, _Votes(zone))
        if v.n >= self.config.crops_per_track:
            return False
        v.n += 1
        v.age_sum += float(age)
        v.male_sum += float(p_male)
        return True

    def estimates(self, slot: int) -> int:
        v = self._votes.get(slot)
        return v.n if v is not None else 0

    def held(self) -> int:
        return len(self._votes)

    def close(self, zones: Iterable[str]) -> dict[str, np.ndarray]:
        """The true (6, 2) count histogram of every zone; the per-slot sums are zeroed and dropped."""
        out = {z: np.zeros((len(BANDS), len(GENDERS)), np.int64) for z in zones}
        for v in self._votes.values():
            if v.n and v.zone in out:
                out[v.zone][band_of(v.age_sum / v.n), gender_of(v.male_sum / v.n)] += 1
            v.clear()
        self._votes.clear()
        return out


def histogram(estimates: Iterable[tuple[float, float]]) -> np.ndarray:
    """The (6, 2) count histogram of (age, p_male) pairs, one person each (for benches and tests)."""
    out = np.zeros((len(BANDS), len(GENDERS)), np.int64)
    for age, p_male in estimates:
        out[band_of(age), gender_of(p_male)] += 1
    return out


def release(counts: dict[str, np.ndarray], config: DemographicsConfig, window_start: int, *,
            rng: RandomSource = SYSTEM, noise: bool = True) -> list[dict[str, Any]]:
    """The umbra.demographics/1 records of one window (zones whose noised total clears the k threshold),
    in zone order. The caller has paid epsilon for the window. `noise=False` only for the bench's 'no privacy'
    rows (then the gate is the plain count >= k)."""
    eps = exact(config.epsilon)
    scale = noise_scale(config)
    zone_gate = threshold(config.k, scale, config.beta, parts=CELLS) if noise else config.k
    cell_gate = threshold(config.k, scale, config.beta) if noise else config.k
    out = []
    for zone, true in counts.items():
        flat = [int(c) for c in np.asarray(true).reshape(-1)]
        if len(flat) != CELLS:
            raise ValueError(f"zone {zone}: a histogram has {CELLS} cells, not {len(flat)}")
        noised = [c + discrete_laplace(scale, rng) for c in flat] if noise else flat
        if sum(noised) < zone_gate:
            continue
        cells: list[int | None] = [max(c, 0) for c in noised]
        if config.suppress_cells:
            cells = [c if n >= cell_gate else None for c, n in zip(cells, noised, strict=True)]
        out.append(_record(config, window_start, zone, cells, float(eps) if noise else 0.0))
    return out


def sensitivity(config: DemographicsConfig) -> int:
    """The window's L1 sensitivity (all zones together): the chains one person may form, each one count."""
    return config.max_chains_per_person


def noise_scale(config: DemographicsConfig) -> Fraction:
    """Each cell's discrete Laplace scale: sensitivity / epsilon, exactly."""
    return Fraction(sensitivity(config)) / exact(config.epsilon)


def _record(config: DemographicsConfig, window_start: int, zone: str, cells: Sequence[int | None],
            epsilon: float) -> dict[str, Any]:
    g = len(GENDERS)
    return {"schema": SCHEMA, "window_start": int(window_start), "window_s": config.window_s, "zone": zone,
            "bands": list(BANDS), "genders": list(GENDERS),
            "counts": [list(cells[i * g:(i + 1) * g]) for i in range(len(BANDS))],
            "k": config.k, "epsilon": epsilon, "sensitivity": sensitivity(config),
            "mechanism": "discrete_laplace" if epsilon else "none", "estimator": ESTIMATOR}


def distribution(cells: np.ndarray | Sequence[Any]) -> np.ndarray:
    """A histogram (nulls and negatives as 0) as a distribution over its cells (uniform when empty)."""
    flat = np.array([0 if c is None else max(float(c), 0.0) for c in np.asarray(cells, dtype=object).reshape(-1)])
    total = flat.sum()
    return flat / total if total > 0 else np.full(len(flat), 1.0 / len(flat))


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())
