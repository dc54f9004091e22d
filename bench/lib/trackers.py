"""The trackers the tracking benchmarks compare (bench.tracking, bench.tracking_loso), behind one step
interface: Umbra's, ByteTrack, OC-SORT and SORT as Roboflow's `trackers` package ships them, and Norfair; a timed
pass of one over a sequence, and every tracker scored on the same detections."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.lib.motscore import score
from bench.lib.sequences import Size
from firmware.config.sensing import TrackerConfig
from firmware.sensing.tracker import Tracker

Box = tuple[float, float, float, float] | np.ndarray  # x0, y0, x1, y1 in pixels: Umbra's tracker gives a tuple
Step = Callable[[np.ndarray, float], list[tuple[int, Box]]]  # (detections (N, 5), dt) -> (track id, box) each
def umbra_tracker(fps: float, size: Size, config: TrackerConfig | None = None) -> Step:
    tr = Tracker(config)

    def step(d: np.ndarray, dt: float) -> list[tuple[int, Box]]:
        return [(t.track_id, t.box) for t in tr.update(d[:, :4], d[:, 4], dt, size)]

    return step


def roboflow_tracker(kind: str, fps: float, size: Size) -> Step:
    import supervision as sv
    from trackers import ByteTrackTracker, OCSORTTracker, SORTTracker

    tr = {"bytetrack": ByteTrackTracker, "ocsort": OCSORTTracker, "sort": SORTTracker}[kind](frame_rate=fps)

    def step(d: np.ndarray, dt: float) -> list[tuple[int, Box]]:
        sd = sv.Detections(xyxy=d[:, :4].astype(np.float32), confidence=d[:, 4].astype(np.float32),
                           class_id=np.zeros(len(d), int))
        out = tr.update(sd)
        return [(int(i), b) for b, i in zip(out.xyxy, out.tracker_id, strict=True) if i >= 0]

    return step


def norfair_tracker(fps: float, size: Size) -> Step:
    from norfair import Detection
    from norfair import Tracker as NorfairTracker

    tr = NorfairTracker(distance_function="iou", distance_threshold=0.9, hit_counter_max=max(int(fps), 2),
                        initialization_delay=1)

    def step(d: np.ndarray, dt: float) -> list[tuple[int, Box]]:
        dets = [Detection(points=b[:4].reshape(2, 2), scores=np.array([b[4], b[4]])) for b in d
                if b[4] >= 0.5 and b[2] > b[0] and b[3] > b[1]]
        return [(int(o.id), o.estimate.reshape(4)) for o in tr.update(dets) if o.id is not None]

    return step


Make = Callable[[float, Size], Step]  # (frame rate, frame size) -> a fresh tracker's step
TRACKERS: dict[str, Make] = {
    "umbra": umbra_tracker,
    "bytetrack (trackers)": lambda fps, size: roboflow_tracker("bytetrack", fps, size),
    "oc-sort (trackers)": lambda fps, size: roboflow_tracker("ocsort", fps, size),
    "sort (trackers)": lambda fps, size: roboflow_tracker("sort", fps, size),
    "norfair": norfair_tracker,
}


def run_pass(make: Make, dets: list[np.ndarray], fps: float, size: Size, rows: list | None = None) -> float:
    """One pass of a fresh tracker over the sequence: its step's CPU time per frame in ms (the thread's own
    time, so another process on the machine does not count); the tracks go to `rows` when given."""
    step = make(fps, size)
    spent = 0
    for f, d in enumerate(dets, 1):
        t0 = time.thread_time_ns()
        out = step(d, 1.0 / fps)
        spent += time.thread_time_ns() - t0
        if rows is not None:
            for tid, b in out:
                rows.append((f, tid, b[0], b[1], b[2] - b[0], b[3] - b[1]))
    return spent / 1e6 / max(len(dets), 1)


def evaluate_all(trackers: dict[str, Make], dets: list[np.ndarray], gt: np.ndarray, fps: float, size: Size,
                 budget_s: float = 1.0, most: int = 7) -> dict[str, dict[str, float]]:
    """Every tracker on the same detections: scores from the first pass; step time the least over passes
    taken in turn (tracker A, B, C, ..., then again) until each has had about `budget_s` of passes (at most
    `most`), so a noisy moment weighs on all of them alike."""
    out, times = {}, {}
    for name, make in trackers.items():
        rows: list = []
        times[name] = [run_pass(make, dets, fps, size, rows)]
        out[name] = score(rows, gt)
    for _ in range(most - 1):
        due = [n for n in trackers if sum(times[n]) * len(dets) / 1e3 < budget_s]
        if not due:
            break
        for name in due:
            times[name].append(run_pass(trackers[name], dets, fps, size))
    for name in trackers:
        out[name]["ms_per_frame"] = min(times[name])
        out[name]["passes"] = len(times[name])
    return out
