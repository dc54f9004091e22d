"""`umbra track`: the tracker alone on a MOTChallenge detection file, writing MOTChallenge results, so anyone
can score it with the standard tools (TrackEval, motmetrics) on any sequence.

    umbra track --det det/det.txt --seqinfo seqinfo.ini --out RESULT.txt [--config umbra.toml]

Detections are `frame, id, x, y, w, h, score, ...` (pixels, 1-based frames). Scores outside 0..1 (MOT15's ACF
detections) are replaced by their rank within the file, 0..1, unless `--raw-scores` is given. The frame rate
from seqinfo.ini sets the time step, and its imWidth and imHeight (when given) the frame, so a lost track's
guess is not reported once it has left the picture; the tracker's settings come from `[tracker]` of a config
file if given.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path

import numpy as np

from firmware.config.sensing import TrackerConfig
from firmware.errors import ConfigError, FirmwareError
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


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--det", required=True, type=Path, help="MOTChallenge det.txt")
    parser.add_argument("--seqinfo", required=True, type=Path, help="the sequence's seqinfo.ini")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results")
    parser.add_argument("--config", type=Path, help="an umbra TOML config whose [tracker] to use")
    parser.add_argument("--raw-scores", action="store_true", help="use scores as they are, even outside 0..1")
    parser.set_defaults(func=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    cfg = None
    if args.config:
        from firmware.config import load

        cfg = load(args.config).tracker
    fps, frames, size = read_seqinfo(args.seqinfo)
    det = read_detections(args.det, args.raw_scores)
    if len(det) and det[:, 0].max() > frames:
        raise ConfigError(f"{args.det}: detections for frame {int(det[:, 0].max())}, but seqinfo says {frames}")
    rows = track(det, fps, frames, cfg, size)
    write_results(rows, args.out)
    print(f"{len(rows)} boxes in {len(np.unique(rows[:, 1]))} tracks over {frames} frames -> {args.out}",
          file=sys.stderr)
    return 0
