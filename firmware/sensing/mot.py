"""MOTChallenge files: detections and seqinfo.ini in, tracker results out (for `umbra track`)."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np

from firmware.config.sensing import TrackerConfig
from firmware.errors import FirmwareError
from firmware.sensing.tracker import Tracker


def read_detections(path: Path, raw_scores: bool = False) -> np.ndarray:
    """(N, 6) rows: frame, x0, y0, x1, y1, score. Raises FirmwareError naming the line that is wrong."""
    rows = []
    try:
        text = path.read_text()
    except OSError as e:
        raise FirmwareError(f"{path}: cannot read detections ({e.strerror})") from e
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) < 7:
                raise ValueError(f"expected at least 7 comma-separated fields, got {len(parts)}")
            frame, x, y, w, h, s = int(float(parts[0])), *(float(p) for p in (parts[2], parts[3], parts[4],
                                                                                parts[5], parts[6]))
            if frame < 1 or w <= 0 or h <= 0 or not np.isfinite([x, y, w, h, s]).all():
                raise ValueError("frame must be >= 1, width and height positive, all values finite")
        except ValueError as e:
            raise FirmwareError(f"{path}:{n}: not a MOTChallenge detection line ({e}): {line[:80]!r}") from e
        rows.append((frame, x, y, x + w, y + h, s))
    det = np.array(rows, dtype=np.float64).reshape(-1, 6)
    if len(det) and not raw_scores and (det[:, 5].min() < 0 or det[:, 5].max() > 1):
        det[:, 5] = np.argsort(np.argsort(det[:, 5], kind="stable"), kind="stable") / max(len(det) - 1, 1)
    return det


def read_seqinfo(path: Path) -> tuple[float, int, tuple[int, int] | None]:
    """(frame rate, sequence length, frame size or None) from a MOTChallenge seqinfo.ini; the size is the
    optional imWidth and imHeight."""
    cp = configparser.ConfigParser()
    try:
        if not cp.read(path):
            raise FirmwareError(f"{path}: cannot read seqinfo.ini")
        seq = cp["Sequence"]
        fps, frames = float(seq["frameRate"]), int(seq["seqLength"])
    except (KeyError, ValueError, configparser.Error) as e:
        raise FirmwareError(f"{path}: needs [Sequence] with frameRate and seqLength ({e})") from e
    try:
        w, h = int(seq["imWidth"]), int(seq["imHeight"])
    except (KeyError, ValueError):
        return fps, frames, None
    return fps, frames, ((w, h) if w > 0 and h > 0 else None)


def track(det: np.ndarray, fps: float, frames: int, config: TrackerConfig | None = None,
          frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """MOTChallenge result rows (frame, id, x, y, w, h) for every frame 1..frames (of `frame_size` pixels,
    when known: see Tracker.update)."""
    tracker = Tracker(config)
    order = np.argsort(det[:, 0], kind="stable")
    det = det[order]
    bounds = np.searchsorted(det[:, 0], np.arange(1, frames + 2))
    out = []
    for f in range(1, frames + 1):
        d = det[bounds[f - 1]:bounds[f]]
        for t in tracker.update(d[:, 1:5], d[:, 5], 1.0 / fps, frame_size):
            x0, y0, x1, y1 = t.box
            out.append((f, t.track_id, x0, y0, x1 - x0, y1 - y0))
    return np.array(out, dtype=np.float64).reshape(-1, 6)


def write_results(rows: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        for f, i, x, y, w, h in rows:
            fh.write(f"{int(f)},{int(i)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n")
    tmp.replace(path)
