"""Zone rules on the device: occupancy above a limit, presence outside opening hours, dwell past a threshold,
a line crossed the wrong way. Each alert is an umbra.alert/1 record with the rule, the zone, a count or a
duration, and the time rounded down to the alert bucket: no image, no track id, no position.

`AlertEngine.step()` is pure (the tick's wall time, each track's zone and the crossings are its inputs);
`alert_sink()` makes the loop sink that feeds it from a tick and emits what it raises. Entry times per track,
needed for dwell, stay in memory on the device and are forgotten when the track leaves the zone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from firmware.config.alerts import AlertRule, AlertsConfig
from firmware.privacy.audit import AuditSink, audited
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult

Emit = Callable[[Iterable[Mapping[str, Any]]], object]


class AlertEngine:
    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self._entered: dict[int, tuple[str, float]] = {}  # track id -> (zone, entry wall time)
        self._last: dict[int, float] = {}  # rule index -> wall time of its last alert

    def _local_hour(self, wall: float) -> float:
        return ((wall / 3600.0) + self.config.utc_offset_h) % 24

    def _value(self, rule: AlertRule, wall: float, counts: Counter[str], dwell: Mapping[str, float],
               crossings: Sequence[Crossing]) -> tuple[float, float] | None:
        """(value, limit) when `rule` holds now, else None."""
        if rule.rule == "occupancy_above":
            n = counts[rule.zone]
            return (n, rule.limit) if n > rule.limit else None
        if rule.rule == "presence_outside_hours":
            h = self._local_hour(wall)
            inside = rule.open_hour <= h < rule.close_hour
            return (counts[rule.zone], 0) if counts[rule.zone] and not inside else None
        if rule.rule == "dwell_above":
            d = dwell.get(rule.zone, 0.0)
            return (d, rule.dwell_s) if d > rule.dwell_s else None
        wrong = sum(1 for c in crossings if c.line == rule.zone and c.direction != rule.direction)
        return (wrong, 0) if wrong else None

    def _dwell(self, wall: float, zones: Mapping[int, str | None]) -> dict[str, float]:
        for tid in [t for t in self._entered if zones.get(t) != self._entered[t][0]]:
            del self._entered[tid]  # left the zone, or the track ended
        for tid, z in zones.items():
            if z is not None and tid not in self._entered:
                self._entered[tid] = (z, wall)
        out: dict[str, float] = {}
        for z, t0 in self._entered.values():
            out[z] = max(out.get(z, 0.0), wall - t0)
        return out

    def step(self, wall: float, zones: Mapping[int, str | None], crossings: Sequence[Crossing] = ()
             ) -> list[dict[str, Any]]:
        """zones: each confirmed track's zone now (None outside every zone). Returns the alerts raised."""
        counts = Counter(z for z in zones.values() if z is not None)
        dwell = self._dwell(wall, zones)
        bucket, out = self.config.time_bucket_s, []
        for i, rule in enumerate(self.config.rules):
            held = self._value(rule, wall, counts, dwell, crossings)
            if held is None or wall - self._last.get(i, float("-inf")) < self.config.cooldown_s:
                continue
            self._last[i] = wall
            value = float(held[0]) if rule.rule != "dwell_above" else float(int(held[0]) // bucket * bucket)
            out.append({"schema": "umbra.alert/1", "t": int(wall) // bucket * bucket, "rule": rule.rule,
                        "zone": rule.zone, "value": value, "limit": float(held[1])})
        return out


class AlertSink:
    """The loop sink for `[alerts]`: each tick's tracks by zone and its crossings into the engine, what it raises
    to every emitter (the outbox, the aggregates file), each batch audited first (`records_released`, kind
    alert; an entry that cannot be written means the alerts are not emitted: counted in `withheld`).

    Time: alert times, opening hours and dwell are read off the wall clock, so while the sensor's time is not
    trusted (`trusted`, hal.trustedtime) the engine is not stepped at all: no alert is raised or stamped on a
    clock that may be a day off (`held` ticks, audited once as `alerts_held`), and dwell starts afresh once it
    is trusted rather than spanning the step the clock takes then."""

    def __init__(self, engine: AlertEngine, geometry: Geometry, emit: Sequence[Emit], audit: AuditSink | None = None,
                 trusted: Callable[[], bool] | None = None) -> None:
        self.engine, self.geometry, self.emit = engine, geometry, emit
        self._audit, self._trusted = audit, trusted
        self.held = self.withheld = 0
        self._holding = False

    def __call__(self, tick: TickResult) -> None:
        if self._trusted is not None and not self._trusted():
            if not self._holding and self._audit is not None:
                audited(self._audit, "alerts_held", tick.wall, reason="time-untrusted")
            self._holding = True
            self.held += 1
            return
        if self._holding:  # trusted now: nothing carried over from the untrusted clock
            self._holding = False
            self.engine = AlertEngine(self.engine.config)
        g = tick.ground
        names = self.geometry.zone_of(g.xy) if len(g.track_ids) else []
        alerts = self.engine.step(tick.wall, dict(zip((int(t) for t in g.track_ids), names, strict=True)),
                                  tick.crossings)
        if not alerts:
            return
        if self._audit is not None and not audited(self._audit, "records_released", tick.wall, kind="alert",
                                                   count=len(alerts), rules=sorted({a["rule"] for a in alerts})):
            self.withheld += len(alerts)
            return
        for e in self.emit:
            e(alerts)


def alert_sink(config: AlertsConfig, geometry: Geometry, emit: Sequence[Emit], audit: AuditSink | None = None,
               trusted: Callable[[], bool] | None = None) -> AlertSink | None:
    """The loop sink for `[alerts]` (None when off); see `AlertSink`."""
    if not config.enabled:
        return None
    return AlertSink(AlertEngine(config), geometry, emit, audit, trusted)
