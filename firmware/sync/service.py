"""Cloud sync as the running sensor uses it: the outbox is a sink of the loop (one transaction per tick), and
the uploader runs on its own thread with its own asyncio loop, so a slow or absent network never delays a
tick. `stop()` ends the uploader cleanly (a batch in flight is either acknowledged or resent next time)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from firmware import __version__
from firmware.config import SyncConfig
from firmware.config.sensing import GeometryConfig
from firmware.errors import FirmwareError
from firmware.sensing.loop import SensorLoop, TickResult
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import Clock

log = logging.getLogger(__name__)


class SyncService:
    def __init__(self, config: SyncConfig, clock: Clock) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.outbox = Outbox(config.outbox)
        self.uploader: Uploader | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._flush_s = 0.0
        self.audit_head: Callable[[], Mapping[str, Any] | None] | None = None  # set before start()

    @property
    def sink(self):  # the loop's TickSink
        return self.outbox.sink

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="umbra-uploader", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None:
            raise FirmwareError(f"uploader could not start: {self._failure}") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start() or logged: the thread must not die silently
            self._failure = e
            self._ready.set()
            log.error("uploader stopped: %s", e)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.uploader = Uploader(self.config.uploader, self.config.tls, self.outbox, self.clock, random.Random(),
                                 audit_head=self.audit_head)
        self._ready.set()
        await self.uploader.run(self._stop)
        if self._flush_s > 0:  # a last attempt at what is pending; whatever fails stays in the outbox
            try:
                res = await asyncio.wait_for(self.uploader.cycle(), self._flush_s)
                if res.error:
                    log.warning("final upload failed (%s); records stay in the outbox", res.error)
            except TimeoutError:
                log.warning("final upload took over %.0f s; records stay in the outbox", self._flush_s)
            finally:
                await self.uploader.close()

    def status_sink(self, loop: SensorLoop, profile: str = "tracks", period_s: float = 300.0,
                    geometry: GeometryConfig | None = None) -> StatusSink:
        """A loop sink that puts a health record (umbra.status/1) into the outbox every `period_s` of wall
        time: uptime, outbox backlog and drops, detector backend, overruns. No pixels, no tracks. The first
        record after starting also carries the zone plan of `geometry` (zones and lines, ground metres), which
        the cloud keeps to draw the heatmap over, and so does the first after a live change (`replan`)."""
        return StatusSink(self.outbox, loop, self.clock.wall(), profile, period_s, geometry)

    def kick(self) -> None:
        """Upload now (after an outage ends, or on command)."""
        if self._loop is not None and self.uploader is not None:
            self._loop.call_soon_threadsafe(self.uploader.kick)

    def stop(self, timeout_s: float = 30.0, flush: bool = True) -> None:
        """Stop the uploader; with `flush`, first try once (within half the timeout) to send what is pending."""
        self._flush_s = timeout_s / 2 if flush else 0.0
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the uploader's loop ended meanwhile (its failure was logged)
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("uploader did not stop within %.0f s; records stay in the outbox", timeout_s)
        self.outbox.close()


class StatusSink:
    """See `SyncService.status_sink`."""

    def __init__(self, outbox: Outbox, loop: SensorLoop, started: float, profile: str, period_s: float,
                 geometry: GeometryConfig | None) -> None:
        self.outbox, self.loop, self.started, self.profile, self.period_s = outbox, loop, started, profile, period_s
        self._due = started
        self._last = (started, loop.stats.frames)  # fps: frames taken since the previous record
        self._plan = zone_plan(geometry) if geometry is not None else None
        self._lock = threading.Lock()  # replan() comes from the installer's thread

    def replan(self, geometry: GeometryConfig) -> None:
        """The zones and lines changed while running: the next tick's status carries the new plan (sent now,
        not at the next period, so the cloud's outline follows the change)."""
        with self._lock:
            self._plan, self._due = zone_plan(geometry), float("-inf")

    def __call__(self, tick: TickResult) -> None:
        with self._lock:
            if tick.wall < self._due:
                return
            self._due = tick.wall + self.period_s
            plan, self._plan = self._plan, None
        st = self.outbox.stats()
        span, frames = tick.wall - self._last[0], self.loop.stats.frames - self._last[1]
        self._last = (tick.wall, self.loop.stats.frames)
        record = {
            "schema": "umbra.status/1", "t": int(tick.wall), "firmware": __version__, "profile": self.profile,
            "uptime_s": round(tick.wall - self.started, 1), "outbox_records": st.records,
            "dropped": dict(st.dropped), "detector": self.loop.detector.backend, "overruns": self.loop.stats.overruns,
            "fps": round(min(frames / span, 1000.0), 2) if span > 0 else 0.0,
        }
        stats = self.loop.stats
        if stats.camera_stalls or stats.camera_lost:  # the camera's faults, counted since start
            record.update(camera_stalls=stats.camera_stalls, camera_lost=stats.camera_lost)
        if stats.camera_fault:  # the camera is failing now (the cloud's fleet view lists last_error)
            record["last_error"] = f"camera: {stats.camera_fault}"[:200]
        if st.write_failures:  # the disk was full: records waited (or wait) in memory
            record.update(outbox_write_failures=st.write_failures, outbox_pending=st.pending)
        if self.outbox.recreated:  # the outbox's files were deleted or replaced under it (written back)
            record["outbox_recreated"] = self.outbox.recreated
        if plan is not None:
            record["zone_plan"] = plan
        self.outbox.enqueue([record])


def zone_plan(geometry: GeometryConfig) -> dict[str, Any]:
    """The zones and count lines of `geometry` as the status record carries them (ground metres)."""
    return {"zones": [{"name": z.name, "polygon": [[float(x), float(y)] for x, y in z.polygon]}
                      for z in geometry.zones],
            "lines": [{"name": ln.name, "a": [float(ln.a[0]), float(ln.a[1])], "b": [float(ln.b[0]), float(ln.b[1])]}
                      for ln in geometry.lines]}
