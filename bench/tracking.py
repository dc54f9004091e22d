"""Tracker accuracy and cost: Umbra's tracker against Roboflow's ByteTrack and SORT (the `trackers` package) on
the same detections, scored with motmetrics (MOTA, IDF1, identity switches) against the ground truth.

Detections: the real SSD on PETS09-S2L1 (cached by bench.detcache), and the scripted detector replaying
ground truth with the real detector's measured errors (PETS09 and the MOT17 training sequences), which also
shows whether the scripted detector is a faithful stand-in: the tracker should score alike on both.

`python -m bench.tracking [--sequences PETS09 MOT17-04 ...]`"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import data
from bench.run import mot_scores
from firmware.tracker import Tracker

Step = Callable[[np.ndarray, float], list[tuple[int, np.ndarray]]]


def umbra_tracker(fps: float) -> Step:
    tr = Tracker()

    def step(d: np.ndarray, dt: float) -> list[tuple[int, np.ndarray]]:
        return [(t.track_id, np.array(t.box)) for t in tr.update(d[:, :4], d[:, 4], dt)]

    return step


def roboflow_tracker(kind: str, fps: float) -> Step:
    import supervision as sv
    from trackers import ByteTrackTracker, SORTTracker

    tr = ByteTrackTracker(frame_rate=fps) if kind == "bytetrack" else SORTTracker(frame_rate=fps)

    def step(d: np.ndarray, dt: float) -> list[tuple[int, np.ndarray]]:
        sd = sv.Detections(xyxy=d[:, :4].astype(np.float32), confidence=d[:, 4].astype(np.float32),
                           class_id=np.zeros(len(d), int))
        out = tr.update(sd)
        return [(int(i), b) for b, i in zip(out.xyxy, out.tracker_id) if i >= 0]

    return step


TRACKERS: dict[str, Callable[[float], Step]] = {
    "umbra": umbra_tracker,
    "bytetrack (trackers)": lambda fps: roboflow_tracker("bytetrack", fps),
    "sort (trackers)": lambda fps: roboflow_tracker("sort", fps),
}


def evaluate(make: Callable[[float], Step], dets: list[np.ndarray], gt: Path, fps: float) -> dict[str, float]:
    step = make(fps)
    rows = []
    t0 = time.perf_counter()
    for f, d in enumerate(dets, 1):
        for tid, b in step(d, 1.0 / fps):
            rows.append((f, tid, b[0], b[1], b[2] - b[0], b[3] - b[1]))
    ms = (time.perf_counter() - t0) * 1e3 / max(len(dets), 1)
    return {**mot_scores(rows, gt), "ms_per_frame": ms}


def _fps(gt: Path) -> float:
    import configparser

    cp = configparser.ConfigParser()
    cp.read(gt.parent.parent / "seqinfo.ini")
    return float(cp["Sequence"]["frameRate"]) if "Sequence" in cp else 30.0


def sequences(names: list[str]) -> list[tuple[str, list[np.ndarray], Path, float]]:
    from bench.scripted_calibration import scripted_detections

    out = []
    for name in names:
        if name == "PETS09":
            from bench.detcache import pets_detections

            gt = data.find("mot/MOT15/PETS09-S2L1/gt/gt.txt")
            real = pets_detections(progress=False)
            out.append(("PETS09-S2L1 real SSD", real, gt, 7.0))
            out.append(("PETS09-S2L1 scripted", scripted_detections(gt, len(real)), gt, 7.0))
        else:
            gt = data.find(f"mot/MOT17/{name}/gt/gt.txt")
            frames = int(np.loadtxt(gt, delimiter=",", ndmin=2)[:, 0].max())
            out.append((f"{name} scripted", scripted_detections(gt, frames), _mot17_gt(gt), _fps(gt)))
    return out


def _mot17_gt(gt: Path) -> Path:
    """MOT17 gt with only the rows that count (pedestrians, considered), as motmetrics wants them."""
    raw = np.loadtxt(gt, delimiter=",", ndmin=2)
    keep = raw[(raw[:, 6] != 0) & (raw[:, 7] == 1)]
    out = Path("out/cache") / f"{gt.parent.parent.name}-gt-ped.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out, keep, delimiter=",", fmt="%g")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__)
    ap.add_argument("--sequences", nargs="+", default=["PETS09", "MOT17-04-FRCNN", "MOT17-09-FRCNN"])
    args = ap.parse_args(argv)
    print(f"{'sequence':30s} {'tracker':22s} {'MOTA':>6s} {'IDF1':>6s} {'IDsw':>5s} {'recall':>6s} "
          f"{'prec':>6s} {'ms/frame':>8s}")
    for name, dets, gt, fps in sequences(args.sequences):
        for tname, make in TRACKERS.items():
            s = evaluate(make, dets, gt, fps)
            print(f"{name:30s} {tname:22s} {s['mota']:6.3f} {s['idf1']:6.3f} {int(s['num_switches']):5d} "
                  f"{s['recall']:6.3f} {s['precision']:6.3f} {s['ms_per_frame']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
