"""Customer-flow groups on the running sensor: the loop's track hook that feeds `firmware.flows.groups`.

Each tick (inside the frame's scope, after the tracker: `SensorLoop.track_hooks`) the hook notes the zone of
every confirmed track (its foot point on the ground) and embeds a few of them:
- per track and window at most `crops_per_track` crops, spread over the track's life: the first when the
  track is first seen in a zone in the window, the next `crop_gap_s` later, each gap twice the last
  (1, 2, 4, 8 s by default), so a short visit still gets several crops and a long one its whole stay;
- at most `max_embeds_per_tick` crops per tick (the most starved tracks first), and only while the tick,
  from its frame's capture, plus the last embeddings' cost stays within `tick_share` of the loop's period
  (a due crop waits for a later tick: `deferred`), so the loop keeps its cadence (an embedding's cost:
  `python -m bench.flowgroups_loop`);
- a crop is copied out of the frame (the main stream when there is one, it has more pixels per person),
  embedded, and zeroed at once; the embedder zeroes its own resized copy and the model's input. The frame
  is held that much longer (the tracker and any embedding run before its release on these ticks).
Only the window's per-track embedding sums (`FlowGroupWindow`) and the period's population statistics
(`PopulationStats`: mean and top principal directions, no identity) stay in memory. At the window's end
each zone's padded group counts go to `emit` and the audit log (`flowgroups_released`); the sums, track
ids and the crop schedule are dropped.

The population basis is fitted on the device: provisionally from the first `basis_min` embeddings after start
(nothing is released before: the window is dropped and `flowgroups_withheld` audited), then at each period's
start from the whole previous period. The hyperplanes come from a key drawn from the injected generator for
each period (OS randomness in production), so a restart re-draws them: group numbers before and after a
restart cannot be matched, by the cloud or anyone else.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from firmware.config.flows import FlowGroupConfig
from firmware.flows.groups import Basis, FlowGroupWindow, FlowHasher, PopulationStats
from firmware.privacy.audit import AuditSink, NoAudit, audited
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.tickbudget import TickBudget
from firmware.sensing.tracker import Track
from hal.clock import Clock
from hal.embedder import cut
from hal.errors import DetectorError
from hal.frame import Frame

log = logging.getLogger(__name__)

MIN_CROP_PX = 400  # smaller boxes (source pixels, e.g. 10 x 40) say too little to be worth an embedding
ZONE_EVERY_NS = 500_000_000  # tracks' zones looked up twice a second: a track's zone is where it was most


class EmbedderLike(Protocol):
    def embed(self, crop: np.ndarray) -> np.ndarray: ...


@dataclass(slots=True)
class _Due:
    crops: int
    due_ns: int
    gap_ns: int


class FlowGroupHook:
    """`hook(frame, tracks, wall)` each tick; `close_window(wall)` at shutdown (the partial window).
    `emit(records)` takes a list of umbra.flowgroups/1 JSON records. Raises nothing from the embedder: a
    failed embedding is counted (`errors`) and logged."""

    def __init__(self, config: FlowGroupConfig, embedder: EmbedderLike, geometry: Geometry,
                 emit: Callable[[list[dict[str, Any]]], Any], audit: AuditSink | None = None,
                 rng: np.random.Generator | None = None, clock: Clock | None = None,
                 period_s: float = 0.0) -> None:
        """With `clock` and the loop's `period_s`, a crop is embedded only while the tick (from its frame's
        capture) plus the embedding's recent cost stays within `tick_share` of the period."""
        config.validate()
        self.config, self.embedder, self.geometry = config, embedder, geometry
        self.zones = tuple(z.name for z in geometry.config.zones)
        self._emit, self._audit = emit, audit if audit is not None else NoAudit()
        self._rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        self._window: FlowGroupWindow | None = None
        self._due: dict[int, _Due] = {}
        self._zone: dict[int, str | None] = {}  # each track's zone at the last look
        self._zones_due_ns = 0
        self._stats = PopulationStats()
        self._period: int | None = None  # the period of the open window (hyperplanes and basis follow it)
        self._basis: Basis | None = None
        self._hasher: FlowHasher | None = None
        self._budget = TickBudget(clock, int(config.tick_share * period_s * 1e9))
        self.embedded = 0
        self.deferred = 0  # ticks on which a due crop waited for lack of time
        self.errors = 0
        self.withheld = 0  # records never released: their audit entry could not be written
        # whether the sensor's wall time is trusted (hal.trustedtime; None: always): until it is, ticks are held
        # (`held`, audited once), so no window is opened, paid for or stamped on a clock that may be a day off
        self.trusted: Callable[[], bool] | None = None
        self.held = 0
        self._window_embedded = self._window_deferred = 0

    def _hold(self, wall: float) -> bool:
        """True (counted, audited once) while the wall time is untrusted: no window opened, no crop cut."""
        if self.trusted is None or self.trusted():
            return False
        if not self.held:
            audited(self._audit, "flowgroups_held", wall, reason="time-untrusted")
        self.held += 1
        return True

    def __call__(self, frame: Frame, tracks: Sequence[Track], wall: float) -> None:
        if self._hold(wall):
            return
        cfg = self.config
        start = int(wall // cfg.window_s) * cfg.window_s
        if self._window is not None and self._window.window_start != start:
            self.close_window(wall)
        if self._window is None:
            self._window = FlowGroupWindow(cfg, start)
            self._roll_period(start // cfg.period_s)
        if not tracks:
            return
        if frame.t_mono_ns >= self._zones_due_ns:  # where everyone stands, twice a second
            self._zones_due_ns = frame.t_mono_ns + ZONE_EVERY_NS
            for t, zone in zip(tracks, self._zones(tracks), strict=True):
                self._zone[t.track_id] = zone
                if zone is not None:
                    self._window.seen(t.track_id, zone)
        zones = [self._zone.get(t.track_id) for t in tracks]
        for t in self._pick(tracks, zones, frame.t_mono_ns):
            if not self._budget.room(frame.t_mono_ns):
                self._window_deferred += 1
                self.deferred += 1
                break
            self._embed(frame, t)

    def _zones(self, tracks: Sequence[Track]) -> list[str | None]:
        boxes = np.array([t.box for t in tracks], np.float64).reshape(-1, 4)
        feet = np.column_stack(((boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3]))
        return self.geometry.zone_of(self.geometry.to_ground(feet))

    def _pick(self, tracks: Sequence[Track], zones: Sequence[str | None], now_ns: int) -> list[Track]:
        """The tracks due a crop this tick, fewest crops first, at most `max_embeds_per_tick`."""
        cfg = self.config
        gap = int(cfg.crop_gap_s * 1e9)
        due = []
        for t, zone in zip(tracks, zones, strict=True):
            if zone is None:
                continue
            d = self._due.setdefault(t.track_id, _Due(0, now_ns, gap))
            if d.crops < cfg.crops_per_track and now_ns >= d.due_ns:
                due.append((d.crops, d.due_ns, t))
        due.sort(key=lambda x: (x[0], x[1]))
        return [t for _, _, t in due[: cfg.max_embeds_per_tick]]

    def _embed(self, frame: Frame, track: Track) -> None:
        d = self._due[track.track_id]
        d.crops += 1  # a crop too small or failed still uses its turn, so one track cannot starve others
        d.due_ns = frame.t_mono_ns + d.gap_ns
        d.gap_ns *= 2
        sw, sh = frame.source_size
        x0, y0, x1, y1 = track.box
        if (x1 - x0) * (y1 - y0) < MIN_CROP_PX:
            return
        src = frame.main if frame.main is not None else frame.pixels
        crop = cut(src, np.array([x0 / sw, y0 / sh, x1 / sw, y1 / sh]))
        try:
            with self._budget.measure():
                emb = np.asarray(self.embedder.embed(crop), np.float32)
        except DetectorError as e:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.warning("flowgroups: embedding failed (%d so far): %s", self.errors, e)
            return
        finally:
            crop.fill(0)
        assert self._window is not None
        self._window.add_embedding(track.track_id, emb)
        self._stats.add(emb)
        emb.fill(0.0)
        self.embedded += 1
        self._window_embedded += 1

    def _roll_period(self, period: int) -> None:
        """At a new period: the basis from the finished period's population (when it saw at least
        `basis_min` crops; else the last basis stays), its statistics dropped, and new hyperplanes."""
        if self._period == period:
            return
        if self._period is not None:
            if self._stats.count() >= self.config.basis_min:
                self._basis = self._stats.basis(self.config.dims)
            self._stats.clear()
        self._period = period
        self._hasher = None
        if self._basis is not None:
            self._hasher = FlowHasher(self.config, self._basis, self._rng.bytes(32), period)

    def _current_hasher(self) -> FlowHasher | None:
        if self._hasher is None and self._period is not None and self._stats.count() >= self.config.basis_min:
            self._basis = self._stats.basis(self.config.dims)  # provisional, in the first period after start
            self._hasher = FlowHasher(self.config, self._basis, self._rng.bytes(32), self._period)
        return self._hasher

    def close_window(self, wall: float) -> list[dict[str, Any]]:
        """Releases the open window (if any): one record per configured zone. Returns the records."""
        win, self._window = self._window, None
        self._due.clear()
        self._zone.clear()
        self._zones_due_ns = 0
        embedded, deferred = self._window_embedded, self._window_deferred
        self._window_embedded = self._window_deferred = 0
        if win is None:
            return []
        hasher = self._current_hasher()
        if hasher is None:
            win.discard()
            audited(self._audit, "flowgroups_withheld", wall, window_start=win.window_start,
                    reason=f"no population basis yet ({self._stats.count()} of {self.config.basis_min} embeddings)",
                    crops=embedded, deferred_ticks=deferred)
            return []
        records = [r.to_json() for r in win.close(hasher, self._rng, self.zones)]
        if records:  # audited first: records the log never recorded must never leave (a full disk fails here)
            if not audited(self._audit, "flowgroups_released", wall, window_start=win.window_start,
                           window_s=self.config.window_s, records=len(records),
                           groups=sum(len(r["groups"]) for r in records), min_count=self.config.min_count,
                           crops=embedded, deferred_ticks=deferred):
                self.withheld += len(records)
                return []
            self._emit(records)
        return records

    def held_tracks(self) -> int:
        """Tracks with anything held (crop schedule or embedding sums): 0 right after a window closes."""
        return max(len(self._due), len(self._zone), self._window.held() if self._window is not None else 0)


def build_flow_hook(config: FlowGroupConfig, loop: SensorLoop, emit_to: Sequence[Callable[[list], Any]],
                    audit: AuditSink | None = None, embedder: EmbedderLike | None = None,
                    rng: np.random.Generator | None = None) -> FlowGroupHook | None:
    """The hook `umbra run` adds to `loop.track_hooks` (the loop's geometry, clock and period), or None
    (and no model loaded) when `[flowgroups]` is off, no zone is configured or there is nowhere to release
    to (sync off and no aggregates file)."""
    geometry = loop.quantizer.geometry
    if not config.enabled:
        return None
    if not geometry.config.zones:
        log.warning("flowgroups: no zones in [geometry], so no flow groups are released")
        return None
    if not emit_to:
        log.warning("flowgroups: sync is off and [output] aggregates_file is empty: nowhere to release to")
        return None
    if embedder is None:
        from hal.embedder import Embedder, EmbedderConfig

        embedder = Embedder(EmbedderConfig(edgetpu=config.edgetpu, threads=config.threads))
        log.info("flowgroups: embedding on %s", embedder.backend)

    def emit(records: list) -> None:
        for target in emit_to:
            target(records)

    return FlowGroupHook(config, embedder, geometry, emit, audit, rng, loop.clock, 1.0 / loop.config.detect_hz)
