"""Demographics on the running sensor: the loop's track hook that feeds `firmware.demographics.release`.

Each tick (inside the frame's scope, after the tracker: `SensorLoop.track_hooks`) the hook notes the zone of
every confirmed track (its foot point on the ground, twice a second) and estimates a few of them:
- per track and window at most `crops_per_track` head crops: the first when the track is first seen in a
  zone in the window, the next `crop_gap_s` later, each gap twice the last;
- at most `max_estimates_per_tick` a tick (the tracks with fewest estimates first), and only while the tick,
  from its frame's capture, plus the recent cost of one estimate stays within `tick_share` of the loop's
  period (a due crop waits for a later tick: `deferred`);
- the head crop (the top `head_share` of the person's box, from the main stream when there is one) is copied
  out of the frame, given to the estimator (BlazeFace finds the face, the dlib networks estimate it; every chip
  and tensor there is zeroed before it returns), and zeroed at once.
Each chain of tracks counts once per window: the count, the crops and their schedule belong to a chain's slot in
the open window, not to a track (`firmware.demographics.chains`: a track seen for the first time in the window
takes over the slot of the nearest track that ended near where it is born, by the line counter's join rule,
`[geometry] count_join_s`), so a track the tracker lost and started again as another id is one contribution, not
two. What it cannot do: a person whose track is lost for longer than `count_join_s` (or reborn further away), or
who leaves and comes back after it, opens a new slot and counts again; the release's noise is scaled to
`max_chains_per_person` such chains a person (`release`).
An estimate only adds to its slot's sums in the open window (`DemographicWindow`, memory only); it is never
logged, stored or emitted. At the window's end the epsilon is charged to the `demographics` stream (whatever
the data: the spend reveals nothing), each zone's histogram is released or withheld privately, the records go
to `emit` and the audit log says what was released (counts of records and estimates, never a value), and
the sums, the slots, the track ids and their last ground points (kept only while a track may still be joined)
and the crop schedule are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware.config.demographics import STREAM, DemographicsConfig
from firmware.demographics.chains import Chains
from firmware.demographics.release import DemographicWindow, release
from firmware.errors import AuditError
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditSink, NoAudit, audited
from firmware.privacy.dp import SYSTEM, RandomSource
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.tickbudget import TickBudget
from firmware.sensing.tracker import Track
from hal.agegender import AgeGenderEstimator
from hal.clock import Clock
from hal.embedder import cut
from hal.errors import DetectorError
from hal.frame import Frame

log = logging.getLogger(__name__)

ZONE_EVERY_NS = 500_000_000  # tracks' zones looked up twice a second


@dataclass(slots=True)
class _Due:
    crops: int
    due_ns: int
    gap_ns: int


class DemographicsHook:
    """`hook(frame, tracks, wall)` each tick; `close_window(wall)` at shutdown (the partial window).
    `emit(records)` takes a list of umbra.demographics/1 records. A failed estimate is counted (`errors`) and
    logged (the error, never a face or an estimate); nothing is raised from the estimator."""

    def __init__(self, config: DemographicsConfig, estimator: AgeGenderEstimator, geometry: Geometry,
                 accountant: Accountant, emit: Callable[[list[dict[str, Any]]], Any],
                 audit: AuditSink | None = None, rng: RandomSource = SYSTEM, clock: Clock | None = None,
                 period_s: float = 0.0) -> None:
        config.validate()
        self.config, self.estimator, self.geometry, self.accountant = config, estimator, geometry, accountant
        self.zones = tuple(z.name for z in geometry.config.zones)
        self._emit, self._audit, self._rng = emit, audit if audit is not None else NoAudit(), rng
        self._window: DemographicWindow | None = None
        self._due: dict[int, _Due] = {}  # slot -> its crop schedule
        self._zone: dict[int, str | None] = {}  # track id -> its zone, looked up twice a second
        # the chains (join rule as the line counter's, geometry `count_join_s`): each track's slot in the open
        # window, and the join points of the tracks that may still be joined; all cleared when the window closes
        self._chains = Chains(geometry.config.count_join_s)
        self._zones_due_ns = 0
        self._budget = TickBudget(clock, int(config.tick_share * period_s * 1e9))
        self.estimated = self.deferred = self.errors = self.no_face = 0
        self.withheld = 0  # records never released: their audit entry could not be written
        # whether the sensor's wall time is trusted (hal.trustedtime; None: always): until it is, ticks are held
        # (`held`, audited once), so no window is opened, paid for or stamped on a clock that may be a day off
        self.trusted: Callable[[], bool] | None = None
        self.held = 0
        self._win_estimates = self._win_deferred = 0

    def _hold(self, wall: float) -> bool:
        """True (counted, audited once) while the wall time is untrusted: no window opened, no crop cut."""
        if self.trusted is None or self.trusted():
            return False
        if not self.held:
            audited(self._audit, "demographics_held", wall, reason="time-untrusted")
        self.held += 1
        return True

    def __call__(self, frame: Frame, tracks: Sequence[Track], wall: float) -> None:
        if self._hold(wall):
            return
        start = int(wall // self.config.window_s) * self.config.window_s
        if self._window is not None and self._window.window_start != start:
            self.close_window(wall)
        if self._window is None:
            self._window = DemographicWindow(self.config, start)
        if not tracks:
            return
        ground = self._ground(tracks)
        self._chains.slots([t.track_id for t in tracks], ground, frame.t_mono_ns)
        if frame.t_mono_ns >= self._zones_due_ns:
            self._zones_due_ns = frame.t_mono_ns + ZONE_EVERY_NS
            for t, zone in zip(tracks, self.geometry.zone_of(ground), strict=True):
                self._zone[t.track_id] = zone
        for t in self._pick(tracks, frame.t_mono_ns):
            if not self._budget.room(frame.t_mono_ns):
                self.deferred += 1
                self._win_deferred += 1
                break
            self._estimate(frame, t)

    def _ground(self, tracks: Sequence[Any]) -> np.ndarray:
        """The tracks' foot points (the bottom centre of the box) on the ground, (N, 2)."""
        boxes = np.array([t.box for t in tracks], np.float64).reshape(-1, 4)
        feet = np.column_stack(((boxes[:, 0] + boxes[:, 2]) * 0.5, boxes[:, 3]))
        return self.geometry.to_ground(feet)

    def _pick(self, tracks: Sequence[Any], now_ns: int) -> list[Any]:
        cfg = self.config
        due = []
        slots: set[int] = set()
        for t in tracks:
            slot = self._chains.slot(t.track_id)
            if self._zone.get(t.track_id) is None or slot in slots:
                continue
            slots.add(slot)  # two tracks of one chain (an old id the tracker found again): one turn
            d = self._due.setdefault(slot, _Due(0, now_ns, int(cfg.crop_gap_s * 1e9)))
            if d.crops < cfg.crops_per_track and now_ns >= d.due_ns:
                due.append((d.crops, d.due_ns, t))
        due.sort(key=lambda x: (x[0], x[1]))
        return [t for _, _, t in due[: cfg.max_estimates_per_tick]]

    def head_box(self, frame: Frame, box: Sequence[float]) -> np.ndarray | None:
        """The head crop's normalized xyxy box (the top `head_share` of the person's box, made square-ish
        around its centre line), or None when it is narrower than `min_head_px` source pixels."""
        sw, sh = frame.source_size
        x0, y0, x1, y1 = (float(v) for v in box)
        w = x1 - x0
        if w < self.config.min_head_px:
            return None
        h = max((y1 - y0) * self.config.head_share, w)
        cx = (x0 + x1) / 2
        return np.array([max(cx - h / 2, 0) / sw, max(y0, 0) / sh, min(cx + h / 2, sw) / sw, min(y0 + h, sh) / sh])

    def _estimate(self, frame: Frame, track: Track) -> None:
        slot = self._chains.slot(track.track_id)
        d = self._due[slot]
        d.crops += 1  # a crop without a face still uses its turn, so one track cannot starve others
        d.due_ns = frame.t_mono_ns + d.gap_ns
        d.gap_ns *= 2
        head = self.head_box(frame, track.box)
        if head is None:
            return
        src = frame.main if frame.main is not None else frame.pixels
        crop = cut(src, head)
        try:
            with self._budget.measure():
                est = self.estimator.estimate(crop)
        except DetectorError as e:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.warning("demographics: an estimate failed (%d so far): %s", self.errors, e)
            return
        finally:
            crop.fill(0)
        if est is None:
            self.no_face += 1
            return
        zone = self._zone.get(track.track_id)
        assert self._window is not None and zone is not None
        if self._window.add(slot, zone, est.age, est.p_male):
            self.estimated += 1
            self._win_estimates += 1
        del est

    def close_window(self, wall: float) -> list[dict[str, Any]]:
        """Releases the open window (if any): at most one record per configured zone. Returns the records."""
        win, self._window = self._window, None
        self._due.clear()
        self._zone.clear()
        self._chains.clear()
        self._zones_due_ns = 0
        estimates, deferred = self._win_estimates, self._win_deferred
        self._win_estimates = self._win_deferred = 0
        if win is None or not self.zones:
            return []
        counts = win.close(self.zones)
        try:
            charge = self.accountant.charge(STREAM, self.config.epsilon, wall)
        except AuditError as e:  # the spend could not be chained into the log (a full disk): nothing charged
            charge = None
            log.error("demographics window %s not released: its spend could not be written: %s", win.window_start, e)
        if charge is None or not charge.granted:
            for h in counts.values():
                h.fill(0)
            if charge is not None:
                audited(self._audit, "demographics_withheld", wall, window_start=win.window_start,
                        reason=f"budget spent for today ({charge.spent} of {charge.budget})")
            return []
        records = release(counts, self.config, win.window_start, rng=self._rng)
        for h in counts.values():
            h.fill(0)
        # audited first: records the log never recorded must never leave (a full disk fails here)
        if not (audited(self._audit, "budget_spent", wall, stream=STREAM, epsilon=float(self.config.epsilon),
                        window_start=win.window_start)
                and audited(self._audit, "demographics_released", wall, window_start=win.window_start,
                            window_s=self.config.window_s, records=len(records), zones=len(self.zones),
                            estimates=estimates, deferred_ticks=deferred, k=self.config.k)):
            self.withheld += len(records)
            return []
        if records:
            self._emit(records)
        return records

    def held_tracks(self) -> int:
        """Tracks or slots with anything held (slot, join point, crop schedule, zone, estimate sums): 0 right after
        a window closes."""
        return max(len(self._due), len(self._zone), self._chains.held(),
                   self._window.held() if self._window is not None else 0)


def build_demographics_hook(config: DemographicsConfig, loop: SensorLoop, emit_to: Sequence[Callable[[list], Any]],
                            accountant: Accountant, audit: AuditSink | None = None,
                            estimator: AgeGenderEstimator | None = None,
                            rng: RandomSource = SYSTEM) -> DemographicsHook | None:
    """The hook `umbra run` adds to `loop.track_hooks` (the loop's geometry, clock and period), or None (and
    no model loaded) when `[demographics]` is off, no zone is configured or there is nowhere to release to."""
    geometry = loop.quantizer.geometry
    if not config.enabled:
        return None
    if not geometry.config.zones:
        log.warning("demographics: no zones in [geometry], so no demographics are estimated or released")
        return None
    if not emit_to:
        log.warning("demographics: sync is off and [output] aggregates_file is empty: nowhere to release to")
        return None
    if estimator is None:
        from hal.agegender import AgeGenderConfig, OnnxAgeGender

        estimator = OnnxAgeGender(AgeGenderConfig(threads=config.threads))
        log.info("demographics: estimating on %s", estimator.backend)

    def emit(records: list) -> None:
        for target in emit_to:
            target(records)

    return DemographicsHook(config, estimator, geometry, accountant, emit, audit, rng, loop.clock,
                            1.0 / loop.config.detect_hz)
