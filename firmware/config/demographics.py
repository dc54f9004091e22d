"""The [demographics] section: age band by gender histograms per zone and window, noised and k-thresholded (off by
default). Like every section here it imports nothing from the rest of firmware; validate raises ValueError, which
the loader turns into a ConfigError naming the section."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from firmware.config.checks import number, whole
from firmware.config.privacy import MAX_DAILY_EPSILON, MIN_BETA, MIN_EPSILON

STREAM = "demographics"  # the accountant's stream name
MAX_CHAINS = 20  # max_chains_per_person at most: beyond it the noise drowns any window a site could have


@dataclass(frozen=True, slots=True)
class DemographicsConfig:
    """When `enabled` (and zones are configured), `umbra run` estimates the age band and gender of a few face
    crops of each confirmed track in a zone, on the device, and at each window's end releases one
    umbra.demographics/1 record per zone: a 6 x 2 histogram (age bands 0-17, 18-27, 28-37, 38-47, 48-57, 58+
    by female / male) with exact discrete Laplace noise, each chain of tracks (the device's best guess at one
    person, `firmware.demographics.chains`) counted once per window in the first zone it was estimated in,
    released only when the noised total clears the private k threshold. A person may form several chains (a
    track lost for longer than the join time, or leaving and coming back): the noise is scaled to
    `max_chains_per_person` chains a person (L1 sensitivity m for the whole window), so epsilon holds for a
    person who forms at most m and one who forms m' > m is protected at epsilon m'/m. See
    firmware.demographics."""

    enabled: bool = False
    window_s: int = 900  # one histogram per zone per window (windows start at multiples of window_s)
    k: int = 5  # a zone's histogram needs (privately) at least k people
    epsilon: float = 1.0  # per window, all zones together (each track counts in one zone)
    daily_epsilon: float = 0.0  # the stream's budget per UTC day; 0: epsilon times the windows in a day
    beta: float = 0.05  # chance that fewer than k people are released anyway
    suppress_cells: bool = False  # also withhold (null) each cell whose noised count is below the k threshold
    # m: the chains one person may form in a window (a chain shared with another person, an identity switch,
    # counted twice); the release's L1 sensitivity. 6: the least covering 99% of the other sequences' person-windows
    # in every leave-one-sequence-out fold of bench.demographics_chains (0.6 to 1.6% of the left-out ones above it)
    max_chains_per_person: int = 6
    crops_per_track: int = 3  # face estimates averaged per track per window
    crop_gap_s: float = 1.0  # a track's first crop when seen in a zone, the next after this, each gap doubled
    max_estimates_per_tick: int = 1  # estimates per loop tick at most
    tick_share: float = 0.8  # estimate only while the tick so far plus one estimate stays within this share
    # of the loop's period, on the loop's clock
    head_share: float = 0.4  # the top share of a person's box cut as the head crop
    min_head_px: int = 24  # head crops narrower than this (source pixels) are not estimated
    threads: int = 1  # ONNX Runtime threads per model

    def validate(self) -> None:
        whole("window_s", self.window_s, 10, 86_400, unit="s")
        whole("k", self.k, 1, 1000)
        number("epsilon", self.epsilon, MIN_EPSILON, 10)
        number("daily_epsilon", self.daily_epsilon, 0, MAX_DAILY_EPSILON, lo_open=True, zero=True,
               unit="(0: epsilon times the windows of a day)")
        number("beta", self.beta, MIN_BETA, 0.5, hi_open=True)
        whole("max_chains_per_person", self.max_chains_per_person, 1, MAX_CHAINS)
        whole("crops_per_track", self.crops_per_track, 1, 20)
        number("crop_gap_s", self.crop_gap_s, 0, 3600, lo_open=True, unit="s")
        whole("max_estimates_per_tick", self.max_estimates_per_tick, 1, 16)
        number("tick_share", self.tick_share, 0, 1, lo_open=True)
        number("head_share", self.head_share, 0.1, 1)
        whole("min_head_px", self.min_head_px, 4, 4096, unit="px")
        whole("threads", self.threads, 1, 8)

    def daily_budget(self) -> Fraction:
        if self.daily_epsilon:
            return Fraction(str(self.daily_epsilon))
        return Fraction(str(self.epsilon)) * (86_400 // self.window_s)

    def budgets(self) -> dict[str, Fraction]:
        return {STREAM: self.daily_budget()}
