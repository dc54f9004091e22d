"""The [privacy] section: what leaves the device, windows, k, epsilon, budgets and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from firmware.config.checks import divides, number, numbers, whole

MAX_DAILY_EPSILON = 100_000.0
# below this a release is noise only, and exp(-epsilon / sensitivity) rounds to 1 (a ZeroDivisionError once the
# threshold is worked out): a typo or an attack, not a setting
MIN_EPSILON = 0.001
# the threshold's tail is exact down to 1e-26 (analytics._sum_tail): a beta far below that finds no threshold
MIN_BETA = 1e-9
STREAMS = ("occupancy", "flow", "dwell", "heatmap")
TREE_STREAMS = ("flow_total", "visitors_total")  # running totals under continual observation (tree_*)


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
    budget_file: str = "{state_dir}/privacy_budget.sqlite"  # {state_dir}: [device] state_dir
    # the hash-chained privacy audit log: required (see validate); it is what vouches for the budget spent
    audit_file: str = "{state_dir}/audit.jsonl"
    # Running totals of the day (line crossings, visitors) per step, released under continual observation by
    # the binary-tree mechanism (firmware/privacy/continual.py): error growing with log of the day's steps.
    tree_enabled: bool = False
    tree_step_s: int = 60  # one step: a release of every running total (10 to 3600 s, dividing the day)
    tree_epsilon: float = 1.0  # per step and stream (flow_total, visitors_total): one step of data, all nodes
    tree_crossing_cap: int = 2  # crossings one person counts for per step (why 2: docs/TUNING.md)
    # how the tree's epsilon is split over its levels: 0, evenly (Chan, Shi and Song); 1 or 2, the split that
    # minimizes the day's sum of Var(total(t)) t^-weight (2: relative error at a steady rate; continual.level_scales)
    tree_level_weight: int = 0
    tree_gate: bool = True  # a running total is released only once its noised value passes the k threshold
    tree_state_file: str = "{state_dir}/continual_state.json"  # the tree's noised nodes, durable

    def validate(self) -> None:
        if not isinstance(self.audit_file, str) or not self.audit_file.strip():
            # Only the audit log vouches for what was released and spent: without it, the budget store deleted
            # (with the continual state) cannot be told from a new device, and the day is spent again.
            raise ValueError("audit_file: a path is required (differentially private releases are audited; "
                             "the log is what keeps a deleted budget store from being spent again)")
        whole("window_s", self.window_s, 60, 86_400, unit="s")
        whole("k", self.k, 1, 10_000)
        number("epsilon", self.epsilon, MIN_EPSILON, 10)
        # 1e5 is past any spend (10 per window, 1440 windows a day = 14400); above it is a typo or an attack
        number("daily_epsilon", self.daily_epsilon, 0, MAX_DAILY_EPSILON, lo_open=True, zero=True,
               unit="(0: epsilon times the windows of a day)")
        number("beta", self.beta, MIN_BETA, 0.5, hi_open=True)
        numbers("occupancy_split", self.occupancy_split, 0, 1, lo_open=True)
        if len(self.occupancy_split) != 2 or abs(sum(self.occupancy_split) - 1) > 1e-9:
            raise ValueError("occupancy_split: two positive shares (mean, peak) that sum to 1")
        if len(self.dwell_edges_s) > 64:
            raise ValueError("dwell_edges_s: at most 64 edges")
        numbers("dwell_edges_s", self.dwell_edges_s, 0, 86_400, lo_open=True, unit="s")
        if list(self.dwell_edges_s) != sorted(self.dwell_edges_s):
            raise ValueError("dwell_edges_s: positive and increasing")
        number("heatmap_cell_m", self.heatmap_cell_m, 0.1, 100, unit="m")
        for name in ("presence_cap_s", "heat_cap_s"):
            whole(name, getattr(self, name), 1, 86_400, unit="s")
        whole("heat_min_s", self.heat_min_s, 0, 86_400, unit="s")
        whole("max_zones", self.max_zones, 1, 1000)
        whole("max_crossings", self.max_crossings, 1, 1000, zero=True, unit="(0: derived from the window)")
        whole("tree_step_s", self.tree_step_s, 10, 3600, unit="s")
        divides("tree_step_s", self.tree_step_s, 86_400, unit="s")
        number("tree_epsilon", self.tree_epsilon, MIN_EPSILON, 10)
        whole("tree_crossing_cap", self.tree_crossing_cap, 1, 100)
        whole("tree_level_weight", self.tree_level_weight, 0, 2)
        if not isinstance(self.tree_enabled, bool) or not isinstance(self.tree_gate, bool):
            raise ValueError("tree_enabled, tree_gate: true or false")

    @property
    def crossing_cap(self) -> int:
        """Crossings one person counts for per window: `max_crossings`, or when that is 0, 2 for windows under
        five minutes and 4 for longer ones: in a minute a walker crosses a line or two; over a quarter of an
        hour some come back (figures: docs/TUNING.md)."""
        return self.max_crossings or (2 if self.window_s < 300 else 4)

    def budgets(self) -> dict[str, Fraction]:
        per_day = Fraction(str(self.daily_epsilon)) if self.daily_epsilon else \
            Fraction(str(self.epsilon)) * (86_400 // self.window_s)
        out = {s: per_day for s in STREAMS}
        if self.tree_enabled:  # one step's release of each running total costs tree_epsilon
            out.update({s: Fraction(str(self.tree_epsilon)) * (86_400 // self.tree_step_s) for s in TREE_STREAMS})
        return out
