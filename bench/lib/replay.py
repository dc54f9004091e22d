"""The bench run's device path (loop, tracker, geometry, quantizer) replayed on cached real detections
(bench.lib.detcache) in a few seconds instead of a minute of inference, so detector settings and counting can be
compared crossing by crossing. Same config, same fake clock, same ticks as `umbra bench run`: on the same
detections it releases the same records, field for field, but for the pseudonyms (their key is drawn afresh
in every run).

Besides the released records it keeps, bench-side only, what a device never releases: each tick's confirmed
tracks (ids, boxes, exact ground positions), so errors can be traced to their cause."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.lib import data
from firmware.cli.assemble import JsonlSink, build_loop
from firmware.config import UmbraConfig, load
from firmware.sensing.loop import EndsRun, RunEnd, TickResult
from firmware.sensing.pseudonym import Pseudonymizer
from hal.clock import FakeClock
from hal.detections import Detections
from hal.frame import Frame
from hal.synthetic import SyntheticCamera

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pets09.toml"
PETS_START_WALL = 1_700_000_000.0  # as bench.run
PETS_SIZE = (768, 576)


class CachedDetector:
    """Replays per-frame (N, 5) pixel boxes and scores, keyed by `frame.seq` (1-based)."""

    backend = "cached"

    def __init__(self, per_frame: list[np.ndarray], source_size: tuple[int, int] = PETS_SIZE) -> None:
        self.per_frame = per_frame
        w, h = source_size
        self._scale = np.array([w, h, w, h], dtype=np.float64)

    def detect(self, frame: Frame) -> Detections:
        if not 1 <= frame.seq <= len(self.per_frame):
            return Detections.empty()
        d = self.per_frame[frame.seq - 1]
        return Detections((d[:, :4] / self._scale).astype(np.float32), d[:, 4].astype(np.float32),
                          np.zeros(len(d), np.int32))

    def close(self) -> None:
        pass


@dataclass
class Replay:
    """What one replay produced. `records`: the released records as JSON dicts (the cloud's view); the rest is
    bench-side truth about the tracks behind them."""

    records: list[dict]
    rows: list[tuple[int, int, float, float, float, float]]  # MOTChallenge rows: frame, id, x, y, w, h
    ground: dict[int, list[tuple[int, float, float]]] = field(default_factory=dict)  # id -> (frame, x, y)
    pseudonym_of: dict[tuple[int, str], int] = field(default_factory=dict)  # (epoch, pseudonym) -> track id
    record_frame: list[int] = field(default_factory=list)  # the frame each record was released on
    # the device's own counts: the loop's line counter, (frame, track id, line, direction) per crossing
    crossings: list[tuple[int, int, str, str]] = field(default_factory=list)
    frames: int = 0
    start_wall: float = PETS_START_WALL  # wall time of frame 1 (a record's bucket start -> its frame)


class _Collector(EndsRun):
    """Bench-side: the released records, and what a device never releases (exact ground points, the track
    behind each pseudonym, read from the loop's own pseudonymizer, `pseudonyms`)."""

    def __init__(self, out: Replay, pseudonyms: Pseudonymizer | None = None) -> None:
        self.out = out
        self.pseudonyms = pseudonyms
        self.stream = io.StringIO()
        self.jsonl = JsonlSink(self.stream)
        self.frame = 0
        self.seq: int | None = None  # the source frame number of this tick's frame, when a hook says

    def __call__(self, result: TickResult) -> None:
        self.frame = self.seq if self.seq is not None else self.frame + 1
        self.jsonl(result)
        self.out.record_frame += [self.frame] * len(result.records)
        g = result.ground
        for i, tid in enumerate(g.track_ids):
            self.out.ground.setdefault(int(tid), []).append((self.frame, float(g.xy[i, 0]), float(g.xy[i, 1])))
            if self.pseudonyms is not None:
                self.out.pseudonym_of[self.pseudonyms.pseudonym(int(tid), result.wall)] = int(tid)
        self.out.crossings += [(self.frame, int(c.track_id), c.line, c.direction) for c in result.crossings]

    def end_run(self, end: RunEnd) -> None:
        """The loop stopped: the last bucket's records, at the last tick's frame."""
        self.jsonl.end_run(end)
        self.out.record_frame += [self.frame] * len(end.records)


class DeviceCounts(EndsRun):
    """A loop sink: the device's own line counts written as a sensor writes them (`[output] crossings_file`,
    firmware.installer.countaudit.LineCountSink, per time bucket) to `path`, and read back as `umbra bench run`
    and `umbra audit-counts --crossings` read them (`read_line_counts`)."""

    def __init__(self, path: Path, bucket_s: int) -> None:
        from firmware.installer.countaudit import LineCountSink

        self.path = path
        self._stream = path.open("w", encoding="utf-8")
        self._sink = LineCountSink(self._stream, bucket_s)

    def __call__(self, result: TickResult) -> None:
        self._sink(result)

    def end_run(self, end: RunEnd) -> None:
        self._sink.end_run(end)

    def counts(self) -> dict[tuple[str, str], int]:
        """Per line and way, from the file (call once the loop has stopped: its end of the run closes the bucket)."""
        from firmware.installer.countaudit import read_line_counts, tally

        self._stream.close()
        return tally(read_line_counts(self.path))


def pets_config(path: Path = CONFIG) -> UmbraConfig:
    data.ensure_env()
    return load(path)


def pets_video_config() -> tuple[UmbraConfig, Path]:
    """The bench config reading the bench video (PETS09's vtest.avi), and that video's path; raises
    data.DataMissing (its message says what is missing and where to put it)."""
    cfg = pets_config()
    video = data.need("video/vtest.avi")
    return replace(cfg, camera=replace(cfg.camera, source=str(video))), video


def replay(per_frame: list[np.ndarray], cfg: UmbraConfig | None = None, base: Path = CONFIG.parent,
           tracker: object | None = None) -> Replay:
    """Run the loop over the cached detections (one tick per frame, the config's rates), with the loop's own
    tracker or `tracker` (anything with the tracker's `update`)."""
    import json

    cfg = cfg or pets_config()
    clock = FakeClock(start_wall=PETS_START_WALL)
    cam = SyntheticCamera(clock, lores_size=(8, 8), main_size=None, source_size=PETS_SIZE,
                          fps=cfg.loop.detect_hz, frames=len(per_frame))
    out = Replay([], [])
    collect = _Collector(out)
    loop = build_loop(cfg, base, clock, camera=cam,
                      detector=CachedDetector(per_frame), sinks=[collect])
    collect.pseudonyms = loop.quantizer.pseudonyms
    recorder = RecordingTracker(tracker if tracker is not None else loop.tracker)
    loop.tracker = recorder
    stats = loop.run()
    out.frames = stats.frames
    out.rows = recorder.rows
    out.records = [json.loads(x) for x in collect.stream.getvalue().splitlines() if x.strip()]
    return out


class RecordingTracker:
    """Bench-only: keeps each tick's confirmed tracks in MOTChallenge rows to score against the gt. Never on
    a device: these are unquantized boxes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows: list[tuple[int, int, float, float, float, float]] = []
        self.frame = 0
        self.seq: int | None = None  # the source frame number of the frame being tracked, when a hook says
        self.step_ns: list[int] = []

    def update(self, boxes: np.ndarray, scores: np.ndarray, dt: float, frame_size: tuple[int, int] | None = None):
        self.frame = self.seq if self.seq is not None else self.frame + 1
        t0 = time.perf_counter_ns()
        tracks = self.inner.update(boxes, scores, dt, frame_size)
        self.step_ns.append(time.perf_counter_ns() - t0)
        for t in tracks:
            x0, y0, x1, y1 = t.box
            self.rows.append((self.frame, t.track_id, x0, y0, x1 - x0, y1 - y0))
        return tracks
