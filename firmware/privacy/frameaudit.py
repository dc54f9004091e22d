"""The frames side of the privacy audit log: one `frames` entry per wall-clock minute with the counts of frames
processed, destroyed (buffers zeroed) and dropped, and the track records released, rather than one row per
frame (10 fps would mean 864,000 rows a day and an fsync per frame)."""

from __future__ import annotations

from firmware.privacy.audit import AuditSink
from firmware.sensing.loop import SensorLoop, TickResult


class FrameAudit:
    """Counts frames (and released track records) and writes one `frames` entry per wall-clock minute, with a
    `records_released` entry beside it when records left (and on `flush`)."""

    def __init__(self, audit: AuditSink, period_s: float = 60.0) -> None:
        self._audit = audit
        self.period_s = period_s
        self._bucket: int | None = None
        self.counts = {"processed": 0, "destroyed": 0, "dropped": 0}
        self.released = 0

    def count(self, t: float, processed: int = 0, destroyed: int = 0, dropped: int = 0, released: int = 0) -> None:
        bucket = int(t // self.period_s)
        if self._bucket is not None and bucket != self._bucket:
            self.flush(t)
        self._bucket = bucket
        self.counts["processed"] += processed
        self.counts["destroyed"] += destroyed
        self.counts["dropped"] += dropped
        self.released += released

    def flush(self, t: float) -> None:
        if self._bucket is None:
            return
        start = self._bucket * self.period_s
        if any(self.counts.values()):
            self._audit.append("frames", t, minute_start=start, **self.counts)
        if self.released:
            self._audit.append("records_released", t, kind="track", count=self.released, minute_start=start)
        self.counts = dict.fromkeys(self.counts, 0)
        self.released = 0


class FrameAuditSink:
    """A loop sink feeding `FrameAudit` from the loop's counters (every frame taken is released, and so zeroed,
    within its tick) and, where quantized tracks leave the device, from the records each tick released."""

    def __init__(self, loop: SensorLoop, audit: AuditSink, tracks_leave: bool) -> None:
        self._loop, self._frames, self._tracks_leave = loop, FrameAudit(audit), tracks_leave
        self._seen = (0, 0)

    def __call__(self, result: TickResult) -> None:
        st = self._loop.stats
        taken, missed = st.frames - self._seen[0], st.overruns - self._seen[1]
        self._seen = (st.frames, st.overruns)
        self._frames.count(result.wall, processed=taken, destroyed=taken, dropped=missed,
                           released=len(result.records) if self._tracks_leave else 0)

    def flush(self, t: float) -> None:
        self._frames.flush(t)
