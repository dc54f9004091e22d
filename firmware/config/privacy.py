"""The [privacy] section: what leaves the device, windows, k, epsilon, budgets and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

STREAMS = ("occupancy", "flow", "dwell", "heatmap")


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    profile: Literal["tracks", "aggregates"] = "aggregates"  # what leaves: quantized tracks, or aggregates only
    window_s: int = 900  # aggregation window (60 to 86400 s)
    k: int = 5  # smallest group released
    epsilon: float = 1.0  # per release: one window of one stream
    daily_epsilon: float = 0.0  # per stream and UTC day; 0 means epsilon times the windows in a day
    beta: float = 0.05  # chance that a group smaller than k is released anyway (the noised threshold)
    occupancy_split: tuple[float, float] = (0.8, 0.2)  # the occupancy stream's epsilon: mean, peak
    dwell_edges_s: tuple[float, ...] = (30.0, 120.0)  # histogram bucket edges
    heatmap_cell_m: float = 2.0
    presence_cap_s: int = 480  # most seconds of presence one person may add to a window's mean occupancy
    heat_cap_s: int = 120  # people-seconds one person may add to the heatmap per window
    heat_min_s: int = 10  # a heatmap cell needs k people's worth of this many seconds
    max_zones: int = 2  # zones one person counts in per window
    max_crossings: int = 0  # line crossings one person counts for per window; 0: derived (crossing_cap)
    budget_file: str = "/var/lib/umbra/privacy_budget.sqlite"
    audit_file: str = "/var/lib/umbra/audit.jsonl"  # the hash-chained privacy audit log; "" for none

    def validate(self) -> None:
        if not 60 <= self.window_s <= 86_400:
            raise ValueError(f"window_s: 60 to 86400 seconds, got {self.window_s}")
        if self.k < 1:
            raise ValueError("k: 1 or more")
        if not 0 < self.epsilon <= 10:
            raise ValueError(f"epsilon: above 0 and at most 10, got {self.epsilon}")
        if self.daily_epsilon < 0:
            raise ValueError("daily_epsilon: 0 (derived) or positive")
        if not 0 < self.beta < 0.5:
            raise ValueError("beta: between 0 and 0.5")
        if len(self.occupancy_split) != 2 or min(self.occupancy_split) <= 0 or \
                abs(sum(self.occupancy_split) - 1) > 1e-9:
            raise ValueError("occupancy_split: two positive shares (mean, peak) that sum to 1")
        if list(self.dwell_edges_s) != sorted(self.dwell_edges_s) or any(e <= 0 for e in self.dwell_edges_s):
            raise ValueError("dwell_edges_s: positive and increasing")
        if min(self.max_zones, self.heat_cap_s, self.presence_cap_s) < 1 or self.heatmap_cell_m <= 0:
            raise ValueError("max_zones, presence_cap_s, heat_cap_s, heatmap_cell_m: positive")
        if self.max_crossings < 0:
            raise ValueError(f"max_crossings: 0 (derived from the window) or positive, got {self.max_crossings}")

    @property
    def crossing_cap(self) -> int:
        """Crossings one person counts for per window: `max_crossings`, or when that is 0, 2 for windows under
        five minutes and 4 for longer ones: in a minute a walker crosses a line or two; over a quarter of an
        hour some come back (figures: docs/TUNING.md)."""
        return self.max_crossings or (2 if self.window_s < 300 else 4)

    def budgets(self) -> dict[str, Fraction]:
        per_day = Fraction(str(self.daily_epsilon)) if self.daily_epsilon else \
            Fraction(str(self.epsilon)) * (86_400 // self.window_s)
        return {s: per_day for s in STREAMS}
