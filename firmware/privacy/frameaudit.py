"""The frames side of the privacy audit log: one `frames` entry per wall-clock minute with the counts of frames
processed, destroyed (buffers zeroed) and dropped, and the track records released, rather than one row per
frame (10 fps would mean 864,000 rows a day and an fsync per frame).

Track records leave only after the log says so: the minute's records wait here (in memory, at most a minute of
them) and go to `release` (the outbox) once their `records_released` entry is durable. When that entry cannot
be written (a full disk), they are not released at all: counted in `withheld`, logged, and the loop goes on, so a
disk that fills mid-run never leaves uploaded records the log did not record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from firmware.privacy.audit import AuditSink, audited
from firmware.sensing.loop import EndsRun, RunEnd, SensorLoop, TickResult
from firmware.sensing.records import QuantizedTrack

log = logging.getLogger(__name__)

Release = Callable[[list[Mapping[str, Any]]], Any]


class FrameAudit:
    """Counts frames (and track records to release) and writes one `frames` entry per wall-clock minute, with a
    `records_released` entry beside it when records are to leave (and on `flush`); the records held (`hold`)
    go to `release` only after that entry is written."""

    def __init__(self, audit: AuditSink, period_s: float = 60.0, release: Release | None = None) -> None:
        self._audit = audit
        self.period_s = period_s
        self._release = release
        self._bucket: int | None = None
        self.counts = {"processed": 0, "destroyed": 0, "dropped": 0}
        self.released = 0
        self._held: list[Mapping[str, Any]] = []
        self.withheld = 0  # track records never released: their audit entry could not be written

    def count(self, t: float, processed: int = 0, destroyed: int = 0, dropped: int = 0, released: int = 0,
              hold: Sequence[Mapping[str, Any]] | None = None) -> None:
        bucket = int(t // self.period_s)
        if self._bucket is not None and bucket != self._bucket:
            self.flush(t)
        self._bucket = bucket
        self.counts["processed"] += processed
        self.counts["destroyed"] += destroyed
        self.counts["dropped"] += dropped
        self.released += released
        if hold:
            self._held.extend(hold)
            self.released += len(hold)

    def flush(self, t: float) -> None:
        if self._bucket is None:
            return
        start = self._bucket * self.period_s
        held, self._held = self._held, []
        if any(self.counts.values()):
            audited(self._audit, "frames", t, minute_start=start, **self.counts)
        if self.released:
            if audited(self._audit, "records_released", t, kind="track", count=self.released, minute_start=start):
                if held and self._release is not None:
                    self._release(held)
            else:
                self.withheld += len(held)
                log.error("%d track records not released: their audit entry could not be written (%d so far)",
                          len(held), self.withheld)
        self.counts = dict.fromkeys(self.counts, 0)
        self.released = 0


class FrameAuditSink(EndsRun):
    """A loop sink feeding `FrameAudit` from the loop's counters (every frame taken is released, and so zeroed,
    within its tick) and, where quantized tracks leave the device (`release`: the outbox's enqueue), holding the
    records each tick made until the minute's `records_released` entry is written."""

    def __init__(self, loop: SensorLoop, audit: AuditSink, release: Release | None = None) -> None:
        self._loop, self._frames, self._release = loop, FrameAudit(audit, release=release), release
        self._seen = (0, 0)

    @property
    def withheld(self) -> int:
        return self._frames.withheld

    def __call__(self, result: TickResult) -> None:
        self._count(result.wall, result.records)

    def end_run(self, end: RunEnd) -> None:
        """The loop stopped: the frames since the last tick and the last bucket's records."""
        self._count(end.wall, end.records)

    def _count(self, wall: float, records: Sequence[QuantizedTrack]) -> None:
        st = self._loop.stats
        taken, missed = st.frames - self._seen[0], st.overruns - self._seen[1]
        self._seen = (st.frames, st.overruns)
        hold = [r.to_json() for r in records] if self._release is not None else None
        self._frames.count(wall, processed=taken, destroyed=taken, dropped=missed, hold=hold)

    def flush(self, t: float) -> None:
        self._frames.flush(t)
