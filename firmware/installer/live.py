"""Zones, lines and the homography the installer saved, applied to the running sensor without a restart.

The web server's thread hands the saved geometry over (`submit`); the loop's thread takes it up at the start
of its next frame (`on_frame`, the first frame hook), so a tick never sees half of a change: from that frame
on the quantizer (records' zones and ground positions, count-line crossings), the run's counts and the view
use the new geometry, and the loop's line-counting state is dropped (`SensorLoop.reset_counting`) so that no
crossing is made of a position on the old ground and one on the new. Each change applied is audited
(`installer_geometry_applied`) with the counts as they stood before it, so a hand-count audit over a period
that spans a change can be split at its time and nothing counted is lost. Flow groups and demographics keep
the zones they started with until the sensor restarts (their state is kept per zone). The next status record
carries the new zone plan to the cloud (`on_applied`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.config.sensing import GeometryConfig
from firmware.installer.counts import RunCounts
from firmware.installer.view import InstallerView
from firmware.privacy.audit import AuditSink
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from hal.detections import Detections
from hal.frame import Frame


@dataclass(frozen=True, slots=True)
class LiveStatus:
    submitted: int  # changes handed over by the server
    applied: int  # changes the loop has taken up (the last submitted wins: one in between may be skipped)
    applied_seq: int | None  # the frame the last one was applied at
    applied_wall: float | None

    def to_json(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "applied": self.applied, "pending": self.applied < self.submitted,
                "applied_seq": self.applied_seq, "applied_wall": self.applied_wall}


class LiveGeometry:
    def __init__(self, loop: SensorLoop, counts: RunCounts, view: InstallerView, audit: AuditSink) -> None:
        self.loop, self.counts, self.view, self.audit = loop, counts, view, audit
        self._lock = threading.Lock()
        self._pending: tuple[int, GeometryConfig] | None = None
        self._submitted = 0
        self._applied = 0
        self._at: tuple[int, float] | None = None
        self.on_applied: list[Callable[[GeometryConfig], None]] = []  # e.g. the status record's zone plan

    def attach(self) -> None:
        """The first frame hook: the change is taken up before anything else in the tick looks."""
        self.loop.frame_hooks.insert(0, self.on_frame)

    def submit(self, geometry: GeometryConfig) -> int:
        """Called by the server once the config file holds `geometry`; returns the change's number."""
        with self._lock:
            self._submitted += 1
            self._pending = (self._submitted, geometry)
            return self._submitted

    def status(self) -> LiveStatus:
        with self._lock:
            seq, wall = self._at if self._at is not None else (None, None)
            return LiveStatus(self._submitted, self._applied, seq, wall)

    def on_frame(self, frame: Frame, detections: Detections | None, wall: float) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        number, cfg = pending
        geometry = Geometry(cfg)
        self.loop.quantizer.geometry = geometry
        self.loop.reset_counting()
        before = self.counts.set_geometry(geometry)
        self.view.set_geometry(cfg)
        with self._lock:
            self._applied = number
            self._at = (frame.seq, wall)
        self.audit.append("installer_geometry_applied", wall, change=number, frame=frame.seq,
                          zones=[z.name for z in cfg.zones], lines=[ln.name for ln in cfg.lines],
                          counts_before=before.to_json()["lines"])
        for applied in self.on_applied:
            applied(cfg)
