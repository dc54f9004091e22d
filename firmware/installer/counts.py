"""Running counts of a sensor run: crossings per count line and direction (the loop's exact crossings, at
its detect rate) and occupancy per zone (tracks standing in it now, the most at once, the mean over ticks).
A loop sink; it holds counts only, no track ids or positions. Read from another thread through `snapshot()`."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import EndsRun, RunEnd, TickResult
from firmware.sensing.records import QuantizedTrack


@dataclass(frozen=True, slots=True)
class CountSnapshot:
    lines: dict[tuple[str, str], int]  # (line, "+"/"-") -> crossings
    zones_now: dict[str, int]
    zones_peak: dict[str, int]
    zones_mean: dict[str, float]
    ticks: int
    records_by_kind: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "lines": [{"line": ln, "direction": d, "count": n} for (ln, d), n in sorted(self.lines.items())],
            "zones": [{"zone": z, "now": self.zones_now[z], "peak": self.zones_peak[z],
                       "mean": round(self.zones_mean[z], 3)} for z in self.zones_now],
        }


class RunCounts(EndsRun):
    """`sink(result)` each tick; `snapshot()` at any time."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self._lines: Counter[tuple[str, str]] = Counter(
            {(ln.name, d): 0 for ln in geometry.config.lines for d in "+-"})
        self._zones = [z.name for z in geometry.config.zones]
        self._now = dict.fromkeys(self._zones, 0)
        self._peak = dict.fromkeys(self._zones, 0)
        self._sum = dict.fromkeys(self._zones, 0)
        self._zticks = dict.fromkeys(self._zones, 0)  # ticks each zone has been counted in (its mean's base)
        self._ticks = 0
        self._kinds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def set_geometry(self, geometry: Geometry) -> CountSnapshot:
        """The zones and lines changed while running (firmware.installer.live). A line or zone that is
        unchanged (same name, same ends or corners) keeps its counts; a new or changed one is counted from
        zero; a removed or changed one leaves the running counts. Returns the counts as they stood before,
        for the caller to record (nothing counted is lost)."""
        before = self.snapshot()
        old_lines = {ln.name: ln for ln in self.geometry.config.lines}
        old_zones = {z.name: z for z in self.geometry.config.zones}
        with self._lock:
            self._lines = Counter({(ln.name, d): (self._lines[(ln.name, d)] if old_lines.get(ln.name) == ln else 0)
                                   for ln in geometry.config.lines for d in "+-"})
            kept = {z.name for z in geometry.config.zones if old_zones.get(z.name) == z}
            self._zones = [z.name for z in geometry.config.zones]
            self._now = {z: self._now[z] if z in kept else 0 for z in self._zones}
            self._peak = {z: self._peak[z] if z in kept else 0 for z in self._zones}
            self._sum = {z: self._sum[z] if z in kept else 0 for z in self._zones}
            self._zticks = {z: self._zticks[z] if z in kept else 0 for z in self._zones}
            self.geometry = geometry
        return before

    def end_run(self, end: RunEnd) -> None:
        """The loop stopped: only the last bucket's records (no tick, nobody seen)."""
        with self._lock:
            self._kinds[QuantizedTrack.SCHEMA] += len(end.records)

    def __call__(self, result: TickResult) -> None:
        inside = Counter(z for z in self.geometry.zone_of(result.ground.xy) if z is not None) if self._zones else {}
        with self._lock:
            for c in result.crossings:
                self._lines[(c.line, c.direction)] += 1
            self._ticks += 1
            for z in self._zones:
                n = inside.get(z, 0)
                self._now[z] = n
                self._peak[z] = max(self._peak[z], n)
                self._sum[z] += n
                self._zticks[z] += 1
            if result.records:
                self._kinds[QuantizedTrack.SCHEMA] += len(result.records)

    def released(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Counts records released beside the tracks (aggregates, flow groups, samples) by schema."""
        with self._lock:
            for r in records:
                self._kinds[str(r.get("schema", "?"))] += 1

    def snapshot(self) -> CountSnapshot:
        with self._lock:
            return CountSnapshot(dict(self._lines), dict(self._now), dict(self._peak),
                                 {z: self._sum[z] / max(self._zticks[z], 1) for z in self._zones}, self._ticks,
                                 dict(self._kinds))
